// Outbound HTTP for handlers: one deadline covering request and body, cancellation that surfaces
// the run's own abort reason, and network failures turned into messages a user can act on.
import { ELLIPSIS, truncate } from '../util/text.ts';
import { errorMessage } from './messages.ts';

/**
 * Runs `work` with a signal that aborts when `parent` aborts or after `timeoutMs`.
 * Rejects with `parent.reason` when the run was cancelled, with "<what> timed out after N ms" on
 * the deadline, and with "<what> failed: <cause>" for anything else `work` throws (network
 * errors), so callers should keep their own checks outside `work`.
 */
export async function withDeadline<T>(
  what: string,
  parent: AbortSignal,
  timeoutMs: number,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  parent.throwIfAborted();
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(parent.reason);
  parent.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(
    () => controller.abort(new Error(`${what} timed out after ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    return await work(controller.signal);
  } catch (error) {
    if (controller.signal.aborted) throw controller.signal.reason;
    throw new Error(`${what} failed: ${networkErrorMessage(error)}`, { cause: error });
  } finally {
    clearTimeout(timer);
    parent.removeEventListener('abort', onAbort);
  }
}

/** fetch's "fetch failed" says nothing; its cause says "connect ECONNREFUSED 127.0.0.1:1". */
function networkErrorMessage(error: unknown): string {
  if (error instanceof Error && error.cause !== undefined) return errorMessage(error.cause);
  return errorMessage(error);
}

export interface LimitedBody {
  readonly text: string;
  /** True when the body was longer than the limit and reading stopped there. */
  readonly truncated: boolean;
}

/** Reads at most `maxBytes` of the body as UTF-8, cancelling the rest of the stream. */
export async function readBodyLimited(response: Response, maxBytes: number): Promise<LimitedBody> {
  if (response.body === null) return { text: '', truncated: false };
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (size + value.byteLength > maxBytes) {
      chunks.push(value.subarray(0, maxBytes - size));
      truncated = true;
      await reader.cancel();
      break;
    }
    chunks.push(value);
    size += value.byteLength;
  }
  // A multi-byte character cut at the limit decodes to U+FFFD rather than throwing.
  return { text: new TextDecoder().decode(Buffer.concat(chunks)), truncated };
}

/** A one-line body excerpt for error messages. */
export function excerpt(text: string, maxLength = 200): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return truncate(flat, maxLength, ELLIPSIS);
}

/** The URL without userinfo, query and fragment: what may appear in plans, logs and messages. */
export function redactUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}
