// One benchmark run of the morning: a fresh database seeded with N recurrences due on one business date, the
// fake gateway and W worker processes as deployed, processar_recorrencias_do_dia triggered, every charge job
// waited for; then the worker's charge code without the queue (the same-run ceiling). Returns every figure.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { createDbPool } from '../../src/db/pool.ts';
import { seedRecurrences } from '../../src/db/seed.ts';
import { addDays } from '../../src/domain/dates.ts';
import { freePort, makeTempDataDir } from '../../src/dev/embedded-postgres.ts';
import { databaseUrl, sql } from './database.ts';
import { percentileOf } from './percentile.ts';
import { cpuSecondsOf, cpuShare, machineCpu, memoryOf } from './system.ts';
import { BackendSampler, mergeShares, type BackendShares } from './waits.ts';

export type BenchOptions = {
  adminUrl: string;
  count: number;
  latencyMs: number;
  declineRate: number;
  workers: number;
  concurrency: number;
  dbPool: number;
  bossPool: number;
  gatewayCap: number;
  date: string;
  skipCeiling: boolean;
  /** Folder to write V8 CPU profiles of the workers to (node --cpu-prof), or null. */
  profileDir: string | null;
  /** NODE_OPTIONS for the worker processes (heap sizing). */
  workerNodeOptions: string;
  /** Keep the benchmark database (for query plans) instead of dropping it. */
  keep: boolean;
  log: (line: string) => void;
};

const ROOT = new URL('../../', import.meta.url);
/** How long a started role may take to say it is ready. */
const READY_SECONDS = 60;
/** application_name of the benchmark's own progress poll, left out of the connection count. */
const POLLER = 'recorrencias-bench-poll';
/** The temporary folder of a run's fake-gateway ledgers, under the system's temporary directory. */
export const LEDGER_DIR_PREFIX = 'recorrencias-bench-ledgers-';

type Service = {
  child: ChildProcess;
  ready: Promise<void>;
  exited: Promise<number | null>;
  output: () => string;
  /** The command line's first argument (the role), for messages. */
  name: string;
};

function startRole(args: string[], env: Record<string, string>, readyMessage: string | null): Service {
  const child = spawn(process.execPath, ['dist/main.js', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, LOG_FORMAT: 'json', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const ready = new Promise<void>((resolve, reject) => {
    // A role that cannot reach the database keeps retrying rather than exiting: without a deadline the
    // benchmark would wait for it forever (seen behind a connection pooler that refused its connections).
    const deadline =
      readyMessage === null
        ? undefined
        : setTimeout(
            () =>
              reject(new Error(`${args[0]} not ready after ${READY_SECONDS} s:\n${output.slice(-3_000)}`)),
            READY_SECONDS * 1000,
          ).unref();
    const onData = (chunk: Buffer) => {
      output = `${output}${chunk.toString()}`.slice(-200_000);
      if (readyMessage !== null && output.includes(`"msg":"${readyMessage}"`)) {
        clearTimeout(deadline);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) =>
      reject(new Error(`${args[0]} exited (${code}) before ready:\n${output.slice(-3_000)}`)),
    );
    if (readyMessage === null) resolve();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, ready, exited, output: () => output, name: args[0] ?? 'role' };
}

/**
 * The exit code of a one-shot role (`migrate`, `run`), or an error with its output once `seconds` pass: a role
 * that cannot reach the database waits for it, which would hold the benchmark forever.
 */
async function finished(service: Service, seconds: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), seconds * 1000);
  });
  const result = await Promise.race([service.exited, late]);
  clearTimeout(timer);
  if (result !== 'late') return result;
  await stop(service);
  throw new Error(`${service.name} did not finish in ${seconds} s:\n${service.output().slice(-3_000)}`);
}

async function stop(service: Service): Promise<void> {
  if (service.child.exitCode !== null) return;
  service.child.kill('SIGTERM');
  await service.exited;
}

/**
 * Charges per second at steady state: the middle 80 % of completions (sorted, in seconds) over the time
 * between the 10th and the 90th percentile. Null when that window is empty (too few completions).
 */
function steadyRate(sortedDoneTimes: number[]): number | null {
  const p10 = percentileOf(sortedDoneTimes, 10);
  const p90 = percentileOf(sortedDoneTimes, 90);
  return p90 > p10 ? (0.8 * sortedDoneTimes.length) / (p90 - p10) : null;
}

export async function runBenchmark(options: BenchOptions) {
  const { log } = options;
  const [settings] = await sql<{
    fsync: string;
    synchronous_commit: string;
    version: string;
    max_connections: string;
    shared_buffers: string;
    max_wal_size: string;
    autovacuum: string;
  }>(
    options.adminUrl,
    `SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS synchronous_commit,
            current_setting('server_version') AS version, current_setting('max_connections') AS max_connections,
            current_setting('shared_buffers') AS shared_buffers, current_setting('max_wal_size') AS max_wal_size,
            current_setting('autovacuum') AS autovacuum`,
  );
  if (settings?.fsync !== 'on' || settings.synchronous_commit === 'off') {
    throw new Error(
      `refusing to benchmark with fsync=${settings?.fsync} synchronous_commit=${settings?.synchronous_commit}: durable commits are the point`,
    );
  }
  const name = `bench_${Date.now()}`;
  await sql(options.adminUrl, `CREATE DATABASE "${name}"`);
  const url = databaseUrl(options.adminUrl, name);
  const cleanup: Array<() => Promise<void>> = options.keep
    ? [async () => log(`kept the database: ${url}`)]
    : [() => sql(options.adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).then(() => undefined)];
  try {
    const migrate = startRole(['migrate'], { DATABASE_URL: url, LOG_LEVEL: 'warn' }, null);
    if ((await finished(migrate, 120)) !== 0) throw new Error(`migrate failed:\n${migrate.output()}`);

    // Three batches: N due on the date for the queue run, N due the day after for the ceiling and N the day after
    // that for the ceiling with gateway calls (neither touched by the queue run).
    const pool = await createDbPool(url, { maxConnections: 2, applicationName: 'recorrencias:bench' });
    const seedStarted = performance.now();
    const seeded = await seedRecurrences(pool, {
      count: options.count,
      date: options.date,
      sellers: 1_000,
      seed: 1,
    });
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    const ceilingDate = addDays(options.date, 1);
    const ceilingBatch = options.skipCeiling
      ? null
      : await seedRecurrences(pool, { count: options.count, date: ceilingDate, sellers: 1_000, seed: 2 });
    const gatewayCeilingDate = addDays(options.date, 2);
    const gatewayCeilingBatch = options.skipCeiling
      ? null
      : await seedRecurrences(pool, {
          count: options.count,
          date: gatewayCeilingDate,
          sellers: 1_000,
          seed: 3,
        });
    await pool.end();
    await sql(url, 'VACUUM ANALYZE');
    log(`seeded ${seeded.inserted} recurrences in ${seedSeconds.toFixed(1)} s`);

    // The SQL-only ceiling is measured in two halves, one before the workers and one after: this machine's
    // speed drifts within minutes, and bracketing the workers makes the drift weigh on both sides of the
    // ratio alike (and shows, in the two halves' rates, how much there was).
    const ceilingFirst = ceilingBatch?.firstId ?? null;
    const ceilingHalf = Math.floor(options.count / 2);
    let ceilingBefore: Ceiling | null = null;
    if (ceilingFirst !== null && ceilingHalf > 0) {
      log("measuring the same-run ceiling's first half, before the workers start");
      ceilingBefore = await measureCeiling(url, name, ceilingFirst, ceilingHalf, ceilingDate, options, '');
      // The workers start from the state they always started from: vacuumed and analysed after the seed.
      await sql(url, 'VACUUM ANALYZE');
    }

    const ledgerDir = await makeTempDataDir(LEDGER_DIR_PREFIX);
    // Last (after the gateways stop): the ledgers go with the database, or stay with it under --keep.
    if (options.keep) cleanup.push(async () => log(`kept the gateway ledgers: ${ledgerDir}`));
    else cleanup.push(() => rm(ledgerDir, { recursive: true, force: true }));
    const ledgerFile = join(ledgerDir, 'ledger.jsonl');
    const gatewayPort = await freePort();
    const gateway = startFakeGateway(gatewayPort, ledgerFile, options);
    cleanup.unshift(() => stop(gateway));
    const workerEnv = {
      DATABASE_URL: url,
      GATEWAY_URL: `http://127.0.0.1:${gatewayPort}`,
      WORKER_CONCURRENCY: String(options.concurrency),
      DB_POOL_SIZE: String(options.dbPool),
      BOSS_POOL_SIZE: String(options.bossPool),
      GATEWAY_MAX_CONCURRENCY: String(options.gatewayCap),
      NODE_OPTIONS: [
        options.workerNodeOptions,
        options.profileDir === null ? '' : `--cpu-prof --cpu-prof-dir=${options.profileDir}`,
      ]
        .join(' ')
        .trim(),
    };
    const workers = Array.from({ length: options.workers }, () =>
      startRole(['worker'], workerEnv, 'worker started'),
    );
    for (const worker of workers) cleanup.unshift(() => stop(worker));
    await Promise.all(workers.map((worker) => worker.ready));
    await waitForGateway(gatewayPort);

    const [sizeBefore] = await sql<{ bytes: string }>(
      url,
      'SELECT pg_database_size(current_database()) AS bytes',
    );
    const cpuBefore = machineCpu();

    const processCpuBefore = workers.map((worker) => cpuSecondsOf(worker.child.pid ?? 0));
    const phase = await observePhase(options.adminUrl, url, name);
    cleanup.unshift(() => phase.stop().then(() => undefined));

    log(
      `triggering processar_recorrencias_do_dia for ${options.date} with ${options.workers} worker(s) x ${options.concurrency}`,
    );
    const started = performance.now();
    const startedAt = new Date();
    const trigger = startRole(
      ['run', 'processar_recorrencias_do_dia', '--date', options.date, '--allow-future-date'],
      { DATABASE_URL: url, LOG_LEVEL: 'warn' },
      null,
    );
    if ((await finished(trigger, 120 + options.count / 5_000)) !== 0)
      throw new Error(`processar failed:\n${trigger.output()}`);
    const fanOutSeconds = (performance.now() - started) / 1000;
    const fanOut = JSON.parse(trigger.output().slice(trigger.output().indexOf('{'))) as {
      counts: { enfileiradas: number };
    };
    log(`fan-out: ${fanOut.counts.enfileiradas} charge jobs in ${fanOutSeconds.toFixed(1)} s`);

    const deadline = Date.now() + (120 + options.count / 20) * 1000;
    // Counting the jobs not yet terminal reads the whole job table (50-70 ms of a core at 100,000 jobs, on a
    // fresh connection each time it was 1 s apart): it competes with the run it measures. So one connection,
    // and the wait between counts follows the progress: half the time the remaining jobs should take at the
    // rate so far, between 1 and 10 s. The finish time comes from the last completion, not from the poll.
    const poller = new pg.Client({ connectionString: url, application_name: POLLER });
    await poller.connect();
    try {
      for (;;) {
        const {
          rows: [row],
        } = await poller.query<{ unfinished: number }>(
          `SELECT count(*)::int AS unfinished FROM pgboss.job WHERE name = 'cobrar_recorrencia' AND state < 'completed'`,
        );
        const unfinished = row?.unfinished ?? options.count;
        if (unfinished === 0) break;
        if (Date.now() > deadline) throw new Error(`charges did not finish in time (${unfinished} left)`);
        const elapsed = (performance.now() - started) / 1000;
        const rate = Math.max(options.count - unfinished, 0) / elapsed;
        const wait = rate > 0 ? Math.min(Math.max(unfinished / rate / 2, 1), 10) : 1;
        await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      }
    } finally {
      await poller.end();
    }
    const cpuAfter = machineCpu();
    const workerCpu = workers.map(
      (worker, i) => cpuSecondsOf(worker.child.pid ?? 0) - (processCpuBefore[i] ?? 0),
    );
    const workerMemory = workers.map((worker) => memoryOf(worker.child.pid ?? 0));
    const gatewayCpu = cpuSecondsOf(gateway.child.pid ?? 0);
    // The server processes of this database's connections (opened when the workers started, so their
    // CPU time is this run's); cluster-wide background writers are left out.
    const backends = await sql<{ pid: number }>(
      options.adminUrl,
      `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'`,
      [name],
    );
    const postgresCpu = backends.reduce((sum, backend) => sum + cpuSecondsOf(backend.pid), 0);
    const { peakConnections, backends: backendStates, walBytes } = await phase.stop();

    const [sizeAfter] = await sql<{ bytes: string }>(
      url,
      'SELECT pg_database_size(current_database()) AS bytes',
    );
    const completions = await sql<{ done: number; took: number }>(
      url,
      `SELECT extract(epoch FROM completed_on - $1::timestamptz)::float8 AS done, extract(epoch FROM completed_on - started_on)::float8 * 1000 AS took
       FROM pgboss.job WHERE name = 'cobrar_recorrencia' AND state = 'completed'`,
      [startedAt],
    );
    const doneTimes = completions.map((row) => row.done).sort((a, b) => a - b);
    const latencies = completions.map((row) => row.took).sort((a, b) => a - b);
    const steady = steadyRate(doneTimes) ?? 0;
    // From the trigger to the last completion (both on this machine's clock).
    const totalSeconds = doneTimes.at(-1) ?? (performance.now() - started) / 1000;

    // Correctness: every seeded recurrence due on the date was charged or declined exactly once, and the
    // gateway's ledger agrees with the database.
    const ledger = readFileSync(ledgerFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map(
        (line) =>
          JSON.parse(line) as {
            key: string;
            recorrenciaId: string;
            ciclo: string;
            status: string;
            amountCents: number;
          },
      );
    const perRecurrence = new Map<string, number>();
    for (const entry of ledger)
      perRecurrence.set(
        `${entry.recorrenciaId}:${entry.ciclo}`,
        (perRecurrence.get(`${entry.recorrenciaId}:${entry.ciclo}`) ?? 0) + 1,
      );
    const [db] = await sql<{
      approved: number;
      declined: number;
      rejected: number;
      pending: number;
      recurrences: number;
      approved_cents: string;
      jobs: number;
      failed_jobs: number;
    }>(
      url,
      `SELECT count(*) FILTER (WHERE status = 'aprovada')::int AS approved, count(*) FILTER (WHERE status = 'recusada')::int AS declined,
              count(*) FILTER (WHERE status = 'rejeitada')::int AS rejected,
              count(*) FILTER (WHERE status = 'pendente')::int AS pending, count(DISTINCT recorrencia_id)::int AS recurrences,
              coalesce(sum(valor_centavos) FILTER (WHERE status = 'aprovada'), 0) AS approved_cents,
              (SELECT count(*)::int FROM pgboss.job WHERE name = 'cobrar_recorrencia') AS jobs,
              (SELECT count(*)::int FROM pgboss.job WHERE name = 'cobrar_recorrencia' AND state <> 'completed') AS failed_jobs
       FROM checkout_recorrencia_cobrancas WHERE data_negocio = $1`,
      [options.date],
    );
    const ledgerApprovedCents = ledger
      .filter((entry) => entry.status === 'approved')
      .reduce((sum, entry) => sum + entry.amountCents, 0);
    const correctness = {
      chargeJobs: db?.jobs ?? 0,
      chargeJobsEqualN: db?.jobs === options.count,
      recurrencesCharged: db?.recurrences ?? 0,
      approved: db?.approved ?? 0,
      declined: db?.declined ?? 0,
      rejected: db?.rejected ?? 0,
      pending: db?.pending ?? 0,
      jobsNotCompleted: db?.failed_jobs ?? 0,
      ledgerEntries: ledger.length,
      duplicatesAtGateway: [...perRecurrence.values()].filter((n) => n > 1).length,
      ledgerMatchesDatabase:
        ledger.length === (db?.approved ?? 0) + (db?.declined ?? 0) &&
        ledgerApprovedCents === Number(db?.approved_cents ?? 0),
    };
    const ok =
      correctness.chargeJobsEqualN &&
      correctness.recurrencesCharged === options.count &&
      correctness.pending === 0 &&
      correctness.duplicatesAtGateway === 0 &&
      correctness.ledgerMatchesDatabase &&
      correctness.approved + correctness.declined === options.count;

    for (const worker of workers) await stop(worker);
    await stop(gateway);
    // Read only now: the workers ran on after their last charge (see `transactions`).
    const transactions = await phase.transactions();

    let ceiling: Ceiling | null = null;
    let ceilingWithGateway: Ceiling | null = null;
    const gatewayCeilingFirst = gatewayCeilingBatch?.firstId ?? null;
    if (ceilingFirst !== null && gatewayCeilingFirst !== null) {
      log(
        "measuring the same-run ceiling (its second half): the workers' charge code without the queue, gateway answered in-process",
      );
      const measuredBefore = ceilingBefore === null ? 0 : ceilingHalf;
      const ceilingAfter = await measureCeiling(
        url,
        name,
        ceilingFirst + measuredBefore,
        options.count - measuredBefore,
        ceilingDate,
        options,
        '',
      );
      ceiling = ceilingBefore === null ? ceilingAfter : bothHalves(ceilingBefore, ceilingAfter);
      log('measuring the same-run ceiling with the gateway calls: the same code and HTTP calls, no queue');
      const ceilingGatewayPort = await freePort();
      const ceilingGateway = startFakeGateway(
        ceilingGatewayPort,
        join(ledgerDir, 'ceiling-ledger.jsonl'),
        options,
      );
      cleanup.unshift(() => stop(ceilingGateway));
      await waitForGateway(ceilingGatewayPort);
      ceilingWithGateway = await measureCeiling(
        url,
        name,
        gatewayCeilingFirst,
        options.count,
        gatewayCeilingDate,
        options,
        `http://127.0.0.1:${ceilingGatewayPort}`,
      );
      await stop(ceilingGateway);
    }

    return {
      settings: {
        ...options,
        log: undefined,
        adminUrl: undefined,
        postgres: settings.version,
        maxConnections: Number(settings.max_connections),
        sharedBuffers: settings.shared_buffers,
        maxWalSize: settings.max_wal_size,
        autovacuum: settings.autovacuum,
      },
      seed: {
        recurrences: seeded.inserted,
        seconds: seedSeconds,
        rowsPerSecond: seeded.inserted / seedSeconds,
      },
      fanOut: {
        jobs: fanOut.counts.enfileiradas,
        seconds: fanOutSeconds,
        jobsPerSecond: fanOut.counts.enfileiradas / fanOutSeconds,
      },
      throughput: {
        totalSeconds,
        overall: options.count / totalSeconds,
        steady,
        steadyWindowSeconds: percentileOf(doneTimes, 90) - percentileOf(doneTimes, 10),
      },
      latencyMs: {
        p50: percentileOf(latencies, 50),
        p95: percentileOf(latencies, 95),
        p99: percentileOf(latencies, 99),
      },
      database: {
        transactionsPerCharge: transactions / options.count,
        sizeGrowthBytes: Number(sizeAfter?.bytes) - Number(sizeBefore?.bytes),
        peakConnections,
        walBytesPerCharge: walBytes / options.count,
        // Sampled every 500 ms from the trigger to the last completion: what limits the queue's run.
        backends: backendStates,
      },
      workers: workers.map((worker, i) => ({
        peakRssBytes: workerMemory[i]?.peak ?? 0,
        cpuSeconds: workerCpu[i] ?? 0,
      })),
      cpu: {
        machineShare: cpuShare(cpuBefore, cpuAfter),
        gatewayCpuSeconds: gatewayCpu,
        postgresCpuSeconds: postgresCpu,
        // Per charge, in milliseconds of one core: where the work goes.
        perChargeMs: {
          workers: (workerCpu.reduce((sum, value) => sum + value, 0) * 1000) / options.count,
          postgres: (postgresCpu * 1000) / options.count,
          gateway: (gatewayCpu * 1000) / options.count,
        },
      },
      ceiling,
      ratioToCeiling: ceiling === null ? null : steady / ceiling.chargesPerSecond,
      ceilingWithGateway,
      ratioToCeilingWithGateway:
        ceilingWithGateway === null ? null : steady / ceilingWithGateway.chargesPerSecond,
      correctness: { ...correctness, ok },
    };
  } finally {
    for (const step of cleanup) await step().catch(() => undefined);
  }
}

type Ceiling = {
  charged: number;
  /** Of those, recorded as declines (the gateway's mix: the same share as the workers'). */
  declined: number;
  /** At steady state: the 10th to the 90th percentile of completions, as for the workers. */
  chargesPerSecond: number;
  /** From the start of the processes to the last of them exiting (both halves together, when halved). */
  seconds: number;
  /** CPU per charge, in milliseconds of one core, of the ceiling processes and of their Postgres backends. */
  perChargeMs: { process: number; postgres: number };
  /** What their Postgres backends were doing, sampled as for the workers. */
  backends: BackendShares;
  /** WAL the server wrote meanwhile, per charge (the whole server's: nothing else runs on it here). */
  walBytesPerCharge: number;
  /** The database's transactions per charge (commits and rollbacks), as for the workers. */
  transactionsPerCharge: number;
  /** The SQL-only ceiling's rate in each of its halves, measured before and after the workers. */
  halves?: { before: number; after: number };
};

/**
 * The SQL-only ceiling's two halves as one: its rate is the mean of theirs (the machine's speed halfway between,
 * when the workers ran), its other figures are per charge over both.
 */
function bothHalves(before: Ceiling, after: Ceiling): Ceiling {
  const charged = before.charged + after.charged;
  const perCharge = (figure: (ceiling: Ceiling) => number) =>
    (figure(before) * before.charged + figure(after) * after.charged) / Math.max(1, charged);
  return {
    charged,
    declined: before.declined + after.declined,
    chargesPerSecond: (before.chargesPerSecond + after.chargesPerSecond) / 2,
    seconds: before.seconds + after.seconds,
    perChargeMs: {
      process: perCharge((ceiling) => ceiling.perChargeMs.process),
      postgres: perCharge((ceiling) => ceiling.perChargeMs.postgres),
    },
    backends: mergeShares(before.backends, after.backends),
    walBytesPerCharge: perCharge((ceiling) => ceiling.walBytesPerCharge),
    transactionsPerCharge: perCharge((ceiling) => ceiling.transactionsPerCharge),
    halves: { before: before.chargesPerSecond, after: after.chargesPerSecond },
  };
}
type CeilingProcess = {
  charged: number;
  declined: number;
  seconds: number;
  /** [epoch ms, charges] per batch, as each finished. */
  completions: Array<[number, number]>;
  processCpuSeconds: number;
  postgresCpuSeconds: number;
};

/** The fake gateway's mix besides the decline rate; the ceiling answers its charges with the same one. */
const GATEWAY_MIX = { irreversibleShare: 0.2, seed: 1 };

function startFakeGateway(port: number, ledgerFile: string, options: BenchOptions): Service {
  return startRole(
    ['fake-gateway'],
    {
      FAKE_GATEWAY_PORT: String(port),
      FAKE_GATEWAY_LATENCY_MS: String(options.latencyMs),
      FAKE_GATEWAY_DECLINE_RATE: String(options.declineRate),
      FAKE_GATEWAY_IRREVERSIBLE_SHARE: String(GATEWAY_MIX.irreversibleShare),
      FAKE_GATEWAY_SEED: String(GATEWAY_MIX.seed),
      FAKE_GATEWAY_LEDGER_FILE: ledgerFile,
      LOG_LEVEL: 'warn',
    },
    null,
  );
}

/** The fake gateway listens once its port answers. */
async function waitForGateway(port: number): Promise<void> {
  for (let tries = 0; ; tries += 1) {
    if (
      await fetch(`http://127.0.0.1:${port}/__stats`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return;
    if (tries > 100) throw new Error('the fake gateway did not start');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

type PhaseFigures = {
  peakConnections: number;
  backends: BackendShares;
  walBytes: number;
};

/**
 * Watches one phase of a run on database `name` until stopped (`stop` may be called again: it returns the same
 * figures): the peak number of connections and what the active backends were doing, from pg_stat_activity
 * polled every 500 ms (the benchmark's own poll left out), the bytes of WAL the server wrote meanwhile (the
 * whole server's: nothing else writes to it here). A failed poll (a connection refused, say) is thrown by
 * `stop`. `transactions` reads the database's own commits and rollbacks since the phase began (unlike the WAL,
 * nothing else's) once the phase's processes have stopped: it waits for their backends to end first, since a
 * running backend reports its transactions to the statistics at most once a second (10 s after going idle) and
 * an ending one reports the rest.
 */
async function observePhase(
  adminUrl: string,
  url: string,
  name: string,
): Promise<{ stop: () => Promise<PhaseFigures>; transactions: () => Promise<number> }> {
  const [start] = await sql<{ lsn: string; transactions: string }>(url, PHASE_COUNTERS);
  let peakConnections = 0;
  const states = new BackendSampler();
  let sampling = true;
  const polls = (async () => {
    while (sampling) {
      const rows = await sql<{ state: string | null; type: string | null; event: string | null }>(
        adminUrl,
        `SELECT state, wait_event_type AS type, wait_event AS event
         FROM pg_stat_activity WHERE datname = $1 AND application_name <> $2`,
        [name, POLLER],
      );
      peakConnections = Math.max(peakConnections, rows.length);
      for (const row of rows) if (row.state === 'active') states.add(row.type, row.event);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  })();
  // Without a handler until `stop` awaits it, a failed poll would end the process at once and leave the
  // workers and the gateway running.
  polls.catch(() => undefined);
  let figures: Promise<PhaseFigures> | undefined;
  return {
    transactions: async () => {
      await backendsEnded(adminUrl, name);
      const [now] = await sql<{ transactions: string }>(url, PHASE_COUNTERS);
      return Number(now?.transactions) - Number(start?.transactions);
    },
    stop: () => {
      sampling = false;
      figures ??= polls.then(async () => {
        const [wal] = await sql<{ bytes: string }>(
          url,
          'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1) AS bytes',
          [start?.lsn],
        );
        return { peakConnections, backends: states.shares(), walBytes: Number(wal?.bytes) };
      });
      return figures;
    },
  };
}

/**
 * Waits until no client backend is left on database `name` but the benchmark's own: a backend reports its last
 * transactions to the statistics as it ends, so a phase's count is whole only after its backends have gone, and
 * the next phase's count starts clean.
 */
async function backendsEnded(adminUrl: string, name: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const [row] = await sql<{ n: number }>(
      adminUrl,
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE datname = $1 AND backend_type = 'client backend' AND application_name <> $2`,
      [name, POLLER],
    );
    if (row?.n === 0) return;
    if (Date.now() > deadline) throw new Error(`${row?.n} connections to ${name} outlived their processes`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The server's WAL position and the database's transaction count. */
const PHASE_COUNTERS = `SELECT pg_current_wal_lsn()::text AS lsn,
  (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()) AS transactions`;

/** `count` charges of the batch starting at `firstId`, split over one ceiling process per worker. */
async function measureCeiling(
  url: string,
  name: string,
  firstId: number,
  count: number,
  date: string,
  options: BenchOptions,
  gatewayUrl: string,
): Promise<Ceiling> {
  const per = Math.ceil(count / options.workers);
  const started = performance.now();
  const phase = await observePhase(options.adminUrl, url, name);
  // Stopped however the processes end: a poll left running would keep the benchmark from exiting.
  const results = await Promise.all(
    Array.from({ length: options.workers }, (_, i) => {
      const first = firstId + i * per;
      const last = Math.min(firstId + count - 1, first + per - 1);
      return spawnCeiling(url, first, last, date, options, gatewayUrl);
    }),
  ).finally(() => phase.stop().catch(() => undefined));
  const seconds = (performance.now() - started) / 1000;
  const { backends, walBytes } = await phase.stop();
  const transactions = await phase.transactions();
  const charged = results.reduce((sum, result) => sum + result.charged, 0);
  // Measured like the workers' steady state, so that neither side's start (a process's start and first
  // connections here, the fan-out's first pages there) or tail weighs on the ratio.
  const doneTimes = results
    .flatMap((result) => result.completions.flatMap(([at, count]) => Array<number>(count).fill(at / 1000)))
    .sort((a, b) => a - b);
  const perCharge = (cpuSeconds: number) => (cpuSeconds * 1000) / Math.max(1, charged);
  return {
    charged,
    declined: results.reduce((sum, result) => sum + result.declined, 0),
    chargesPerSecond: steadyRate(doneTimes) ?? charged / seconds,
    seconds,
    perChargeMs: {
      process: perCharge(results.reduce((sum, result) => sum + result.processCpuSeconds, 0)),
      postgres: perCharge(results.reduce((sum, result) => sum + result.postgresCpuSeconds, 0)),
    },
    backends,
    walBytesPerCharge: walBytes / Math.max(1, charged),
    transactionsPerCharge: transactions / Math.max(1, charged),
  };
}

function spawnCeiling(
  url: string,
  first: number,
  last: number,
  date: string,
  options: BenchOptions,
  gatewayUrl: string,
): Promise<CeilingProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        'scripts/bench/ceiling.ts',
        url,
        String(first),
        String(last),
        date,
        String(options.concurrency),
        String(options.dbPool),
        String(options.gatewayCap),
        String(options.declineRate),
        String(GATEWAY_MIX.irreversibleShare),
        String(GATEWAY_MIX.seed),
        gatewayUrl,
      ],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
        // The workers' heap flags: a process with a bigger young generation collects less often, so a ceiling
        // run without them would measure the heap sizing as well as the queue.
        env: { ...process.env, NODE_OPTIONS: options.workerNodeOptions },
      },
    );
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('exit', (code) =>
      code === 0
        ? resolve(JSON.parse(out) as CeilingProcess)
        : reject(new Error(`ceiling worker exited ${code}`)),
    );
  });
}
