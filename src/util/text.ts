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

/**
 * Like `truncate`, but counting characters (Unicode code points) as PostgreSQL's varchar(n) and
 * Kubernetes' maxLength do, so a text that fits the column by their count is never cut: 512
 * emoji are 1024 UTF-16 code units and still fit varchar(512).
 */
export function truncateCharacters(
  text: string,
  max: number,
  marker: string = TRUNCATION_MARKER,
): string {
  if (text.length <= max) return text;
  const characters = [...text];
  if (characters.length <= max) return text;
  if (max <= marker.length) return characters.slice(0, Math.max(0, max)).join('');
  return characters.slice(0, max - marker.length).join('') + marker;
}

/**
 * U+0000 and lone surrogates become U+FFFD; everything else is kept as it is. PostgreSQL's text
 * and jsonb refuse both, so the audit log stores every string this way, and so does the status
 * for the texts it shares with the audit row (the error).
 */
export function cleanText(text: string): string {
  const wellFormed = text.isWellFormed() ? text : text.toWellFormed();
  return wellFormed.includes('\u0000') ? wellFormed.replaceAll('\u0000', '\uFFFD') : wellFormed;
}
