// The benchmark at a small size: the whole pipeline it measures (seed, fan-out, worker processes, fake
// gateway, ceiling) runs and its own correctness checks hold, so `npm run bench` keeps working and its
// figures keep meaning what the README says. Speed is not asserted here (see `npm run bench`).
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import t from 'tap';
import { LEDGER_DIR_PREFIX, runBenchmark } from '../../scripts/bench/run.ts';
import { adminUrl } from '../helpers/database.ts';

/** The ledger folders runs left under the temporary directory. */
const ledgerDirs = async () => (await readdir(tmpdir())).filter((name) => name.startsWith(LEDGER_DIR_PREFIX));

/**
 * Small, yet long enough for each half of the SQL-only ceiling to be sampled while it charges (about a second
 * each); the fixed costs (migrations, process starts) take most of the test's time at any size this small.
 */
const N = 1_600;

t.test(`a ${N}-recurrence morning is charged exactly once and measured`, async (t) => {
  const lines: string[] = [];
  const dirsBefore = await ledgerDirs();
  const result = await runBenchmark({
    adminUrl: adminUrl(),
    count: N,
    latencyMs: 5,
    declineRate: 0.1,
    workers: 2,
    concurrency: 8,
    dbPool: 5,
    bossPool: 2,
    gatewayCap: 0,
    date: '2031-06-02',
    skipCeiling: false,
    profileDir: null,
    workerNodeOptions: '--max-semi-space-size=8 --max-old-space-size=160',
    keep: false,
    log: (line) => lines.push(line),
  });
  t.match(result.correctness, {
    ok: true,
    chargeJobs: N,
    recurrencesCharged: N,
    pending: 0,
    jobsNotCompleted: 0,
    duplicatesAtGateway: 0,
    ledgerMatchesDatabase: true,
  });
  t.equal(result.correctness.approved + result.correctness.declined, N);
  t.ok(result.correctness.declined > 0, `declines happened (${result.correctness.declined})`);
  t.equal(result.fanOut.jobs, N);
  t.ok(result.throughput.steady > 0);
  t.equal(result.ceiling?.charged, N, 'the ceiling charged the same N straight through Postgres');
  t.ok(
    (result.ceiling?.declined ?? 0) > 0,
    `the ceiling recorded declines too, as the gateway's mix has them (${result.ceiling?.declined})`,
  );
  const halves = result.ceiling?.halves;
  t.ok(
    halves !== undefined && halves.before > 0 && halves.after > 0,
    'the SQL-only ceiling was measured in two halves, before the workers and after them',
    { halves },
  );
  t.equal(
    result.ceiling?.chargesPerSecond,
    ((halves?.before ?? 0) + (halves?.after ?? 0)) / 2,
    "and its rate, the ratio's denominator, is the mean of theirs",
  );
  t.equal(result.ceilingWithGateway?.charged, N, 'and again with the gateway calls');
  t.ok((result.ratioToCeiling ?? 0) > 0, 'the ratio to the SQL-only ceiling was measured');
  t.ok((result.ratioToCeilingWithGateway ?? 0) > 0);
  t.ok(
    result.throughput.totalSeconds > 0 && Number.isFinite(result.throughput.overall),
    'the finish time comes from the last completion',
  );
  t.ok(result.database.transactionsPerCharge > 0);
  const { samples, ...shares } = result.database.backends;
  t.ok(samples > 0, `the workers' backends were sampled while they charged (${samples})`);
  t.ok(
    Math.abs(Object.values(shares).reduce((sum, share) => sum + share, 0) - 1) < 1e-9,
    'their states share all the samples',
  );
  t.ok(
    (result.ceiling?.backends.samples ?? 0) > 0 && (result.ceilingWithGateway?.backends.samples ?? 0) > 0,
    'and the ceilings',
    { ceiling: result.ceiling?.backends, ceilingWithGateway: result.ceilingWithGateway?.backends },
  );
  // Only that it was measured: the server's WAL includes whatever the suite's other files write meanwhile.
  for (const [phase, bytes] of [
    ['workers', result.database.walBytesPerCharge],
    ['ceiling', result.ceiling?.walBytesPerCharge],
    ['ceiling with the gateway', result.ceilingWithGateway?.walBytesPerCharge],
  ] as const)
    t.ok((bytes ?? 0) > 0, `the WAL written per charge was measured for the ${phase} (${bytes})`);
  // The database's own transactions, unlike the WAL, so they compare: the queue adds its fetch and its settle
  // to the statements of each batch that the ceilings commit too.
  const ceilingTransactions = [
    result.ceiling?.transactionsPerCharge ?? 0,
    result.ceilingWithGateway?.transactionsPerCharge ?? 0,
  ];
  t.ok(
    ceilingTransactions.every((n) => n > 0),
    `the ceilings' transactions per charge were measured (${ceilingTransactions.join(', ')})`,
  );
  t.ok(
    ceilingTransactions.every((n) => result.database.transactionsPerCharge > n),
    `the workers commit more transactions per charge than either ceiling (${result.database.transactionsPerCharge})`,
  );
  t.match(result.settings, { sharedBuffers: /\d/, maxWalSize: /\d/, autovacuum: /^(on|off)$/ });
  t.ok(
    result.workers.every((worker) => worker.peakRssBytes > 0),
    'memory was sampled for each worker',
  );
  t.ok(
    lines.some((line) => line.startsWith(`fan-out: ${N} charge jobs`)),
    'progress is reported',
  );
  t.same(await ledgerDirs(), dirsBefore, 'its gateway ledgers are removed with its database');
});
