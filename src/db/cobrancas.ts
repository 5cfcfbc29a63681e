// Queries on checkout_recorrencia_cobrancas (one row per charge attempt) and on the skipped-cycle record.
// An attempt is created pending with its idempotency key, marked sent before each gateway call, and
// resolved exactly once (the `status = 'pendente'` guard is the fence against a second resolver).
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { cyclesBetween, type Schedule } from '../domain/calendar.ts';
import type { IsoDate } from '../domain/dates.ts';
import {
  firstCycleOnOrAfter,
  moveFromPause,
  type MoveFromPause,
  type Pause,
} from '../domain/recurrence-rules.ts';
import { moveNextCharge } from './recorrencias.ts';

// Row schemas are built once: zod compiles a schema on first use, so an inline one would cost that on every call.
const LastAttemptRow = z.object({ last: z.number() });
const IdRow = z.object({ id: z.number() });

/** An attempt's status; `rejeitada`: the gateway refused the request itself (not a decline). */
export const ATTEMPT_STATUSES = ['pendente', 'aprovada', 'recusada', 'rejeitada'] as const;

export const Attempt = z.object({
  id: z.number(),
  recorrencia_id: z.number(),
  ciclo: z.string(),
  tentativa: z.number(),
  chave_idempotencia: z.string(),
  status: z.enum(ATTEMPT_STATUSES),
  valor_centavos: z.number(),
  moeda: z.string(),
  cartao_token: z.string(),
  codigo_recusa: z.string().nullable(),
  recusa_reversivel: z.boolean().nullable(),
  mensagem: z.string().nullable(),
  gateway_ref: z.string().nullable(),
  data_negocio: z.string(),
  job_id: z.string().nullable(),
  envios: z.number(),
  criado_em: z.date(),
  enviada_em: z.date().nullable(),
  resolvida_em: z.date().nullable(),
});
export type Attempt = z.infer<typeof Attempt>;

/** The attempt columns, for queries that read whole attempts. */
export const ATTEMPT_COLUMNS = sql.fragment`id, recorrencia_id, ciclo, tentativa, chave_idempotencia, status, valor_centavos, moeda,
  cartao_token, codigo_recusa, recusa_reversivel, mensagem, gateway_ref, data_negocio, job_id, envios, criado_em, enviada_em,
  resolvida_em`;

export async function findPendingAttempt(
  db: CommonQueryMethods,
  recurrenceId: number,
): Promise<Attempt | null> {
  return db.maybeOne(sql.type(Attempt)`
    SELECT ${ATTEMPT_COLUMNS} FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = ${recurrenceId} AND status = 'pendente'`);
}

export async function lastAttemptNumber(
  db: CommonQueryMethods,
  recurrenceId: number,
  cycle: IsoDate,
): Promise<number> {
  return db.oneFirst(sql.type(LastAttemptRow)`
    SELECT coalesce(max(tentativa), 0)::int AS last FROM checkout_recorrencia_cobrancas
    WHERE recorrencia_id = ${recurrenceId} AND ciclo = ${cycle}::date`);
}

/** Records that the attempt is about to be sent (committed before the gateway call). */
export async function markAttemptSending(
  tx: CommonQueryMethods,
  id: number,
  jobId: string | null,
): Promise<void> {
  await tx.query(sql.unsafe`
    UPDATE checkout_recorrencia_cobrancas SET envios = envios + 1, enviada_em = now(), job_id = ${jobId}::uuid
    WHERE id = ${id} AND status = 'pendente'`);
}

/**
 * Takes back markAttemptSending's count (or the creation's) for attempts phase 2 never sent (no gateway slot
 * came, or the batch's time ran out first): `envios` counts requests that may have reached the gateway. Never
 * from a blocked attempt: phase 1 does not count it, so its `envios` are earlier rounds' sends, and the
 * evidence an operator resolves the block with. (One blocked meanwhile by another sender keeps this round's
 * count too: too many is safe, too few is not.)
 */
export async function unmarkAttemptsSending(db: CommonQueryMethods, ids: readonly number[]): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE checkout_recorrencia_cobrancas SET envios = envios - 1
    WHERE id = ANY(${sql.array([...ids], 'int8')}) AND status = 'pendente' AND envios > 0
      AND codigo_recusa IS NULL`);
}

/**
 * An attempt whose key the gateway holds for another request (409): it stays pending, marked with the error's
 * code and first words, and is never sent or looked up again (the lookup would answer about that other request);
 * an operator says what became of it (`resolveBlockedAttempt` in src/ops/blocked-attempts.ts).
 */
export async function markAttemptBlocked(
  tx: CommonQueryMethods,
  id: number,
  refusal: { code: string; message: string },
): Promise<void> {
  await tx.query(sql.unsafe`
    UPDATE checkout_recorrencia_cobrancas SET codigo_recusa = ${refusal.code}, mensagem = ${refusal.message}
    WHERE id = ${id} AND status = 'pendente' AND codigo_recusa IS NULL`);
}

const UnpayableRow = z.object({ id: z.number(), status: z.string() });

/** An attempt an approval can no longer be recorded on (alias `c`): blocked, or ended other than approved. */
const UNPAYABLE = sql.fragment`c.status <> 'aprovada' AND NOT (c.status = 'pendente' AND c.codigo_recusa IS NULL)`;

/**
 * Of `ids`, the attempts an approval can no longer be recorded on: still pending but blocked (see
 * markAttemptBlocked), or already ended as something other than approved (`rejeitada` by an operator's
 * `nao_cobrada`, say). Each with its status.
 */
export async function unpayableAmong(
  tx: CommonQueryMethods,
  ids: readonly number[],
): Promise<Map<number, string>> {
  if (ids.length === 0) return new Map();
  const rows = await tx.any(sql.type(UnpayableRow)`
    SELECT c.id, c.status FROM checkout_recorrencia_cobrancas c
    WHERE c.id = ANY(${sql.array([...ids], 'int8')}) AND ${UNPAYABLE}`);
  return new Map(rows.map((row) => [row.id, row.status]));
}

/** What the gateway answered late for an attempt: `aprovou` with its charge id, `recusou` with its code. */
export type LateAnswer = { attemptId: number; verb: 'aprovou' | 'recusou'; detail: string };

/**
 * The gateway answered the request of an attempt that can no longer record it (see unpayableAmong): a blocked
 * attempt stays blocked for the operator, whose resolution this evidence decides; an ended one stays ended,
 * for an operator to check whether the cycle was charged again under another key. Either way its `mensagem`
 * gets the answer ("a gateway aprovou esta chave depois do bloqueio: charge_id ch_1"), once per answer.
 */
export async function noteLateAnswers(tx: CommonQueryMethods, notes: readonly LateAnswer[]): Promise<void> {
  if (notes.length === 0) return;
  await tx.query(sql.unsafe`
    UPDATE checkout_recorrencia_cobrancas c
    SET mensagem = concat_ws(' | ', nullif(c.mensagem, ''), n.note)
    FROM (
      SELECT a.id AS attempt_id,
        'a gateway ' || i.verb || ' esta chave '
          || CASE WHEN a.status = 'pendente' THEN 'depois do bloqueio: '
                  ELSE 'depois de a tentativa terminar como ' || a.status || ': ' END
          || i.detail AS note
      FROM unnest(
        ${sql.array(
          notes.map((note) => note.attemptId),
          'int8',
        )},
        ${sql.array(
          notes.map((note) => note.verb),
          'text',
        )},
        ${sql.array(
          notes.map((note) => note.detail),
          'text',
        )}
      ) AS i(attempt_id, verb, detail)
      JOIN checkout_recorrencia_cobrancas a ON a.id = i.attempt_id
    ) n
    WHERE c.id = n.attempt_id AND ${UNPAYABLE}
      -- Whole notes only (each ends at a ' | ' or at the end): charge_id ch_1 is not a note of ch_12.
      AND strpos(coalesce(c.mensagem, '') || ' | ', n.note || ' | ') = 0`);
}

/**
 * Blocks, as markAttemptBlocked does, the pending attempt `id` when it was sent before and created more than
 * `retentionHours` ago: the gateway may have forgotten its key (see KEY_EXPIRED). Creation comes before the first
 * send, so the age is on the safe side; both sides of the comparison are the database's clock. Returns the
 * attempt as blocked, or null when it is not (young, never sent, or already blocked).
 */
export async function blockIfKeyExpired(
  tx: CommonQueryMethods,
  id: number,
  retentionHours: number,
  refusal: { code: string; message: string },
): Promise<Attempt | null> {
  if (retentionHours === 0) return null;
  return tx.maybeOne(sql.type(Attempt)`
    UPDATE checkout_recorrencia_cobrancas c SET codigo_recusa = ${refusal.code}, mensagem = ${refusal.message}
    WHERE c.id = ${id} AND c.status = 'pendente' AND c.codigo_recusa IS NULL AND ${keyMayBeForgotten(retentionHours)}
    RETURNING ${ATTEMPT_COLUMNS}`);
}

/**
 * The condition blockIfKeyExpired blocks on, for an attempt row aliased `c`: sent before, and created more than
 * `retentionHours` (above 0) ago. The dry run uses it to leave out what a run would block.
 */
export function keyMayBeForgotten(retentionHours: number) {
  return sql.fragment`(c.envios > 0 AND c.criado_em < now() - make_interval(hours => ${retentionHours}))`;
}

/** A pending attempt waiting for an operator (see markAttemptBlocked): only pending ones carry a code. */
export function isBlocked(attempt: Attempt): boolean {
  return attempt.status === 'pendente' && attempt.codigo_recusa !== null;
}

/**
 * Unblocks an attempt an operator found paid at the gateway (see src/ops/blocked-attempts.ts), to be approved
 * next in the same transaction: the 409's code and words go, and the attempt takes the amount and currency the
 * gateway charged under its key (a 409 means the request differed from the attempt's). The operator's note
 * stays in the audit: `mensagem` reaches the checkout in the approval's event.
 */
export async function unblockAsCharged(
  tx: CommonQueryMethods,
  id: number,
  charged: { amountCents: number; currency: string },
): Promise<void> {
  await tx.query(sql.unsafe`
    UPDATE checkout_recorrencia_cobrancas
    SET codigo_recusa = NULL, mensagem = 'cobrança confirmada na gateway por um operador',
        valor_centavos = ${charged.amountCents}, moeda = ${charged.currency}
    WHERE id = ${id} AND status = 'pendente'`);
}

/** Resolves a pending attempt. Returns false when it was no longer pending (someone else resolved it). */
export async function resolveAttempt(
  tx: CommonQueryMethods,
  id: number,
  outcome:
    | { status: 'aprovada'; gatewayRef: string }
    | { status: 'recusada'; gatewayRef: string | null; code: string; reversible: boolean; message: string }
    /** The gateway refused the request (nothing ran under its key): its error code and words. */
    | { status: 'rejeitada'; code: string; message: string },
): Promise<boolean> {
  const declined = outcome.status === 'recusada' ? outcome : null;
  const withCode = outcome.status === 'aprovada' ? null : outcome;
  const result = await tx.query(sql.type(IdRow)`
    UPDATE checkout_recorrencia_cobrancas
    SET status = ${outcome.status}, gateway_ref = ${'gatewayRef' in outcome ? outcome.gatewayRef : null},
        resolvida_em = now(), codigo_recusa = ${withCode?.code ?? null},
        recusa_reversivel = ${declined?.reversible ?? null}, mensagem = ${withCode?.message ?? null}
    WHERE id = ${id} AND status = 'pendente'
    RETURNING id`);
  return result.rowCount === 1;
}

export async function insertSkippedCycles(
  tx: CommonQueryMethods,
  recurrenceId: number,
  cycles: IsoDate[],
  chargedCycle: IsoDate,
  reason: string,
): Promise<void> {
  if (cycles.length === 0) return;
  await tx.query(sql.unsafe`
    INSERT INTO checkout_recorrencia_ciclos_pulados (recorrencia_id, ciclo, cobrado_no_ciclo, motivo)
    SELECT ${recurrenceId}, ciclo, ${chargedCycle}::date, ${reason}
    FROM unnest(${sql.array(cycles, 'date')}) AS ciclo
    ON CONFLICT DO NOTHING`);
}

/** Why a cycle that fell in a pause is recorded as skipped. */
export const PAUSED_CYCLE = 'recorrencia pausada: ciclo não cobrado';
/** Why a cycle behind is recorded as skipped when a later one is charged (back-billing off). */
export const BEHIND_CYCLE = 'ciclos atrasados: cobrado apenas o ciclo atual';

/** Records a move past a pause (moveFromPause): the skipped cycles, each with its reason, and the next charge. */
export async function applyPauseMove(
  tx: CommonQueryMethods,
  recurrenceId: number,
  move: MoveFromPause,
): Promise<void> {
  await insertSkippedCycles(tx, recurrenceId, move.behind, move.next, BEHIND_CYCLE);
  await insertSkippedCycles(tx, recurrenceId, move.paused, move.next, PAUSED_CYCLE);
  await moveNextCharge(tx, recurrenceId, move.next);
}

/**
 * A resumed recurrence does not charge the cycles that fell in its pause: the cycles from `due` up to the
 * resume's date are recorded as skipped. Returns the cycle it charges next (the first on or after `resumedOn`).
 */
export async function skipPausedCycles(
  tx: CommonQueryMethods,
  recurrence: Schedule & { id: number },
  due: IsoDate,
  resumedOn: IsoDate,
): Promise<IsoDate> {
  const next = firstCycleOnOrAfter(due, resumedOn, recurrence);
  await insertSkippedCycles(tx, recurrence.id, cyclesBetween(due, next, recurrence), next, PAUSED_CYCLE);
  return next;
}

/**
 * A recurrence resumed (`cobrar_a_partir_de`) whose next cycle is a cycle of a pause: the cycles of the pauses
 * are recorded as skipped and its next charge moves to the first cycle after them, an owed one (due outside
 * every pause, see owedFromBeforePause) or the first on or after the resume's date, which is returned. Null
 * when nothing moves: not before that date, or owed itself (charged). Callers check what else must hold (no
 * attempt pending, no retry planned, the cycle not attempted).
 */
export async function moveNextChargePastPause(
  tx: CommonQueryMethods,
  recurrence: Schedule & Pause & { id: number; proxima_cobranca: IsoDate },
): Promise<IsoDate | null> {
  const due = recurrence.proxima_cobranca;
  // With back-billing's rule: to the oldest owed cycle, whatever is due by when (`until` is then unused).
  const move = moveFromPause(due, recurrence, false, due, recurrence, true);
  if (move === null) return null;
  await applyPauseMove(tx, recurrence.id, move);
  return move.next;
}

/** The recurrence's latest attempt (highest cycle, then attempt number), or null. */
export async function findLastAttempt(db: CommonQueryMethods, recurrenceId: number): Promise<Attempt | null> {
  return db.maybeOne(sql.type(Attempt)`
    SELECT ${ATTEMPT_COLUMNS} FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = ${recurrenceId}
    ORDER BY ciclo DESC, tentativa DESC LIMIT 1`);
}

/** Every attempt of a recurrence, oldest first. */
export async function listAttemptsOf(
  db: CommonQueryMethods,
  recurrenceId: number,
): Promise<readonly Attempt[]> {
  return (
    await db.query(sql.type(Attempt)`
    SELECT ${ATTEMPT_COLUMNS} FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = ${recurrenceId} ORDER BY ciclo, tentativa`)
  ).rows;
}

const SkippedCycle = z.object({
  ciclo: z.string(),
  cobrado_no_ciclo: z.string(),
  motivo: z.string(),
  registrado_em: z.date(),
});

export async function listSkippedCyclesOf(
  db: CommonQueryMethods,
  recurrenceId: number,
): Promise<readonly z.infer<typeof SkippedCycle>[]> {
  return (
    await db.query(sql.type(SkippedCycle)`
    SELECT ciclo, cobrado_no_ciclo, motivo, registrado_em FROM checkout_recorrencia_ciclos_pulados
    WHERE recorrencia_id = ${recurrenceId} ORDER BY ciclo`)
  ).rows;
}
