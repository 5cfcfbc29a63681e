// The queue-partitioning measurement (README, "Beyond one machine"): with N jobs in the charge queue, how
// fast another queue's jobs are fetched and completed, and how long the N take to enqueue, when the charge
// queue has its own partition of pg-boss's job table (as deployed) and when it shares the table the other
// queues use. pg-boss alone, in a throwaway database per layout, on the benchmark's server.
import { PgBoss } from 'pg-boss';
import pg from 'pg';
import { CHARGE_QUEUE, NOTICE_DELIVERY_QUEUE } from '../../src/queue/task-names.ts';
import { databaseUrl, sql } from './database.ts';
import { percentileOf } from './percentile.ts';

export type QueueLayout = 'partitioned' | 'shared';

/** Milliseconds per call of another queue's one-job fetch and its completion. */
export type OtherQueueLatency = {
  fetches: number;
  fetchP50: number;
  fetchP99: number;
  completeP50: number;
  completeP99: number;
};

export type QueueLayoutResult = {
  layout: QueueLayout;
  chargeTable: string;
  otherTable: string;
  indexes: { chargeTable: number; otherTable: number };
  fanOutSeconds: number;
  /** Before the fan-out, during it, with the N queued, completed, then deleted (as retention does). */
  otherQueue: Record<'empty' | 'duringFanOut' | 'queued' | 'completed' | 'deleted', OtherQueueLatency>;
  /** The index pg-boss's fetch of the other queue scans with the N queued (from EXPLAIN). */
  otherFetchIndex: string | null;
  /** The other queues' table after the N were deleted, before any vacuum. */
  otherTableBytes: number;
};

/** The fan-out's page size (src/tasks/charge/fan-out.ts). */
const PAGE = 5_000;
/** Other-queue fetches measured at each quiet phase. */
const SAMPLES = 300;

async function measureOtherQueue(boss: PgBoss, keepGoing: (done: number) => boolean) {
  const fetchMs: number[] = [];
  const completeMs: number[] = [];
  for (let done = 0; keepGoing(done); done += 1) {
    if (done % 100 === 0) {
      await boss.insert(
        NOTICE_DELIVERY_QUEUE,
        Array.from({ length: 100 }, () => ({ data: {} })),
      );
    }
    let started = performance.now();
    const jobs = await boss.fetch(NOTICE_DELIVERY_QUEUE, { batchSize: 1 });
    fetchMs.push(performance.now() - started);
    const [job] = jobs;
    if (job === undefined) throw new Error('the other queue had a job ready but the fetch returned none');
    started = performance.now();
    await boss.complete(NOTICE_DELIVERY_QUEUE, job.id);
    completeMs.push(performance.now() - started);
  }
  fetchMs.sort((a, b) => a - b);
  completeMs.sort((a, b) => a - b);
  return {
    fetches: fetchMs.length,
    fetchP50: percentileOf(fetchMs, 50),
    fetchP99: percentileOf(fetchMs, 99),
    completeP50: percentileOf(completeMs, 50),
    completeP99: percentileOf(completeMs, 99),
  };
}

/** The index named in the plan of pg-boss's own fetch statement (captured, then explained and rolled back). */
async function fetchIndexOf(boss: PgBoss, client: pg.Client): Promise<string | null> {
  await boss.insert(NOTICE_DELIVERY_QUEUE, [{ data: {} }]);
  let captured: { text: string; values: unknown[] } | undefined;
  await boss.fetch(NOTICE_DELIVERY_QUEUE, {
    batchSize: 1,
    db: {
      executeSql: async (text: string, values: unknown[]) => {
        captured = { text, values };
        return { rows: [] };
      },
    },
  });
  if (captured === undefined) throw new Error('pg-boss ran no fetch statement');
  await client.query('BEGIN');
  try {
    const plan = await client.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN (ANALYZE, COSTS OFF) ${captured.text}`,
      captured.values,
    );
    const scans = plan.rows.map((row) => / using (\S+) on /.exec(row['QUERY PLAN'])?.[1]).filter(Boolean);
    return scans[0] ?? null;
  } finally {
    await client.query('ROLLBACK');
  }
}

async function measureLayout(adminUrl: string, layout: QueueLayout, count: number) {
  const name = `bench_queue_layout_${layout}_${process.pid}`;
  await sql(adminUrl, `CREATE DATABASE "${name}"`);
  const url = databaseUrl(adminUrl, name);
  const boss = new PgBoss({ connectionString: url, max: 4, supervise: false, schedule: false });
  const client = new pg.Client({ connectionString: url });
  let bossError: Error | undefined;
  boss.on('error', (error: Error) => {
    bossError ??= error;
  });
  try {
    await boss.start();
    await boss.createQueue(CHARGE_QUEUE, { partition: layout === 'partitioned' });
    await boss.createQueue(NOTICE_DELIVERY_QUEUE);
    await client.connect();
    const tableOf = async (queue: string) =>
      (
        await client.query<{ table_name: string }>('SELECT table_name FROM pgboss.queue WHERE name = $1', [
          queue,
        ])
      ).rows[0]?.table_name ?? '';
    const chargeTable = await tableOf(CHARGE_QUEUE);
    const otherTable = await tableOf(NOTICE_DELIVERY_QUEUE);
    const analyse = () => client.query(`ANALYZE pgboss."${chargeTable}", pgboss."${otherTable}"`);
    const quiet = (done: number) => done < SAMPLES;

    const empty = await measureOtherQueue(boss, quiet);

    // The fan-out as the daily run makes it: pages of jobs, the queue's table analysed after the first.
    let fannedOut = false;
    const started = performance.now();
    const fanOut = (async () => {
      try {
        for (let sent = 0; sent < count; sent += PAGE) {
          const page = Math.min(PAGE, count - sent);
          await boss.insert(
            CHARGE_QUEUE,
            Array.from({ length: page }, (_, i) => ({ data: { n: sent + i } })),
          );
          if (sent === 0) await client.query(`ANALYZE pgboss."${chargeTable}"`);
        }
        return (performance.now() - started) / 1000;
      } finally {
        fannedOut = true;
      }
    })();
    const duringFanOut = await measureOtherQueue(boss, () => !fannedOut);
    const fanOutSeconds = await fanOut;

    await analyse();
    const queued = await measureOtherQueue(boss, quiet);
    const otherFetchIndex = await fetchIndexOf(boss, client);

    // The morning done: every charge job completed, as the workers leave them.
    await client.query(
      `UPDATE pgboss."${chargeTable}" SET state = 'completed', completed_on = now() WHERE name = $1`,
      [CHARGE_QUEUE],
    );
    await analyse();
    const completed = await measureOtherQueue(boss, quiet);

    // Retention deletes them days later; autovacuum has not come by yet.
    await client.query(`DELETE FROM pgboss."${chargeTable}" WHERE name = $1`, [CHARGE_QUEUE]);
    const deleted = await measureOtherQueue(boss, quiet);

    const sizes = await client.query<{ bytes: string; charge: number; other: number }>(
      `SELECT pg_total_relation_size(format('pgboss.%I', $2::text)) AS bytes,
              (SELECT count(*)::int FROM pg_indexes WHERE schemaname = 'pgboss' AND tablename = $1) AS charge,
              (SELECT count(*)::int FROM pg_indexes WHERE schemaname = 'pgboss' AND tablename = $2) AS other`,
      [chargeTable, otherTable],
    );
    if (bossError !== undefined) throw bossError;
    const [size] = sizes.rows;
    return {
      layout,
      chargeTable,
      otherTable,
      indexes: { chargeTable: size?.charge ?? 0, otherTable: size?.other ?? 0 },
      fanOutSeconds,
      otherQueue: { empty, duringFanOut, queued, completed, deleted },
      otherFetchIndex,
      otherTableBytes: Number(size?.bytes ?? 0),
    } satisfies QueueLayoutResult;
  } finally {
    await client.end().catch(() => undefined);
    await boss.stop({ graceful: false }).catch(() => undefined);
    await sql(adminUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  }
}

/** Both layouts, one after the other, each in its own database (dropped at the end). */
export async function measureQueueLayouts(options: {
  adminUrl: string;
  count: number;
  log: (line: string) => void;
}): Promise<QueueLayoutResult[]> {
  const results: QueueLayoutResult[] = [];
  for (const layout of ['partitioned', 'shared'] as const) {
    options.log(`${layout}: ${options.count} charge jobs`);
    results.push(await measureLayout(options.adminUrl, layout, options.count));
  }
  return results;
}
