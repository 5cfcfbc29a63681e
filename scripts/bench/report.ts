// The benchmark's table: one column per run and, with several runs, the median.
import { medianOf } from './percentile.ts';
import type { runBenchmark } from './run.ts';
import type { BackendShares } from './waits.ts';

type Result = Awaited<ReturnType<typeof runBenchmark>>;

/** The runs' median, shown with as many decimals as the runs' own cells. */
function medianCell(cells: string[]): string {
  const values = cells.map(Number);
  if (!values.every(Number.isFinite)) return '-';
  const decimals = Math.max(...cells.map((cell) => cell.split('.')[1]?.length ?? 0));
  return medianOf(values).toFixed(decimals);
}

const cpuPair = (ms: { process: number; postgres: number }) =>
  `${ms.process.toFixed(2)} / ${ms.postgres.toFixed(2)}`;

const backendShares = (shares: BackendShares) =>
  [shares.running, shares.wal, shares.locks, shares.io, shares.client]
    .map((share) => Math.round(share * 100))
    .join(' / ');

/** A figure measured in each phase: the workers', the ceiling's and the ceiling with gateway's ('-' if skipped). */
function byPhase(
  r: Result,
  figure: 'transactionsPerCharge' | 'walBytesPerCharge',
  format: (value: number) => string,
): string {
  return [r.database[figure], r.ceiling?.[figure], r.ceilingWithGateway?.[figure]]
    .map((value) => (value === undefined ? '-' : format(value)))
    .join(' / ');
}

export function formatReport(results: Result[]): string {
  const rows: Array<[string, (r: Result) => number | string]> = [
    [
      'Postgres shared_buffers / max_wal_size / autovacuum',
      (r) => `${r.settings.sharedBuffers} / ${r.settings.maxWalSize} / ${r.settings.autovacuum}`,
    ],
    ['recurrences due (N)', (r) => r.seed.recurrences],
    ['seed time (s)', (r) => r.seed.seconds.toFixed(1)],
    ['fan-out time (s)', (r) => r.fanOut.seconds.toFixed(1)],
    ['fan-out rate (jobs/s)', (r) => Math.round(r.fanOut.jobsPerSecond)],
    ['all charged in (s)', (r) => r.throughput.totalSeconds.toFixed(1)],
    ['throughput overall (charges/s)', (r) => Math.round(r.throughput.overall)],
    ['throughput steady p10-p90 (charges/s)', (r) => Math.round(r.throughput.steady)],
    [
      'ceiling, charge code without queue or gateway (charges/s)',
      (r) => (r.ceiling === null ? '-' : Math.round(r.ceiling.chargesPerSecond)),
    ],
    [
      'its halves, before / after the workers (charges/s)',
      (r) =>
        r.ceiling?.halves === undefined
          ? '-'
          : `${Math.round(r.ceiling.halves.before)} / ${Math.round(r.ceiling.halves.after)}`,
    ],
    ['ratio to ceiling', (r) => (r.ratioToCeiling === null ? '-' : r.ratioToCeiling.toFixed(2))],
    [
      'ceiling with the gateway calls, no queue (charges/s)',
      (r) => (r.ceilingWithGateway === null ? '-' : Math.round(r.ceilingWithGateway.chargesPerSecond)),
    ],
    [
      'ceiling CPU ms per charge: process / postgres',
      (r) => (r.ceiling === null ? '-' : cpuPair(r.ceiling.perChargeMs)),
    ],
    [
      'ceiling with gateway CPU ms per charge: process / postgres',
      (r) => (r.ceilingWithGateway === null ? '-' : cpuPair(r.ceilingWithGateway.perChargeMs)),
    ],
    [
      'ratio to ceiling with gateway calls',
      (r) => (r.ratioToCeilingWithGateway === null ? '-' : r.ratioToCeilingWithGateway.toFixed(2)),
    ],
    [
      'charge latency p50 / p95 / p99 (ms)',
      (r) =>
        `${Math.round(r.latencyMs.p50)} / ${Math.round(r.latencyMs.p95)} / ${Math.round(r.latencyMs.p99)}`,
    ],
    [
      'db transactions per charge: workers / ceiling / ceiling with gateway',
      (r) => byPhase(r, 'transactionsPerCharge', (n) => n.toFixed(2)),
    ],
    ['peak Postgres connections', (r) => r.database.peakConnections],
    [
      'WAL per charge (KB): workers / ceiling / ceiling with gateway',
      (r) => byPhase(r, 'walBytesPerCharge', (bytes) => (bytes / 1024).toFixed(1)),
    ],
    [
      'Postgres backends while charging: running / WAL / locks / IO / client (%)',
      (r) => backendShares(r.database.backends),
    ],
    [
      'the same in the ceilings, without / with the gateway calls (%)',
      (r) =>
        r.ceiling === null || r.ceilingWithGateway === null
          ? '-'
          : `${backendShares(r.ceiling.backends)}, ${backendShares(r.ceilingWithGateway.backends)}`,
    ],
    ['Postgres size growth (MB)', (r) => (r.database.sizeGrowthBytes / 1_048_576).toFixed(1)],
    [
      'peak RSS per worker (MB)',
      (r) => r.workers.map((w) => (w.peakRssBytes / 1_048_576).toFixed(0)).join(' / '),
    ],
    ['CPU seconds per worker', (r) => r.workers.map((w) => w.cpuSeconds.toFixed(0)).join(' / ')],
    ['machine CPU used (2 cores = 100%)', (r) => `${Math.round(r.cpu.machineShare * 100)}%`],
    [
      'CPU ms per charge: workers / postgres / gateway',
      (r) =>
        `${r.cpu.perChargeMs.workers.toFixed(2)} / ${r.cpu.perChargeMs.postgres.toFixed(2)} / ${r.cpu.perChargeMs.gateway.toFixed(2)}`,
    ],
    [
      'correct (charged once, ledger = db)',
      (r) => (r.correctness.ok ? 'yes' : `NO ${JSON.stringify(r.correctness)}`),
    ],
  ];
  const header = ['', ...results.map((_, i) => `run ${i + 1}`), ...(results.length > 1 ? ['median'] : [])];
  const body = rows.map(([label, read]) => {
    const cells = results.map((result) => String(read(result)));
    return [label, ...cells, ...(results.length > 1 ? [medianCell(cells)] : [])];
  });
  const widths = header.map((_, i) => Math.max(...[header, ...body].map((row) => (row[i] ?? '').length)));
  return [header, ...body]
    .map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  '))
    .join('\n');
}
