/**
 * Durations the way kubectl prints them: 850ms, 1.25s, 3m4s, 1h2m3s. Every unit truncates, as
 * the minutes and hours do, so 59999ms is 59.99s, never 60s (rounding would cross into the next
 * format).
 */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.floor(ms)}ms`;
  if (ms < 60_000) return `${Math.floor(ms / 10) / 100}s`;
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h}h${m}m${s}s` : `${m}m${s}s`;
}
