// Set-based statements of the charge protocol: a batch of charge jobs costs the same few round trips as one.
// Each statement keeps the per-charge guarantees: recurrences are locked in id order (so concurrent batches
// cannot deadlock), an attempt is resolved only while still pending, and a recurrence advances only with the
// resolution of its own attempt.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { IsoDate } from '../domain/dates.ts';
import { Attempt, ATTEMPT_COLUMNS } from './cobrancas.ts';
import { Recurrence, RECURRENCE_COLUMNS } from './recorrencias.ts';

export const ChargeCandidate = Recurrence.extend({
  /** An unresolved attempt exists: it must be resumed under its own key, never replaced. */
  tem_pendente: z.boolean(),
  /** The highest attempt number already used for the recurrence's due cycle (0 when none). */
  ultima_tentativa: z.number(),
});
export type ChargeCandidate = z.infer<typeof ChargeCandidate>;

/** Phase 1: locks the recurrences for the rest of the transaction and reads what the charge decision needs. */
export async function lockChargeCandidates(
  tx: CommonQueryMethods,
  ids: number[],
): Promise<readonly ChargeCandidate[]> {
  const result = await tx.query(sql.type(ChargeCandidate)`
    SELECT ${RECURRENCE_COLUMNS},
      EXISTS (SELECT 1 FROM checkout_recorrencia_cobrancas c WHERE c.recorrencia_id = r.id AND c.status = 'pendente') AS tem_pendente,
      (SELECT coalesce(max(c.tentativa), 0) FROM checkout_recorrencia_cobrancas c
        WHERE c.recorrencia_id = r.id AND c.ciclo = r.proxima_cobranca)::int AS ultima_tentativa
    FROM checkout_recorrencias r
    WHERE r.id = ANY(${sql.array(ids, 'int8')})
    ORDER BY r.id
    FOR UPDATE OF r`);
  return result.rows;
}

export type NewAttempt = {
  recurrenceId: number;
  cycle: IsoDate;
  attempt: number;
  key: string;
  amountCents: number;
  currency: string;
  cardToken: string;
  businessDate: IsoDate;
  jobId: string;
  /** The recurrence was waiting for this retry: its retry date is cleared as the attempt starts. */
  clearsRetry: boolean;
};

/** Phase 1: inserts the attempts, created as sent (the caller commits, then calls the gateway). */
export async function insertAttempts(
  tx: CommonQueryMethods,
  rows: NewAttempt[],
): Promise<readonly Attempt[]> {
  if (rows.length === 0) return [];
  const retries = rows.filter((row) => row.clearsRetry).map((row) => row.recurrenceId);
  if (retries.length > 0) {
    await tx.query(sql.unsafe`
      UPDATE checkout_recorrencias SET proxima_tentativa = NULL, atualizado_em = now()
      WHERE id = ANY(${sql.array(retries, 'int8')})`);
  }
  const result = await tx.query(sql.type(Attempt)`
    INSERT INTO checkout_recorrencia_cobrancas AS c
      (recorrencia_id, ciclo, tentativa, chave_idempotencia, valor_centavos, moeda, cartao_token, data_negocio, job_id,
       envios, enviada_em)
    SELECT recorrencia_id, ciclo, tentativa, chave, valor, moeda, token, data_negocio, job_id, 1, now()
    FROM ${sql.unnest(
      rows.map((row) => [
        row.recurrenceId,
        row.cycle,
        row.attempt,
        row.key,
        row.amountCents,
        row.currency,
        row.cardToken,
        row.businessDate,
        row.jobId,
      ]),
      ['int8', 'date', 'int4', 'text', 'int8', 'text', 'text', 'date', 'uuid'],
    )} AS i(recorrencia_id, ciclo, tentativa, chave, valor, moeda, token, data_negocio, job_id)
    RETURNING ${ATTEMPT_COLUMNS}`);
  return result.rows;
}

export type Approval = { attemptId: number; recurrenceId: number; gatewayRef: string; nextCycle: IsoDate };

const Approved = z.object({
  attempt_id: z.number(),
  recorrencia_id: z.number(),
  status: z.string(),
  concluida: z.boolean(),
});
export type Approved = z.infer<typeof Approved>;

/**
 * Phase 3: each attempt still pending becomes `aprovada` and its recurrence moves to `nextCycle` (failure
 * counters reset; `concluido` after its last cycle). Recurrences are locked first, in id order. Returns the
 * approvals recorded; an attempt someone else resolved is left alone and missing from the result.
 */
export async function recordApprovals(
  tx: CommonQueryMethods,
  approvals: Approval[],
): Promise<readonly Approved[]> {
  if (approvals.length === 0) return [];
  const result = await tx.query(sql.type(Approved)`
    WITH input AS (
      SELECT * FROM ${sql.unnest(
        approvals.map((a) => [a.attemptId, a.recurrenceId, a.gatewayRef, a.nextCycle]),
        ['int8', 'int8', 'text', 'date'],
      )} AS i(attempt_id, recorrencia_id, gateway_ref, proxima)
    ), locked AS (
      -- count(*) reads every row, so every lock is taken (an EXISTS would stop at the first one).
      SELECT count(*) AS n FROM (
        SELECT r.id FROM checkout_recorrencias r WHERE r.id IN (SELECT recorrencia_id FROM input) ORDER BY r.id FOR UPDATE
      ) l
    ), resolved AS (
      UPDATE checkout_recorrencia_cobrancas c
      SET status = 'aprovada', gateway_ref = i.gateway_ref, resolvida_em = now()
      FROM input i
      -- The uncorrelated subquery runs once, first: the recurrence locks are taken before any attempt lock.
      WHERE c.id = i.attempt_id AND c.status = 'pendente' AND (SELECT n FROM locked) >= 0
      RETURNING c.id, c.recorrencia_id
    ), advanced AS (
      UPDATE checkout_recorrencias r
      SET proxima_cobranca = i.proxima,
          ciclos_cobrados = r.ciclos_cobrados + 1,
          falhas_consecutivas = 0,
          proxima_tentativa = NULL,
          status = CASE WHEN r.status = 'ativo' AND r.total_ciclos IS NOT NULL AND r.ciclos_cobrados + 1 >= r.total_ciclos
                        THEN 'concluido' ELSE r.status END,
          encerrada_em = CASE WHEN r.status = 'ativo' AND r.total_ciclos IS NOT NULL AND r.ciclos_cobrados + 1 >= r.total_ciclos
                              THEN now() ELSE r.encerrada_em END,
          atualizado_em = now()
      FROM resolved JOIN input i ON i.attempt_id = resolved.id
      WHERE r.id = resolved.recorrencia_id
      RETURNING r.id, r.status, coalesce(r.encerrada_em = now(), false) AS concluida
    )
    SELECT resolved.id AS attempt_id, resolved.recorrencia_id, advanced.status, advanced.concluida
    FROM resolved JOIN advanced ON advanced.id = resolved.recorrencia_id`);
  return result.rows;
}
