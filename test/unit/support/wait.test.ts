import { describe, expect, it } from 'vitest';
import { waitFor } from '../../support/wait.ts';

describe('waitFor', () => {
  it('returns the first defined value', async () => {
    let calls = 0;
    const value = await waitFor(
      'the third call',
      async () => (++calls === 3 ? 'ready' : undefined),
      {
        intervalMs: 1,
      },
    );
    expect(value).toBe('ready');
    expect(calls).toBe(3);
  });

  it('times out with the last error in the message', async () => {
    await expect(
      waitFor(
        'a server',
        async () => {
          throw new Error('connection refused');
        },
        { timeoutMs: 20, intervalMs: 5 },
      ),
    ).rejects.toThrow('timed out after 20 ms waiting for a server: connection refused');
  });
});
