/** The marker `truncate` ends a cut text with unless told otherwise (statuses, audit columns). */
export const TRUNCATION_MARKER = '... [truncated]';
/** The shorter marker of messages shown to users (handler errors, excerpts). */
export const ELLIPSIS = '…';

/**
 * Cuts `text` to at most `max` UTF-16 code units, ending in `marker` so a reader knows text is
 * missing, without splitting a surrogate pair. When `max` leaves no room for the marker, the text
 * is cut without one.
 */
export function truncate(text: string, max: number, marker: string = TRUNCATION_MARKER): string {
  if (text.length <= max) return text;
  if (max <= marker.length) return text.slice(0, Math.max(0, max)).toWellFormed();
  let end = max - marker.length;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return text.slice(0, end) + marker;
}
