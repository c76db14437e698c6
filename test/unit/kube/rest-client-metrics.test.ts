import { describe, expect, it } from 'vitest';
import { countResponses, type DispatchInterceptor } from '../../../src/kube/rest-client-metrics.ts';

type Dispatch = ReturnType<DispatchInterceptor>;
type Options = Parameters<Dispatch>[0];
type Handler = Parameters<Dispatch>[1];
type Controller = Parameters<NonNullable<Handler['onResponseStart']>>[0];

const controller: Controller = {
  aborted: false,
  paused: false,
  reason: null,
  abort: () => {},
  pause: () => {},
  resume: () => {},
};

/** A handler recording which callbacks reached it, in order. */
function recordingHandler() {
  const calls: string[] = [];
  const handler: Handler = {
    onRequestStart: () => calls.push('requestStart'),
    onResponseStarted: () => calls.push('responseStarted'),
    onResponseStart: (_c, status) => calls.push(`responseStart ${status}`),
    onResponseData: (_c, chunk) => calls.push(`data ${chunk.toString()}`),
    onResponseEnd: () => calls.push('end'),
    onResponseError: (_c, error) => calls.push(`error ${error.message}`),
    onRequestSent: () => calls.push('requestSent'),
    onBodySent: () => calls.push('bodySent'),
  };
  return { calls, handler };
}

/** Runs one request through the interceptor; `script` plays the server's part on the handler. */
function run(
  options: Partial<Options>,
  script: (handler: Handler) => void,
): { reports: Array<[string, number, string]>; calls: string[]; returned: boolean } {
  const reports: Array<[string, number, string]> = [];
  const interceptor = countResponses((method, code, host) => reports.push([method, code, host]));
  const inner: Dispatch = (_opts, handler) => {
    script(handler);
    return true;
  };
  const dispatch = interceptor(inner);
  const { calls, handler } = recordingHandler();
  const returned = dispatch(
    { origin: 'https://10.96.0.1:6443', path: '/api', method: 'GET', ...options } as Options,
    handler,
  );
  return { reports, calls, returned };
}

describe('countResponses', () => {
  it('is an interceptor undici accepts: a function of dispatch returning (opts, handler)', () => {
    const interceptor = countResponses(() => {});
    const dispatch = interceptor(() => true);
    expect(dispatch).toBeTypeOf('function');
    expect(dispatch.length).toBe(2);
  });

  it('reports the method, the final status and host:port once, and forwards everything', () => {
    const { reports, calls, returned } = run({ method: 'PATCH' }, (h) => {
      h.onRequestStart?.(controller, {});
      h.onBodySent?.(Buffer.from('x'));
      h.onRequestSent?.();
      h.onResponseStarted?.();
      h.onResponseStart?.(controller, 200, {}, 'OK');
      h.onResponseData?.(controller, Buffer.from('body'));
      h.onResponseEnd?.(controller, {});
    });
    expect(returned).toBe(true);
    expect(reports).toEqual([['PATCH', 200, '10.96.0.1:6443']]);
    expect(calls).toEqual([
      'requestStart',
      'bodySent',
      'requestSent',
      'responseStarted',
      'responseStart 200',
      'data body',
      'end',
    ]);
  });

  it('counts error statuses like any other', () => {
    const { reports } = run({ method: 'PUT' }, (h) => {
      h.onResponseStart?.(controller, 409, {}, 'Conflict');
      h.onResponseEnd?.(controller, {});
    });
    expect(reports).toEqual([['PUT', 409, '10.96.0.1:6443']]);
  });

  it('skips 1xx interim responses and counts the final one', () => {
    const { reports, calls } = run({}, (h) => {
      h.onResponseStart?.(controller, 103, {}, 'Early Hints');
      h.onResponseStart?.(controller, 200, {}, 'OK');
    });
    expect(reports).toEqual([['GET', 200, '10.96.0.1:6443']]);
    expect(calls).toEqual(['responseStart 103', 'responseStart 200']);
  });

  it('reports 0 when the request fails before any response', () => {
    const { reports, calls } = run({}, (h) => {
      h.onRequestStart?.(controller, {});
      h.onResponseError?.(controller, new Error('ECONNREFUSED'));
    });
    expect(reports).toEqual([['GET', 0, '10.96.0.1:6443']]);
    expect(calls).toEqual(['requestStart', 'error ECONNREFUSED']);
  });

  it('does not count a stream error after the headers a second time (a watch cut mid-stream)', () => {
    const { reports, calls } = run({}, (h) => {
      h.onResponseStart?.(controller, 200, {}, 'OK');
      h.onResponseData?.(controller, Buffer.from('{"type":"ADDED"}'));
      h.onResponseError?.(controller, new Error('aborted'));
    });
    expect(reports).toEqual([['GET', 200, '10.96.0.1:6443']]);
    expect(calls.at(-1)).toBe('error aborted');
  });

  it('counts upgrades by their status', () => {
    const reports: number[] = [];
    const dispatch = countResponses((_m, code) => reports.push(code))((_o, h) => {
      h.onRequestUpgrade?.(controller, 101, {}, undefined as never);
      return true;
    });
    dispatch({ origin: 'https://h:1', path: '/', method: 'GET' } as Options, {});
    expect(reports).toEqual([101]);
  });

  it('reads the host from a URL origin too, and defaults the method to GET', () => {
    const { reports } = run(
      { origin: new URL('https://api.example.com:6443'), method: undefined as never },
      (h) => h.onResponseStart?.(controller, 200, {}, 'OK'),
    );
    expect(reports).toEqual([['GET', 200, 'api.example.com:6443']]);
  });

  it('keeps the default port out of host, as the URL origin does', () => {
    const { reports } = run({ origin: 'https://kubernetes.default.svc' }, (h) =>
      h.onResponseStart?.(controller, 200, {}, 'OK'),
    );
    expect(reports).toEqual([['GET', 200, 'kubernetes.default.svc']]);
  });

  it('swallows exceptions of the callback: metrics never break a request', () => {
    const calls: string[] = [];
    const dispatch = countResponses(() => {
      throw new Error('metrics broke');
    })((_o, h) => {
      h.onResponseStart?.(controller, 200, {}, 'OK');
      h.onResponseEnd?.(controller, {});
      return true;
    });
    const handler: Handler = {
      onResponseStart: () => calls.push('start'),
      onResponseEnd: () => calls.push('end'),
    };
    expect(() =>
      dispatch({ origin: 'https://h:1', path: '/', method: 'GET' } as Options, handler),
    ).not.toThrow();
    expect(calls).toEqual(['start', 'end']);
  });

  it('tolerates handlers that implement only some callbacks', () => {
    const dispatch = countResponses(() => {})((_o, h) => {
      h.onRequestStart?.(controller, {});
      h.onResponseStarted?.();
      h.onResponseStart?.(controller, 200, {}, 'OK');
      h.onResponseData?.(controller, Buffer.from('x'));
      h.onResponseEnd?.(controller, {});
      h.onRequestSent?.();
      h.onBodySent?.(Buffer.from('x'));
      return false;
    });
    expect(dispatch({ origin: 'https://h:1', path: '/', method: 'GET' } as Options, {})).toBe(
      false,
    );
  });
});
