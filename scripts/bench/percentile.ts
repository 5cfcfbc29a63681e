// Percentiles of the benchmarks' samples (latencies, completion times) and the median of their runs, read the
// same way everywhere.

/** The value at percentile p of an ascending list (0 when empty). */
export function percentileOf(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/**
 * The median of several runs' values: the middle one, or the mean of the two middle ones when their number is
 * even (the upper one alone would report the better of two runs as their median). 0 when empty.
 */
export function medianOf(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return 0;
  if (sorted.length % 2 === 1) return sorted[middle] ?? 0;
  return ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}
