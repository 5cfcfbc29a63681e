// Read-only queries on pg-boss's job table, for what its API does not answer in one statement: jobs across
// queues by state (newest first, paginated), live jobs by state per queue, unfinished work, the last minutes'
// completions and run times; whether any of some ids is enqueued; the refresh of a queue table's planner
// statistics after a bulk insert; and the row lock that fences a write to a job's claim. pg-boss owns the
// table; nothing here writes its rows. Every query names our queues: the table is partitioned by queue name
// and its indexes lead with it.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { ALL_QUEUES } from '../queue/task-names.ts';
import { BOSS_SCHEMA } from './schema-check.ts';

// Row schemas are built once: zod compiles a schema on first use, so an inline one would cost that on every call.
const CountRow = z.object({ n: z.number() });
const TableRow = z.object({ table_name: z.string() });
const NoRows = z.object({});

const job = sql.identifier([BOSS_SCHEMA, 'job']);

/**
 * ANALYZE on the table holding `queue`'s jobs. pg-boss fetches the next jobs with ORDER BY priority, created_on
 * LIMIT n over a partial index of the queued jobs; with statistics taken while the table was nearly empty the
 * planner instead reads every queued job and sorts them, on every fetch: O(queued) per fetch. Autovacuum
 * corrects the statistics only a minute or more later, so the bulk enqueue asks for it right away.
 */
export async function analyzeQueueTable(db: CommonQueryMethods, queue: string): Promise<void> {
  const table = await db.maybeOneFirst(sql.type(TableRow)`
    SELECT table_name FROM ${sql.identifier([BOSS_SCHEMA, 'queue'])} WHERE name = ${queue}`);
  if (table === null) return;
  await db.query(sql.type(NoRows)`ANALYZE ${sql.identifier([BOSS_SCHEMA, table])}`);
}

const ClaimRow = z.object({ state: z.string(), retry_count: z.number() });
const StateRow = z.object({ state: z.string() });

/**
 * Locks the job's row if this claim of it (its id and retry count) is still running, and says whether it is.
 * A write committed with that lock cannot land after pg-boss expired the claim and handed the job to another
 * worker: expiring it waits for the lock. The same fence pg-boss's complete() gives phase 3.
 */
export async function lockHeldClaim(
  tx: CommonQueryMethods,
  queue: string,
  claim: { id: string; retryCount: number },
): Promise<boolean> {
  // By primary key only: with the state and retry count in the WHERE, the planner picks the (name, state)
  // index and reads every active job of the queue. They are checked on the locked row instead.
  const row = await tx.maybeOne(sql.type(ClaimRow)`
    SELECT state, retry_count FROM ${job} WHERE name = ${queue} AND id = ${claim.id}::uuid FOR UPDATE`);
  return row?.state === 'active' && row.retry_count === claim.retryCount;
}

const ExistsRow = z.object({ exists: z.boolean() });

/** Whether any of these ids is a job of `queue`, in any state. */
export async function anyJobExists(
  db: CommonQueryMethods,
  queue: string,
  ids: readonly string[],
): Promise<boolean> {
  return db.oneFirst(sql.type(ExistsRow)`
    SELECT EXISTS (SELECT 1 FROM ${job} WHERE name = ${queue} AND id = ANY(${sql.array(ids, 'uuid')})) AS exists`);
}

/** Whether the job is being worked now (`active`): some worker holds it, or held it until pg-boss expires it. */
export async function isJobActive(db: CommonQueryMethods, queue: string, id: string): Promise<boolean> {
  const state = await db.maybeOneFirst(sql.type(StateRow)`
    SELECT state FROM ${job} WHERE name = ${queue} AND id = ${id}::uuid`);
  return state === 'active';
}

export const JOB_STATES = ['created', 'retry', 'active', 'completed', 'cancelled', 'failed'] as const;
export type JobState = (typeof JOB_STATES)[number];

/** Jobs of `queue` not yet in a final state (created, retry or active). */
export async function countUnfinishedJobs(db: CommonQueryMethods, queue: string): Promise<number> {
  return db.oneFirst(sql.type(CountRow)`
    SELECT count(*)::int AS n FROM ${job} WHERE name = ${queue} AND state < 'completed'`);
}

export const JobSummary = z.object({
  id: z.string(),
  queue: z.string(),
  state: z.enum(JOB_STATES),
  data: z.unknown(),
  retry_count: z.number(),
  retry_limit: z.number(),
  created_on: z.date(),
  start_after: z.date(),
  started_on: z.date().nullable(),
  completed_on: z.date().nullable(),
});
export type JobSummary = z.infer<typeof JobSummary>;

const SUMMARY = sql.fragment`id::text AS id, name AS queue, state::text AS state, data, retry_count, retry_limit,
  created_on, start_after, started_on, completed_on`;

/**
 * Where a page of jobs ends. `createdOn` is the timestamp as Postgres keeps it (ISO 8601, UTC, microseconds): a
 * JavaScript Date keeps milliseconds only, and a cursor rounded to them skipped the jobs created later in
 * the same millisecond as the page's last one.
 */
export type JobCursor = { createdOn: string; id: string };

const JobListRow = JobSummary.extend({ cursor_created_on: z.string() });

/**
 * Jobs newest first, optionally of one state and/or one queue; keyset-paginated by (created_on, id). Returns
 * the cursor of the last job listed (null when there is none). Each queue is read on its own, newest first
 * through pg-boss's (name, created_on) index, and stops after `limit` jobs; the pages are then merged. One
 * scan over every queue instead sorted all the jobs kept (0.9 s beside 2.2 million, where this takes 0.1 s).
 */
export async function listJobs(
  db: CommonQueryMethods,
  filter: { state?: JobState; queue?: string; limit: number; after?: JobCursor },
): Promise<{ jobs: JobSummary[]; last: JobCursor | null }> {
  const conditions = [
    sql.fragment`name = q.name`,
    filter.state === undefined
      ? null
      : sql.fragment`state = ${filter.state}::${sql.identifier([BOSS_SCHEMA, 'job_state'])}`,
    filter.after === undefined
      ? null
      : sql.fragment`(created_on, id) < (${filter.after.createdOn}::timestamptz, ${filter.after.id}::uuid)`,
  ].filter((condition) => condition !== null);
  const queues = filter.queue === undefined ? ourQueues() : sql.array([filter.queue], 'text');
  const result = await db.query(sql.type(JobListRow)`
    SELECT j.* FROM unnest(${queues}) AS q (name)
    CROSS JOIN LATERAL (
      SELECT ${SUMMARY},
        to_char(created_on AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_created_on
      FROM ${job} WHERE ${sql.join(conditions, sql.fragment` AND `)}
      ORDER BY created_on DESC, id DESC LIMIT ${filter.limit}) j
    ORDER BY j.created_on DESC, j.id::uuid DESC LIMIT ${filter.limit}`);
  const jobs = result.rows.map(({ cursor_created_on: _, ...summary }) => summary);
  const last = result.rows.at(-1);
  return { jobs, last: last === undefined ? null : { createdOn: last.cursor_created_on, id: last.id } };
}

export const JobDetail = JobSummary.extend({
  output: z.unknown(),
  priority: z.number(),
  expire_seconds: z.number(),
  heartbeat_on: z.date().nullable(),
  keep_until: z.date(),
  dead_letter: z.string().nullable(),
  source_name: z.string().nullable(),
  source_id: z.string().nullable(),
});
export type JobDetail = z.infer<typeof JobDetail>;

export async function findJob(db: CommonQueryMethods, id: string): Promise<JobDetail | null> {
  return db.maybeOne(sql.type(JobDetail)`
    SELECT ${SUMMARY}, output, priority, expire_seconds, heartbeat_on, keep_until, dead_letter, source_name,
      source_id::text AS source_id
    FROM ${job} WHERE name = ANY(${ourQueues()}) AND id = ${id}::uuid`);
}

/** The job table's key is (name, id): naming the queues turns a lookup by id into index lookups. */
function ourQueues() {
  return sql.array([...ALL_QUEUES], 'text');
}

const QueueCount = z.object({ queue: z.string(), state: z.string(), deferred: z.boolean(), n: z.number() });

/**
 * Per queue of ours, the jobs not finished (queued, retrying, active) or failed, by state; queued jobs whose
 * start is still ahead are counted as deferred. Completed and cancelled jobs are left out on purpose: the table
 * keeps them for JOB_HISTORY_RETENTION_DAYS (millions after a few mornings), and counting them read all of them
 * on every call. The state list is pg-boss's own job_i14 predicate, so this is an index-only scan of the live jobs.
 */
export async function countLiveJobsByQueueAndState(
  db: CommonQueryMethods,
): Promise<readonly z.infer<typeof QueueCount>[]> {
  const result = await db.query(sql.type(QueueCount)`
    SELECT name AS queue, state::text AS state, (state IN ('created', 'retry') AND start_after > now()) AS deferred,
      count(*)::int AS n
    FROM ${job}
    WHERE name = ANY(${ourQueues()}) AND state IN ('created', 'retry', 'active', 'failed')
    GROUP BY 1, 2, 3`);
  return result.rows;
}

const RecentJobs = z.object({
  queue: z.string(),
  /** Null when no job completed in the window. */
  p50: z.number().nullable(),
  p95: z.number().nullable(),
  p99: z.number().nullable(),
  completed: z.number(),
  failed: z.number(),
});

/**
 * Per queue, over the last `minutes`: the run-time percentiles (seconds) and the count of the jobs completed,
 * and the count of the jobs that failed for good (retries ran out). Both end with completed_on set.
 */
export async function recentJobs(
  db: CommonQueryMethods,
  minutes: number,
): Promise<readonly z.infer<typeof RecentJobs>[]> {
  const result = await db.query(sql.type(RecentJobs)`
    SELECT name AS queue,
      percentile_cont(0.5) WITHIN GROUP (ORDER BY d) FILTER (WHERE state = 'completed') AS p50,
      percentile_cont(0.95) WITHIN GROUP (ORDER BY d) FILTER (WHERE state = 'completed') AS p95,
      percentile_cont(0.99) WITHIN GROUP (ORDER BY d) FILTER (WHERE state = 'completed') AS p99,
      (count(*) FILTER (WHERE state = 'completed'))::int AS completed,
      (count(*) FILTER (WHERE state = 'failed'))::int AS failed
    FROM (SELECT name, state, extract(epoch FROM completed_on - started_on)::float8 AS d FROM ${job}
          WHERE name = ANY(${ourQueues()}) AND state IN ('completed', 'failed')
            AND completed_on > now() - make_interval(mins => ${minutes})
            AND started_on IS NOT NULL) x
    GROUP BY name`);
  return result.rows;
}

const ReasonCount = z.object({ reason: z.string(), n: z.number() });

/** The jobs `retryingJobReasons` reads at most: bounded work per scrape, even with a million waiting. */
export const RETRY_REASON_SAMPLE = 10_000;

/**
 * The jobs of `queue` waiting for a retry, counted by why their last attempt failed: a charge job's unknown
 * outcome gives its reason (`unauthorized`, `timeout`, `gateway_busy`...), any other failure its status, and an
 * output with neither `other`. Reads at most RETRY_REASON_SAMPLE of them: the counts say which reasons there are
 * and roughly how many, while `recorrencias_jobs` has the exact total.
 */
export async function retryingJobReasons(
  db: CommonQueryMethods,
  queue: string,
): Promise<readonly z.infer<typeof ReasonCount>[]> {
  const result = await db.query(sql.type(ReasonCount)`
    SELECT coalesce(
        CASE WHEN output->>'status' = 'unresolved' THEN output->>'reason' ELSE output->>'status' END,
        'other') AS reason,
      count(*)::int AS n
    FROM (SELECT output FROM ${job} WHERE name = ${queue} AND state = 'retry' LIMIT ${RETRY_REASON_SAMPLE}) j
    GROUP BY 1 ORDER BY 1`);
  return result.rows;
}

/** The database's clock, which pg-boss stamps its jobs with (the application's may differ by seconds). */
export async function databaseNow(db: CommonQueryMethods): Promise<Date> {
  return db.oneFirst(sql.type(z.object({ now: z.date() }))`SELECT now() AS now`);
}
