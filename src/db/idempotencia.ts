// Queries on chaves_idempotencia: the Idempotency-Key of API requests, per token name. A key is claimed by
// inserting its row in the transaction that does the work and records the answer; a concurrent request with
// the same key blocks on the primary key until that transaction ends, then reads the answer.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const StoredAnswer = z.object({
  operacao: z.string(),
  hash_requisicao: z.string(),
  status_resposta: z.number(),
  corpo_resposta: z.unknown(),
});
export type StoredAnswer = z.infer<typeof StoredAnswer>;

/**
 * Claims (who, key) for this transaction. Returns null when claimed; otherwise the answer stored by the
 * request that holds it (committed: this waits for an in-flight holder to end).
 */
export async function claimIdempotencyKey(
  tx: CommonQueryMethods,
  claim: { who: string; key: string; operation: string; requestHash: string },
): Promise<StoredAnswer | null> {
  const claimed = await tx.query(sql.type(z.object({ chave: z.string() }))`
    INSERT INTO chaves_idempotencia (quem, chave, operacao, hash_requisicao, status_resposta, corpo_resposta)
    VALUES (${claim.who}, ${claim.key}, ${claim.operation}, ${claim.requestHash}, 0, 'null')
    ON CONFLICT ON CONSTRAINT chaves_idempotencia_pkey DO NOTHING
    RETURNING chave`);
  if (claimed.rowCount === 1) return null;
  return tx.one(sql.type(StoredAnswer)`
    SELECT operacao, hash_requisicao, status_resposta, corpo_resposta FROM chaves_idempotencia
    WHERE quem = ${claim.who} AND chave = ${claim.key}`);
}

/** Records the answer of the request that claimed the key (same transaction as the claim). */
export async function recordIdempotentAnswer(
  tx: CommonQueryMethods,
  answer: { who: string; key: string; status: number; body: unknown; recurrenceId: number | null },
): Promise<void> {
  await tx.query(sql.unsafe`
    UPDATE chaves_idempotencia
    SET status_resposta = ${answer.status}, corpo_resposta = ${sql.json(answer.body as never)},
        recorrencia_id = ${answer.recurrenceId}
    WHERE quem = ${answer.who} AND chave = ${answer.key}`);
}
