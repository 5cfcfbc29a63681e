// Queries on execucoes_tarefas: one row per run of a periodic task for a business date. An advisory lock
// per (task, date), held by a transaction that stays open for the whole run, keeps two runs from overlapping;
// it dies with that transaction (or its connection), so a crashed run never blocks its retry.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

// Row schemas are built once: zod compiles a schema on first use, so an inline one would cost that on every call.
const LockedRow = z.object({ locked: z.boolean() });
const IdRow = z.object({ id: z.number() });

export const TaskRun = z.object({
  id: z.number(),
  tarefa: z.string(),
  data_negocio: z.string(),
  status: z.enum(['executando', 'sucesso', 'falha']),
  forcada: z.boolean(),
  job_id: z.string().nullable(),
  tentativa: z.number(),
  iniciada_em: z.date(),
  finalizada_em: z.date().nullable(),
  contagens: z.record(z.string(), z.unknown()),
  erro: z.string().nullable(),
});
export type TaskRun = z.infer<typeof TaskRun>;

const COLUMNS = sql.fragment`id, tarefa, data_negocio, status, forcada, job_id, tentativa, iniciada_em, finalizada_em, contagens, erro`;

function lockKey(task: string, date: string) {
  return sql.fragment`hashtextextended(${`execucao:${task}:${date}`}, 0)`;
}

/**
 * A condition on an execucoes_tarefas row aliased `e`: its (task, date) lock is held, so a process is running
 * it. A row left 'executando' without it is a run whose process ended (a crash, a forced stop): not running.
 * The key is lockKey's, computed in SQL; pg_locks splits a bigint key over classid (high 32 bits) and objid
 * (low 32 bits), with objsubid 1.
 */
export const RUN_LOCK_HELD = sql.fragment`EXISTS (
  SELECT 1 FROM pg_locks l
  WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND ((l.classid::bigint << 32) | l.objid::bigint)
      = hashtextextended('execucao:' || e.tarefa || ':' || to_char(e.data_negocio, 'YYYY-MM-DD'), 0))`;

/**
 * The timeouts a transaction that holds a lock for a whole run is exempted from (locally): the pool's (or the
 * role's) idle-in-transaction timeout would end it a minute into a run, and so would a `transaction_timeout`
 * (PostgreSQL 17+; a server without the setting simply has no such row in pg_settings).
 */
export const LOCK_TRANSACTION_UNTIMED = [
  'idle_in_transaction_session_timeout',
  'transaction_timeout',
] as const;

/**
 * TCP settings of the lock's server connection, for the transaction only. When the client is cut off without
 * a word (a host that vanished, a network partition), the server would otherwise keep the connection, and so
 * the lock, until the operating system's keepalive gives up (two hours by default on Linux): the job's retry
 * would find the run still locked all that time. With these, the server drops it within about 30 s (measured:
 * 31 s after the client's packets were dropped; more than 150 s, still held, without). The run's client stops
 * sooner: its lock watch gives up after 10 s.
 */
export const LOCK_TRANSACTION_TCP = {
  tcp_keepalives_idle: '10',
  tcp_keepalives_interval: '5',
  tcp_keepalives_count: '3',
  tcp_user_timeout: '30000',
} as const;

/**
 * Everything a lock-holding transaction sets for itself (set_config(..., true)), as parallel arrays for unnest;
 * joined with pg_settings, so that a setting the server lacks is skipped.
 */
export const LOCK_TRANSACTION_SETTINGS = {
  names: [...LOCK_TRANSACTION_UNTIMED, ...Object.keys(LOCK_TRANSACTION_TCP)],
  values: [...LOCK_TRANSACTION_UNTIMED.map(() => '0'), ...Object.values(LOCK_TRANSACTION_TCP)],
};

/**
 * Opens on `session` (a dedicated connection, pool.connect) the transaction that holds the (task, date) lock
 * for the whole run, and takes the lock; when another run holds it, ends the transaction and returns false.
 * The lock goes with that transaction: at unlockTaskRun, or when the connection ends (a crash). A
 * transaction-level lock, not a session-level one, because a pooler in transaction mode pins one server
 * connection to an open transaction but may send a session's successive statements to different ones.
 * The transaction writes nothing, so it holds no snapshot between statements (it does not hold back vacuum);
 * it is exempted from the timeouts that would end it mid-run (LOCK_TRANSACTION_UNTIMED), and its server
 * connection gives up on a silent client in seconds (LOCK_TRANSACTION_TCP).
 */
export async function tryLockTaskRun(
  session: CommonQueryMethods,
  task: string,
  date: string,
): Promise<boolean> {
  await session.query(sql.unsafe`BEGIN`);
  const locked = await session.oneFirst(sql.type(LockedRow)`
    SELECT pg_try_advisory_xact_lock(${lockKey(task, date)}) AS locked
    FROM (SELECT count(set_config(setting.name, setting.value, true))
          FROM unnest(${sql.array(LOCK_TRANSACTION_SETTINGS.names, 'text')},
                      ${sql.array(LOCK_TRANSACTION_SETTINGS.values, 'text')}) AS setting(name, value)
          JOIN pg_settings USING (name)) AS configured`);
  if (!locked) {
    await session.query(sql.unsafe`COMMIT`);
    return false;
  }
  // The statement above, sent with parameters, leaves its portal open, and with it a snapshot (backend_xmin)
  // that would hold back vacuum for the whole run; a statement without parameters (the simple protocol)
  // closes that portal.
  await probeTaskRunLock(session);
  return true;
}

/**
 * Checks that the transaction holding the lock is still there: the lock cannot leave it while it lives, so a
 * statement that succeeds on its connection proves the lock; one that fails means the connection (and the
 * lock) has ended, say by pg_terminate_backend, a pooler dropping its server connection or a network cut.
 */
export async function probeTaskRunLock(session: CommonQueryMethods): Promise<void> {
  await session.query(sql.unsafe`SELECT 1`);
}

/** Ends the transaction tryLockTaskRun opened, and so releases the lock. */
export async function unlockTaskRun(session: CommonQueryMethods): Promise<void> {
  await session.query(sql.unsafe`COMMIT`);
}

/**
 * The latest run of (task, date) with `status`: 'sucesso' (the date is done), or 'executando' (who holds
 * its lock: a job, or the command line when job_id is null).
 */
export async function findLatestTaskRun(
  db: CommonQueryMethods,
  task: string,
  date: string,
  status: 'sucesso' | 'executando',
): Promise<TaskRun | null> {
  return db.maybeOne(sql.type(TaskRun)`
    SELECT ${COLUMNS} FROM execucoes_tarefas
    WHERE tarefa = ${task} AND data_negocio = ${date} AND status = ${status}
    ORDER BY iniciada_em DESC LIMIT 1`);
}

/** Closes runs left 'executando' by a crashed process. Only call while holding the (task, date) lock. */
export async function markInterruptedTaskRuns(
  db: CommonQueryMethods,
  task: string,
  date: string,
): Promise<number> {
  const result = await db.query(sql.type(IdRow)`
    UPDATE execucoes_tarefas
    SET status = 'falha', finalizada_em = now(), erro = 'interrompida: o processo que a executava parou antes de terminar'
    WHERE tarefa = ${task} AND data_negocio = ${date} AND status = 'executando'
    RETURNING id`);
  return result.rowCount;
}

export async function insertTaskRun(
  db: CommonQueryMethods,
  run: { task: string; date: string; forced: boolean; jobId: string | null; attempt: number },
): Promise<TaskRun> {
  return db.one(sql.type(TaskRun)`
    INSERT INTO execucoes_tarefas (tarefa, data_negocio, forcada, job_id, tentativa)
    VALUES (${run.task}, ${run.date}, ${run.forced}, ${run.jobId}, ${run.attempt})
    RETURNING ${COLUMNS}`);
}

export async function markTaskRunSucceeded(
  db: CommonQueryMethods,
  id: number,
  counts: Record<string, unknown>,
): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE execucoes_tarefas SET status = 'sucesso', finalizada_em = now(), contagens = ${sql.jsonb(counts as Record<string, never>)}
    WHERE id = ${id}`);
}

export async function markTaskRunFailed(
  db: CommonQueryMethods,
  id: number,
  error: string,
  counts: Record<string, unknown>,
): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE execucoes_tarefas SET status = 'falha', finalizada_em = now(), erro = ${error.slice(0, 2_000)},
      contagens = ${sql.jsonb(counts as Record<string, never>)}
    WHERE id = ${id}`);
}

export const LastRun = z.object({
  tarefa: z.string(),
  id: z.number(),
  data_negocio: z.string(),
  status: z.string(),
  iniciada_em: z.date(),
  finalizada_em: z.date().nullable(),
  contagens: z.unknown(),
  erro: z.string().nullable(),
  /** Whether a process is running it now (holds its lock): false for a run left 'executando' by one that ended. */
  running: z.boolean(),
});
export type LastRun = z.infer<typeof LastRun>;

/** Each task's latest run (any date), with whether a process is running it now. */
export async function listLastRuns(db: CommonQueryMethods): Promise<readonly LastRun[]> {
  return (
    await db.query(sql.type(LastRun)`
      SELECT e.tarefa, e.id, e.data_negocio::text, e.status, e.iniciada_em, e.finalizada_em, e.contagens, e.erro,
        e.status = 'executando' AND ${RUN_LOCK_HELD} AS running
      FROM (SELECT DISTINCT ON (tarefa) * FROM execucoes_tarefas ORDER BY tarefa, iniciada_em DESC) e`)
  ).rows;
}
