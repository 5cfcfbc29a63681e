// Prints what a run did and found: one row per scenario or iteration (seed, faults injected by kind,
// recurrences and charges verified, duplicates, lost, ledger mismatches, non-terminal jobs, recovery), the
// totals, and for a failure its violations and the exact command that reproduces it.
import type { ScenarioResult } from './scenario-common.ts';

const seconds = (ms: number | undefined) => (ms === undefined ? '-' : (ms / 1000).toFixed(1));

export function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

export function faultSummary(faults: Record<string, number>): string {
  return Object.entries(faults)
    .map(([kind, n]) => `${kind}=${n}`)
    .join(' ');
}

export function resultRow(r: ScenarioResult): string {
  const f = r.verdict.figures;
  const ok =
    r.verdict.violations.length > 0
      ? `FAIL(${r.verdict.violations.length})`
      : r.verdict.findings.length > 0
        ? `ok+${r.verdict.findings.length}f`
        : 'ok';
  return [
    String(r.seed).padStart(10),
    r.scenario.padEnd(15),
    String(f.recurrences).padStart(4),
    String(f.charges).padStart(4),
    String(f.duplicates).padStart(3),
    String(f.lost).padStart(4),
    String(f.mismatches).padStart(4),
    String(f.nonTerminalJobs).padStart(4),
    seconds(r.recoveryMs).padStart(6),
    seconds(r.wallMs).padStart(6),
    ok.padEnd(8),
    faultSummary(r.faults),
  ].join(' | ');
}

export const HEADER = [
  'seed'.padStart(10),
  'scenario'.padEnd(15),
  'recs',
  'chrg',
  'dup',
  'lost',
  'mism',
  'nont',
  'recov s',
  'wall s',
  'verdict'.padEnd(8),
  'faults injected by kind',
].join(' | ');

export function totals(results: ScenarioResult[]): string {
  const faults: Record<string, number> = {};
  for (const r of results)
    for (const [kind, n] of Object.entries(r.faults)) faults[kind] = (faults[kind] ?? 0) + n;
  const sum = (pick: (r: ScenarioResult) => number) => results.reduce((s, r) => s + pick(r), 0);
  const recoveries = results.map((r) => r.recoveryMs).filter((ms): ms is number => ms !== undefined);
  const failed = results.filter((r) => r.verdict.violations.length > 0).length;
  const findings = results.flatMap((r) => r.verdict.findings.map((f) => `seed ${r.seed}: ${f}`));
  return [
    `runs: ${results.length}, failed: ${failed}`,
    `recurrences verified: ${sum((r) => r.verdict.figures.recurrences)}, approved charges verified: ${sum((r) => r.verdict.figures.charges)}, attempts: ${sum((r) => r.verdict.figures.attempts)}`,
    `duplicates: ${sum((r) => r.verdict.figures.duplicates)}, lost: ${sum((r) => r.verdict.figures.lost)}, ledger mismatches: ${sum((r) => r.verdict.figures.mismatches)}, non-terminal jobs at the end: ${sum((r) => r.verdict.figures.nonTerminalJobs)}`,
    `recovery after the last fault: worst ${seconds(Math.max(0, ...recoveries))} s, median ${seconds(median(recoveries))} s`,
    `faults injected by kind (total): ${Object.entries(faults)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([kind, n]) => `${kind}=${n}`)
      .join(', ')}`,
    `findings (service behaviour that breaks no invariant): ${findings.length === 0 ? 'none' : `\n  ${findings.join('\n  ')}`}`,
  ].join('\n');
}

export function failureReport(r: ScenarioResult, reproduce: string): string {
  return [
    `FAILED: scenario ${r.scenario}, seed ${r.seed} (logs and ledger in ${r.runDir})`,
    ...r.verdict.violations.slice(0, 30).map((v) => `  - ${v.kind}: ${v.detail}`),
    ...(r.verdict.violations.length > 30 ? [`  ... ${r.verdict.violations.length - 30} more`] : []),
    `  reproduce: ${reproduce}`,
  ].join('\n');
}
