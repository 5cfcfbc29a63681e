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
  proxima_cobranca: z.string(),
  cobrar_a_partir_de: z.string().nullable(),
  pausada_desde: z.string().nullable(),
  pausas_anteriores: z.array(z.tuple([z.string().nullable(), z.string()])),
});
export type Approved = z.infer<typeof Approved>;

/**
 * Phase 3: each attempt still pending becomes `aprovada` and its recurrence moves to `nextCycle` (failure
 * counters reset; `concluido` after its last cycle). Recurrences are locked first, in id order. Returns the
 * approvals recorded, with the recurrence's next cycle and resume date; an attempt someone else resolved is
 * left alone and missing from the result.
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
      -- Not a blocked attempt (codigo_recusa set): only an operator resolves it, clearing the code first.
      WHERE c.id = i.attempt_id AND c.status = 'pendente' AND c.codigo_recusa IS NULL AND (SELECT n FROM locked) >= 0
      RETURNING c.id, c.recorrencia_id
    ), advanced AS (
      UPDATE checkout_recorrencias r
      SET proxima_cobranca = i.proxima,
          ciclos_cobrados = r.ciclos_cobrados + 1,
          falhas_consecutivas = 0,
          proxima_tentativa = NULL,
          -- Paused or on hold meanwhile, it ends all the same: a later retomar/reativar must not charge past the end.
          status = CASE WHEN r.status IN ('ativo', 'pausado', 'hold') AND r.total_ciclos IS NOT NULL
                             AND r.ciclos_cobrados + 1 >= r.total_ciclos
                        THEN 'concluido' ELSE r.status END,
          encerrada_em = CASE WHEN r.status IN ('ativo', 'pausado', 'hold') AND r.total_ciclos IS NOT NULL
                                   AND r.ciclos_cobrados + 1 >= r.total_ciclos
                              THEN now() ELSE r.encerrada_em END,
          atualizado_em = now()
      FROM resolved JOIN input i ON i.attempt_id = resolved.id
      WHERE r.id = resolved.recorrencia_id
      RETURNING r.id, r.status, coalesce(r.encerrada_em = now(), false) AS concluida, r.proxima_cobranca,
        r.cobrar_a_partir_de, r.pausada_desde, r.pausas_anteriores
    )
    SELECT resolved.id AS attempt_id, resolved.recorrencia_id, advanced.status, advanced.concluida,
      advanced.proxima_cobranca, advanced.cobrar_a_partir_de, advanced.pausada_desde,
      advanced.pausas_anteriores
    FROM resolved JOIN advanced ON advanced.id = resolved.recorrencia_id`);
  return result.rows;
}

const DeclineFacts = z.object({
  id: z.number(),
  pendente: z.boolean(),
  bloqueada: z.boolean(),
  enviadas_30d: z.number(),
});

/**
 * Phase 3, declines: what deciding after each decline needs, read in a statement of its own after the
 * recurrence locks (so it sees what earlier lock holders committed): whether the attempt is still pending,
 * and how many attempts its recurrence sent to the gateway in the last 30 days (brand retry caps), leaving out
 * the requests the gateway refused (the issuer never saw them).
 * Attempts not found are missing from the result.
 */
export async function readDeclineFacts(
  tx: CommonQueryMethods,
  attemptIds: readonly number[],
): Promise<Map<number, { pending: boolean; blocked: boolean; sentLast30Days: number }>> {
  if (attemptIds.length === 0) return new Map();
  const result = await tx.query(sql.type(DeclineFacts)`
    -- A blocked attempt (see markAttemptBlocked) waits for an operator: no worker resolves it.
    SELECT c.id, c.status = 'pendente' AND c.codigo_recusa IS NULL AS pendente,
      c.status = 'pendente' AND c.codigo_recusa IS NOT NULL AS bloqueada,
      (SELECT count(*) FROM checkout_recorrencia_cobrancas s
        WHERE s.recorrencia_id = c.recorrencia_id AND s.envios > 0 AND s.criado_em > now() - interval '30 days'
          AND s.status <> 'rejeitada'
      )::int AS enviadas_30d
    FROM checkout_recorrencia_cobrancas c
    WHERE c.id = ANY(${sql.array([...attemptIds], 'int8')})`);
  return new Map(
    result.rows.map((row) => [
      row.id,
      { pending: row.pendente, blocked: row.bloqueada, sentLast30Days: row.enviadas_30d },
    ]),
  );
}

export type DeclineRecord = {
  attemptId: number;
  recurrenceId: number;
  gatewayRef: string | null;
  code: string;
  reversible: boolean;
  message: string;
  /** The decision: a retry on this date, or (null) hold with `holdReason`. */
  retryOn: IsoDate | null;
  holdReason: string | null;
};

const Moved = z.object({ id: z.number(), status: z.string() });

/**
 * Phase 3, declines (the recurrences already locked): each attempt still pending becomes `recusada`, and its
 * recurrence, if still `ativo`, counts the failure and waits for its retry date or goes on hold. A recurrence
 * paused while its charge was in flight counts the failure and stays paused: a decline to retry plans the retry
 * (taken once it is resumed: a pause does not forgive the cycle), and one that would hold it holds it at
 * `retomar` instead (src/ops/recurrence-changes.ts). A cancelled one keeps its state. Returns the ids of the
 * recurrences put on hold.
 */
export async function recordDeclines(
  tx: CommonQueryMethods,
  declines: readonly DeclineRecord[],
): Promise<Set<number>> {
  if (declines.length === 0) return new Set();
  const result = await tx.query(sql.type(Moved)`
    WITH input AS (
      SELECT * FROM ${sql.unnest(
        declines.map((d) => [
          d.attemptId,
          d.recurrenceId,
          d.gatewayRef,
          d.code,
          d.reversible,
          d.message,
          d.retryOn,
          d.holdReason,
        ]),
        ['int8', 'int8', 'text', 'text', 'bool', 'text', 'date', 'text'],
      )} AS i(attempt_id, recorrencia_id, gateway_ref, code, reversible, message, retry_on, hold_reason)
    ), declined AS (
      UPDATE checkout_recorrencia_cobrancas c
      SET status = 'recusada', gateway_ref = i.gateway_ref, resolvida_em = now(),
          codigo_recusa = i.code, recusa_reversivel = i.reversible, mensagem = i.message
      FROM input i
      WHERE c.id = i.attempt_id AND c.status = 'pendente'
      RETURNING c.id
    )
    UPDATE checkout_recorrencias r
    SET falhas_consecutivas = r.falhas_consecutivas + 1, total_falhas = r.total_falhas + 1,
        proxima_tentativa = i.retry_on,
        status = CASE WHEN i.hold_reason IS NULL OR r.status = 'pausado' THEN r.status ELSE 'hold' END,
        motivo_hold = CASE WHEN i.hold_reason IS NULL OR r.status = 'pausado' THEN r.motivo_hold ELSE i.hold_reason END,
        hold_em = CASE WHEN i.hold_reason IS NULL OR r.status = 'pausado' THEN r.hold_em ELSE now() END,
        atualizado_em = now()
    FROM declined JOIN input i ON i.attempt_id = declined.id
    WHERE r.id = i.recorrencia_id AND r.status IN ('ativo', 'pausado')
    RETURNING r.id, r.status`);
  return new Set(result.rows.filter((row) => row.status === 'hold').map((row) => row.id));
}
