// Percentiles of the benchmarks' samples (latencies, completion times), read the same way everywhere.

/** The value at percentile p of an ascending list (0 when empty). */
export function percentileOf(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}
