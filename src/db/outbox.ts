// Queries shared by the two signed-webhook outboxes, avisos_vendedores (seller notices) and eventos_checkout
// (events for the checkout): both have the columns status, tentativas, ultimo_erro, enviado_em and conteudo,
// and their delivery workers read and settle a row the same way, and limpar_recorrencias_antigas prunes them
// the same way.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { BOSS_SCHEMA } from './schema-check.ts';

export const OUTBOX_TABLES = ['avisos_vendedores', 'eventos_checkout'] as const;
export type OutboxTable = (typeof OUTBOX_TABLES)[number];

export const OutboxEntry = z.object({
  id: z.number(),
  conteudo: z.record(z.string(), z.unknown()),
  status: z.enum(['pendente', 'enviado', 'registrado', 'falhou']),
  tentativas: z.number(),
});
export type OutboxEntry = z.infer<typeof OutboxEntry>;

const CountRow = z.object({ n: z.number() });

export async function findOutboxEntry(
  db: CommonQueryMethods,
  table: OutboxTable,
  id: number,
): Promise<OutboxEntry | null> {
  return db.maybeOne(sql.type(OutboxEntry)`
    SELECT id, conteudo, status, tentativas FROM ${sql.identifier([table])} WHERE id = ${id}`);
}

export async function markOutboxSent(db: CommonQueryMethods, table: OutboxTable, id: number): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE ${sql.identifier([table])}
    SET status = 'enviado', enviado_em = now(), tentativas = tentativas + 1, ultimo_erro = NULL
    WHERE id = ${id}`);
}

/** Locks an entry for the caller's transaction and returns its status, or null when there is none. */
export async function lockOutboxEntry(
  tx: CommonQueryMethods,
  table: OutboxTable,
  id: number,
): Promise<OutboxEntry['status'] | null> {
  const entry = await tx.maybeOne(sql.type(OutboxEntry.pick({ status: true }))`
    SELECT status FROM ${sql.identifier([table])} WHERE id = ${id} FOR UPDATE`);
  return entry?.status ?? null;
}

export async function markOutboxPending(
  tx: CommonQueryMethods,
  table: OutboxTable,
  id: number,
): Promise<void> {
  await tx.query(sql.unsafe`UPDATE ${sql.identifier([table])} SET status = 'pendente' WHERE id = ${id}`);
}

/** The delivery job of an entry that is still waiting or running, if any. */
export async function findLiveDeliveryJob(
  db: CommonQueryMethods,
  delivery: { queue: string; idField: string },
  id: number,
): Promise<string | null> {
  return db.maybeOneFirst(sql.type(z.object({ id: z.string() }))`
    SELECT id::text FROM ${sql.identifier([BOSS_SCHEMA, 'job'])}
    WHERE name = ${delivery.queue} AND state IN ('created', 'retry', 'active')
      AND data ->> ${delivery.idField} = ${String(id)}
    LIMIT 1`);
}

/** Records a failed delivery; the last one (`final`) marks the entry `falhou`, where operators see it. */
export async function markOutboxAttemptFailed(
  db: CommonQueryMethods,
  table: OutboxTable,
  id: number,
  error: string,
  final: boolean,
): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE ${sql.identifier([table])}
    SET tentativas = tentativas + 1, ultimo_erro = ${error.slice(0, 1_000)},
        status = CASE WHEN ${final} THEN 'falhou' ELSE status END
    WHERE id = ${id} AND status <> 'enviado'`);
}

/**
 * Deletes entries that are done (delivered, or recorded without a webhook) and older than `olderThanDays`,
 * one bounded batch per call. Undelivered entries (pendente, falhou) are never pruned: they stay visible.
 */
export async function pruneDeliveredOutbox(
  db: CommonQueryMethods,
  table: OutboxTable,
  olderThanDays: number,
  batchSize: number,
): Promise<number> {
  return db.oneFirst(sql.type(CountRow)`
    WITH alvo AS (
      SELECT o.id FROM ${sql.identifier([table])} o
      WHERE o.status IN ('enviado', 'registrado') AND o.criado_em < now() - make_interval(days => ${olderThanDays})
      ORDER BY o.id LIMIT ${batchSize}
    ), apagados AS (DELETE FROM ${sql.identifier([table])} o USING alvo WHERE o.id = alvo.id RETURNING 1)
    SELECT count(*)::int AS n FROM apagados`);
}
