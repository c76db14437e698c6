import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { excerpt, readBodyLimited, redactUrl, withDeadline } from '../../../src/handlers/http.ts';

/** A real Response streaming the given chunks. */
function streamed(chunks: string[]): Response {
  const encoder = new TextEncoder();
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.close();
    },
  });
  return new Response(stream);
}

describe('readBodyLimited', () => {
  it('reads a body made of several chunks', async () => {
    await expect(readBodyLimited(streamed(['{"a":', '1}']), 100)).resolves.toEqual({
      text: '{"a":1}',
      truncated: false,
    });
  });

  it('stops at the limit, even inside a chunk', async () => {
    await expect(readBodyLimited(streamed(['abcd', 'efgh', 'ijkl']), 6)).resolves.toEqual({
      text: 'abcdef',
      truncated: true,
    });
  });

  it('reads exactly the limit as complete', async () => {
    await expect(readBodyLimited(streamed(['abc', 'def']), 6)).resolves.toEqual({
      text: 'abcdef',
      truncated: false,
    });
  });

  it('handles a response without a body', async () => {
    await expect(readBodyLimited(new Response(null, { status: 204 }), 10)).resolves.toEqual({
      text: '',
      truncated: false,
    });
  });
});

describe('withDeadline', () => {
  it('returns the result and leaves no listener on the run signal', async () => {
    const controller = new AbortController();
    await expect(withDeadline('job', controller.signal, 1_000, async () => 42)).resolves.toBe(42);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('aborts the work on its deadline', async () => {
    let seen: AbortSignal | undefined;
    const work = (signal: AbortSignal) =>
      new Promise<never>((_resolve, reject) => {
        seen = signal;
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    await expect(withDeadline('job', new AbortController().signal, 20, work)).rejects.toThrow(
      'job timed out after 20 ms',
    );
    expect(seen?.aborted).toBe(true);
  });

  it('rethrows the run signal reason, not a wrapped error', async () => {
    const controller = new AbortController();
    const reason = new Error('cancelled');
    const work = (signal: AbortSignal) =>
      new Promise<never>((_resolve, reject) => {
        signal.addEventListener('abort', () => reject(new Error('something else')), { once: true });
        setTimeout(() => controller.abort(reason), 5);
      });
    await expect(withDeadline('job', controller.signal, 10_000, work)).rejects.toBe(reason);
  });

  it('wraps other failures with what failed and the underlying cause', async () => {
    const cause = new Error('connect ECONNREFUSED 127.0.0.1:1');
    const work = async () => {
      throw new TypeError('fetch failed', { cause });
    };
    const error = await withDeadline(
      'GET http://x/',
      new AbortController().signal,
      1_000,
      work,
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe('GET http://x/ failed: connect ECONNREFUSED 127.0.0.1:1');
    expect((error as Error).cause).toBeInstanceOf(TypeError);
  });
});

describe('excerpt and redactUrl', () => {
  it('flattens whitespace and cuts long text', () => {
    expect(excerpt('  a\n\n b\tc ')).toBe('a b c');
    expect(excerpt('x'.repeat(300))).toBe(`${'x'.repeat(199)}…`);
  });

  it('drops userinfo, query and fragment', () => {
    expect(redactUrl(new URL('https://u:p@h.example:8443/a/b?token=t#f'))).toBe(
      'https://h.example:8443/a/b',
    );
  });
});
