// Queries on tarefas_pausadas (queues paused cluster-wide) and auditoria_admin (the operators' audit trail).
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { BOSS_SCHEMA } from './schema-check.ts';
import type { Actor } from '../ops/actor.ts';

// Row schemas are built once: zod compiles a schema on first use, so an inline one would cost that on every call.
const QueueRow = z.object({ fila: z.string() });
const IdRow = z.object({ id: z.string() });

const Pause = z.object({
  fila: z.string(),
  pausada_em: z.date(),
  pausada_por: z.string(),
  motivo: z.string().nullable(),
});
export type Pause = z.infer<typeof Pause>;

export async function listPauses(db: CommonQueryMethods): Promise<readonly Pause[]> {
  return (
    await db.query(
      sql.type(Pause)`SELECT fila, pausada_em, pausada_por, motivo FROM tarefas_pausadas ORDER BY fila`,
    )
  ).rows;
}

/** A pause as the API and the command line show it (GET /tasks, dry runs, a refused run). */
export function describePause(pause: Pause): { since: string; by: string; reason: string | null } {
  return { since: pause.pausada_em.toISOString(), by: pause.pausada_por, reason: pause.motivo };
}

export async function findPause(db: CommonQueryMethods, queue: string): Promise<Pause | null> {
  return db.maybeOne(
    sql.type(Pause)`SELECT fila, pausada_em, pausada_por, motivo FROM tarefas_pausadas WHERE fila = ${queue}`,
  );
}

/**
 * Serialises, until the transaction ends, the writers of a task's pause and of its schedule (a task's pause and
 * resume, the schedulers' reconcile): a reconcile that read the pauses before a pause committed, and the
 * schedules after its unschedule, would put the paused task's schedule back. Its holders do all their work on
 * the connection that holds it and wait for nothing else, so a wait for it is as short as their statements.
 */
export async function lockPausesAndSchedules(tx: CommonQueryMethods): Promise<void> {
  await tx.query(sql.unsafe`SELECT pg_advisory_xact_lock(hashtext('recorrencias:pausas_agendas'))`);
}

/** Pauses `queue`; returns false when it was already paused. */
export async function insertPause(
  db: CommonQueryMethods,
  queue: string,
  by: string,
  reason: string | null,
): Promise<boolean> {
  const result = await db.query(sql.type(QueueRow)`
    INSERT INTO tarefas_pausadas (fila, pausada_por, motivo) VALUES (${queue}, ${by}, ${reason})
    ON CONFLICT DO NOTHING RETURNING fila`);
  return result.rowCount === 1;
}

/** Resumes `queue`; returns false when it was not paused. */
export async function deletePause(db: CommonQueryMethods, queue: string): Promise<boolean> {
  const result = await db.query(
    sql.type(
      z.object({ fila: z.string() }),
    )`DELETE FROM tarefas_pausadas WHERE fila = ${queue} RETURNING fila`,
  );
  return result.rowCount === 1;
}

/** Queued retention given to the jobs of a paused queue, renewed while the pause lasts. */
const PAUSED_RETENTION_DAYS = 30;

/**
 * Keeps the queued jobs of a paused queue from reaching pg-boss's retention limit (keep_until) while they
 * wait: pushes it 30 days ahead for jobs within a week of it. pg-boss owns the table; this touches only the
 * retention column of jobs that have not started, which is what its own retention reads.
 */
export async function extendQueuedRetention(db: CommonQueryMethods, queue: string): Promise<number> {
  const job = sql.identifier([BOSS_SCHEMA, 'job']);
  const result = await db.query(sql.type(IdRow)`
    UPDATE ${job} SET keep_until = now() + make_interval(days => ${PAUSED_RETENTION_DAYS})
    WHERE name = ${queue} AND state IN ('created', 'retry') AND keep_until < now() + interval '7 days'
    RETURNING id`);
  return result.rowCount;
}

export async function insertAudit(
  db: CommonQueryMethods,
  entry: { who: Actor; action: string; target: string; details?: Record<string, unknown> },
): Promise<void> {
  await db.query(sql.unsafe`
    INSERT INTO auditoria_admin (quem, acao, alvo, detalhes, pedido_id, origem)
    VALUES (${entry.who.name}, ${entry.action}, ${entry.target}, ${sql.jsonb((entry.details ?? {}) as never)},
      ${entry.who.requestId}, ${entry.who.source})`);
}

const AuditRow = z.object({
  id: z.number(),
  quem: z.string(),
  acao: z.string(),
  alvo: z.string(),
  detalhes: z.unknown(),
  em: z.date(),
});

/** The latest audit entry of `action` on `target` whose details contain `details` (null when there is none). */
export async function findLatestAudit(
  db: CommonQueryMethods,
  entry: { action: string; target: string; details: Record<string, unknown> },
): Promise<z.infer<typeof AuditRow> | null> {
  return db.maybeOne(sql.type(AuditRow)`
    SELECT id, quem, acao, alvo, detalhes, em FROM auditoria_admin
    WHERE acao = ${entry.action} AND alvo = ${entry.target} AND detalhes @> ${sql.jsonb(entry.details as never)}
    ORDER BY id DESC LIMIT 1`);
}
