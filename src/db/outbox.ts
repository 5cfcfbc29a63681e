// Queries shared by the two signed-webhook outboxes, avisos_vendedores (seller notices) and eventos_checkout
// (events for the checkout): both have the columns status, tentativas, ultimo_erro, enviado_em and conteudo,
// and their delivery workers read and settle a row the same way.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

export const OUTBOX_TABLES = ['avisos_vendedores', 'eventos_checkout'] as const;
export type OutboxTable = (typeof OUTBOX_TABLES)[number];

export const OutboxEntry = z.object({
  id: z.number(),
  conteudo: z.record(z.string(), z.unknown()),
  status: z.enum(['pendente', 'enviado', 'registrado', 'falhou']),
  tentativas: z.number(),
});
export type OutboxEntry = z.infer<typeof OutboxEntry>;

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
