/**
 * Samples every replica's "am I the leader?" every few milliseconds and counts the instants at
 * which more than one said yes. Call the returned function to stop and read the counts.
 */
export function sampleLeadership(leaders: () => readonly boolean[]): () => {
  samples: number;
  overlaps: number;
} {
  let samples = 0;
  let overlaps = 0;
  const timer = setInterval(() => {
    samples++;
    if (leaders().filter(Boolean).length > 1) overlaps++;
  }, 5);
  return () => {
    clearInterval(timer);
    return { samples, overlaps };
  };
}
