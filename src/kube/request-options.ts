import {
  type ConfigurationOptions,
  Observable,
  type ObservableMiddleware,
} from '@kubernetes/client-node';

/**
 * Per-call options for client-node's generated APIs that bound a request (and reading its body)
 * by `signal`: client-node has no per-call timeout of its own.
 */
export function withSignal(signal: AbortSignal): ConfigurationOptions {
  const middleware: ObservableMiddleware = {
    pre: (context) => {
      context.setSignal(signal);
      return new Observable(Promise.resolve(context));
    },
    post: (context) => new Observable(Promise.resolve(context)),
  };
  // 'append' keeps the client's own middleware (User-Agent); the default would replace it.
  return { middleware: [middleware], middlewareMergeStrategy: 'append' };
}
