import { ApiException } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { KubeApiError, parseStatus, statusCodeOf } from '../../../src/kube/kube-errors.ts';

describe('parseStatus', () => {
  it.each<[string, unknown, { reason?: string; message?: string }]>([
    [
      'a Status as JSON text',
      '{"reason":"NotFound","message":"gone"}',
      { reason: 'NotFound', message: 'gone' },
    ],
    [
      'a decoded Status',
      { reason: 'Conflict', message: 'changed', code: 409 },
      { reason: 'Conflict', message: 'changed' },
    ],
    ['text that is not JSON', 'upstream connect error', { message: 'upstream connect error' }],
    ['long text, cut to 300 characters', 'x'.repeat(500), { message: 'x'.repeat(300) }],
    ['an empty body', '', {}],
    ['fields of other types', { reason: 1, message: null }, {}],
    ['no body', undefined, {}],
  ])('%s', (_name, body, expected) => {
    expect(parseStatus(body)).toEqual(expected);
  });
});

describe('statusCodeOf', () => {
  it('reads client-node, KubeApiError and statusCode errors; none for others', () => {
    expect(statusCodeOf(new ApiException(404, 'Not Found', '', {}))).toBe(404);
    expect(statusCodeOf(new KubeApiError(410, 'Expired', 'too old'))).toBe(410);
    expect(statusCodeOf(Object.assign(new Error('x'), { statusCode: 503 }))).toBe(503);
    expect(statusCodeOf(new Error('ECONNREFUSED'))).toBeUndefined();
    expect(statusCodeOf('boom')).toBeUndefined();
  });
});
