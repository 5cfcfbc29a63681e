// Changing a recurrence through the API: its amount, card, schedule or description (PATCH), and its status
// (pausar, retomar, cancelar; an operator's reativar). Every change runs under the recurrence's row lock, the
// lock the charge phases take, so it lands either before an attempt is created (which then carries it) or
// after (the attempt keeps its own amount and card). Schedule changes are refused whenever they could charge a
// cycle twice or lose track of one in flight. Each change is written to the history and audited.
import {
  findLastAttempt,
  findPendingAttempt,
  isBlocked,
  lastAttemptNumber,
  moveNextChargePastPause,
  skipPausedCycles,
  type Attempt,
} from '../db/cobrancas.ts';
import { insertAudit } from '../db/pauses.ts';
import {
  changedSince,
  findLastApproval,
  findLatestLegacyCutover,
  insertChangeHistory,
  resumedOntoHold,
  updateRecurrenceFields,
  updateRecurrenceStatus,
  type FieldChange,
  type RecurrenceChanges,
} from '../db/recorrencias-gestao.ts';
import { lockRecurrence, markOnHold, reactivateFromHold, type Recurrence } from '../db/recorrencias.ts';
import { isIrreversibleDecline } from '../gateway/decline-codes.ts';
import { KEY_EXPIRED, KEY_REUSED } from '../gateway/gateway.ts';
import type { DatabaseTransactionConnection } from '../db/pool.ts';
import { nextCycle } from '../domain/calendar.ts';
import { businessDate, laterDate, type IsoDate } from '../domain/dates.ts';
import {
  anchorInMonthOf,
  decideTransition,
  pausesStillAhead,
  scheduleProblem,
  type Transition,
} from '../domain/recurrence-rules.ts';
import { AppError } from '../errors.ts';
import { emitCheckoutEvents, emitRecurrenceChanged } from '../tasks/charge/checkout-events.ts';
import type { OpsDeps } from './deps.ts';
import { presentRecurrence } from './recurrence-create.ts';
import { maskToken } from './recurrences.ts';
import type { Actor } from './actor.ts';

const FINAL = ['cancelado', 'concluido'];

async function lockForChange(tx: DatabaseTransactionConnection, id: number): Promise<Recurrence> {
  const recurrence = await lockRecurrence(tx, id);
  if (recurrence === null) throw new AppError('NOT_FOUND', `no recurrence ${id}`);
  return recurrence;
}

function inFlight(attempt: Attempt | null) {
  return attempt === null
    ? null
    : { id: attempt.id, ciclo: attempt.ciclo, valor_centavos: attempt.valor_centavos };
}

/** The fields whose value really changes, old -> new (card token references masked). */
function diff(current: Recurrence, changes: RecurrenceChanges): FieldChange[] {
  const rows: FieldChange[] = [];
  type Value = string | number | null | undefined;
  for (const [field, value] of Object.entries(changes) as Array<[keyof RecurrenceChanges, Value]>) {
    const before = current[field];
    if (value === undefined || value === before) continue;
    const show = (v: Value) =>
      v === null ? null : field === 'cartao_token' ? maskToken(String(v)) : String(v);
    rows.push({ campo: field, valor_anterior: show(before), valor_novo: show(value) });
  }
  return rows;
}

/**
 * The next charge date a schedule change asks for, checked against everything that could make it charge a
 * cycle twice: an attempt in flight or a retry planned (its cycle is being charged), a date on or before
 * the last cycle approved here, before today, or before the cutover of an import (the old system's cycles).
 */
async function checkScheduleChange(
  deps: OpsDeps,
  tx: DatabaseTransactionConnection,
  current: Recurrence,
  schedule: { dia_ancora: number | null; proxima_cobranca: IsoDate },
  pending: Attempt | null,
): Promise<void> {
  const date = schedule.proxima_cobranca;
  const problem = scheduleProblem(
    { periodicidade: current.periodicidade, dia_ancora: schedule.dia_ancora },
    date,
  );
  if (problem !== null) throw new AppError('INVALID_INPUT', problem);
  const conflict = (reason: string) =>
    new AppError('CONFLICT', reason, { details: { status: current.status, reason } });
  if (pending !== null) {
    throw conflict(
      `a charge of cycle ${pending.ciclo} is in flight (attempt ${pending.id}): change the schedule after it resolves`,
    );
  }
  if (current.proxima_tentativa !== null) {
    throw conflict(
      `cycle ${current.proxima_cobranca} was declined and is retried on ${current.proxima_tentativa}: change the schedule after it resolves`,
    );
  }
  const today = businessDate(deps.now(), deps.config.timeZone);
  if (date < today) throw new AppError('INVALID_INPUT', `proxima_cobranca: ${date} is before today ${today}`);
  const paid = await paidPeriod(tx, current);
  if (paid !== null && date <= paid.cycle) {
    throw conflict(`proxima_cobranca ${date} is on or before cycle ${paid.cycle}, already charged`);
  }
  // The approved cycle paid for the time up to its next cycle: an earlier date would charge part of it again.
  if (paid !== null && date < paid.until) {
    throw conflict(
      `proxima_cobranca ${date} is before ${paid.until}, up to which cycle ${paid.cycle} is paid`,
    );
  }
  if (current.id_legado !== null) {
    const cutover = await findLatestLegacyCutover(tx);
    if (cutover !== null && date < cutover) {
      throw conflict(`proxima_cobranca ${date} is before the cutover ${cutover}: the old system handled it`);
    }
  }
}

/**
 * The last cycle approved here and the date up to which it paid: its next cycle under the anchor it was
 * charged with. The current anchor is not enough: after an anchor change (31 to 1), the next cycle from it
 * would end the paid time early, and a second change could then charge part of it again. When the records
 * leave the anchor of the charge in doubt, the latest of the candidate dates counts.
 */
async function paidPeriod(
  tx: DatabaseTransactionConnection,
  current: Recurrence,
): Promise<{ cycle: IsoDate; until: IsoDate } | null> {
  const approval = await findLastApproval(tx, current.id);
  if (approval === null) return null;
  const anchors =
    current.periodicidade === 'semanal'
      ? [null]
      : [current.dia_ancora, ...approval.earlierAnchors].filter((a) => a !== null);
  const until = anchors
    .map((anchor) => nextCycle(approval.cycle, { periodicidade: current.periodicidade, dia_ancora: anchor }))
    .reduce(laterDate);
  return { cycle: approval.cycle, until };
}

/**
 * The next date when only the anchor changes: the new anchor in the month of the current next date, or in the
 * month after when that falls before the time the last approved cycle paid for (up to its next cycle).
 */
async function anchorOnlyDate(
  tx: DatabaseTransactionConnection,
  current: Recurrence,
  anchor: number,
): Promise<IsoDate> {
  const sameMonth = anchorInMonthOf(current.proxima_cobranca, anchor);
  const paid = await paidPeriod(tx, current);
  if (paid === null || sameMonth >= paid.until) return sameMonth;
  return nextCycle(sameMonth, { periodicidade: 'mensal', dia_ancora: anchor });
}

/**
 * Applies a PATCH. Amount, card and description apply from the next attempt (an attempt in flight keeps its
 * own); the schedule (anchor, next date) only when no attempt or retry is under way. Only the anchor given:
 * see anchorOnlyDate.
 */
export async function changeRecurrence(deps: OpsDeps, who: Actor, id: number, patch: RecurrenceChanges) {
  const result = await deps.pool.transaction(async (tx) => {
    const current = await lockForChange(tx, id);
    if (FINAL.includes(current.status)) {
      throw new AppError('CONFLICT', `recurrence ${id} is ${current.status}: it can no longer change`, {
        details: { status: current.status },
      });
    }
    const changes: RecurrenceChanges = { ...patch };
    if (patch.dia_ancora !== undefined && patch.proxima_cobranca === undefined && patch.dia_ancora !== null) {
      changes.proxima_cobranca = await anchorOnlyDate(tx, current, patch.dia_ancora);
    }
    const changed = diff(current, changes);
    const pending = await findPendingAttempt(tx, id);
    if (changed.some((c) => c.campo === 'dia_ancora' || c.campo === 'proxima_cobranca')) {
      await checkScheduleChange(
        deps,
        tx,
        current,
        {
          dia_ancora: changes.dia_ancora === undefined ? current.dia_ancora : changes.dia_ancora,
          proxima_cobranca: changes.proxima_cobranca ?? current.proxima_cobranca,
        },
        pending,
      );
    }
    if (changed.length === 0) return { recurrence: current, changed, pending };
    const updated = await updateRecurrenceFields(tx, id, changes);
    await insertChangeHistory(tx, id, who.name, changed);
    await emitRecurrenceChanged(deps, tx, id);
    await insertAudit(tx, {
      who,
      action: 'update_recurrence',
      target: `recorrencia:${id}`,
      details: { changed },
    });
    return { recurrence: updated, changed, pending };
  });
  if (result.changed.length > 0)
    deps.log.info(
      { recorrenciaId: id, by: who, fields: result.changed.map((c) => c.campo) },
      'recurrence changed',
    );
  return {
    recorrencia: presentRecurrence(result.recurrence),
    alteracoes: result.changed,
    // The first cycle the change surely applies to: the one after a charge in flight, else the next one. A
    // retry of the cycle in flight, should it be declined, is a new attempt: it takes the change too.
    aplica_a_partir_do_ciclo:
      result.pending === null
        ? result.recurrence.proxima_cobranca
        : nextCycle(result.pending.ciclo, result.recurrence),
    cobranca_em_andamento: inFlight(result.pending),
  };
}

/**
 * Where a resumed recurrence starts again: cycles that fell during the pause are not charged (recorded as
 * skipped), so an unpaid cycle in the past moves to the first cycle on or after today (`at`; null when it
 * stays). Not while an attempt is pending: its approval sets the next cycle, and moves it on or after the
 * resume's date (`on`) itself. Nor when the cycle fell due before the pause began (`pausada_desde`), or was
 * attempted (declined before the pause, with a retry planned or not; or while paused): the pause does not
 * forgive it (as a charge in flight at the pause and declined after it keeps its retry). Phase 1 charges it,
 * and its approval moves the next cycle past the pause the same way.
 */
async function resumePoint(
  deps: OpsDeps,
  tx: DatabaseTransactionConnection,
  current: Recurrence,
  pending: Attempt | null,
): Promise<{ on: IsoDate; at: IsoDate | null }> {
  const today = businessDate(deps.now(), deps.config.timeZone);
  if (
    pending !== null ||
    current.proxima_tentativa !== null ||
    current.proxima_cobranca >= today ||
    // Due before the pause now ending began (with its start recorded): owed.
    (current.pausada_desde !== null && current.proxima_cobranca < current.pausada_desde) ||
    (await lastAttemptNumber(tx, current.id, current.proxima_cobranca)) > 0
  )
    return { on: today, at: null };
  const at = await skipPausedCycles(tx, current, current.proxima_cobranca, today);
  return { on: today, at };
}

/** The history rows of a status change, with the move of the next charge when there was one. */
function statusHistory(current: Recurrence, to: string, movedTo: IsoDate | null): FieldChange[] {
  const history: FieldChange[] = [{ campo: 'status', valor_anterior: current.status, valor_novo: to }];
  if (movedTo !== null)
    history.push({
      campo: 'proxima_cobranca',
      valor_anterior: current.proxima_cobranca,
      valor_novo: movedTo,
    });
  return history;
}

/** What retomar does about a charge that ended while paused with no retry left (see endedWhilePaused). */
type EndedWhilePaused = { kind: 'hold'; attempt: Attempt; reason: string } | { kind: 'lifted' };

/**
 * At retomar, the recurrence's last attempt when it ended while paused in what would have held an active
 * recurrence. Phase 3 leaves a paused recurrence paused (a pause is the customer's), so it was never held:
 *  - the same request would be sent again: it goes on hold now ('hold'). That is an irreversible decline of
 *    the card it still has (for 13, invalid amount: of the amount it still has; see
 *    irreversibleDeclineOfItsCard), a reversible one with no retry left (the decline or brand limit) of that
 *    card, or a request the gateway refused (400, 422) with the card and amount it still has;
 *  - the checkout changed what the request carried meanwhile: nothing holds it, and its decline count starts
 *    again, as a reactivation's does ('lifted'). The cycle stays owed: the next run charges it.
 * Null otherwise: a retry planned or an attempt pending, reactivated since, or an attempt an operator ended
 * (`nao_cobrada` of a blocked one, which a new key charges).
 */
async function endedWhilePaused(
  tx: DatabaseTransactionConnection,
  current: Recurrence,
): Promise<EndedWhilePaused | null> {
  const last = await findLastAttempt(tx, current.id);
  // Whatever cycle it was of: a PATCH of the date during the pause moves the next charge, not the card.
  if (
    last === null ||
    current.proxima_tentativa !== null ||
    (last.status !== 'recusada' && last.status !== 'rejeitada') ||
    (last.status === 'rejeitada' &&
      (last.codigo_recusa === KEY_REUSED || last.codigo_recusa === KEY_EXPIRED)) ||
    (await changedSince(tx, current.id, last.resolvida_em ?? last.criado_em, []))
  )
    return null;
  const code = last.codigo_recusa ?? '?';
  if (last.status === 'rejeitada') {
    const same = last.cartao_token === current.cartao_token && last.valor_centavos === current.valor_centavos;
    if (!same) return { kind: 'lifted' };
    const reason = `gateway rejeitou a requisição da tentativa ${last.chave_idempotencia} durante a pausa: ${code}`;
    return { kind: 'hold', attempt: last, reason };
  }
  if (isIrreversibleDecline({ code, reversible: last.recusa_reversivel ?? true })) {
    if (!declinedCardStillItsOwn(last, current)) return { kind: 'lifted' };
    const reason = `recusa irreversível (código ${code}) durante a pausa: troque o cartão antes de reativar`;
    return { kind: 'hold', attempt: last, reason };
  }
  if (last.cartao_token !== current.cartao_token) return { kind: 'lifted' };
  const reason = `recusa (código ${code}) durante a pausa sem retentativa restante (limite de recusas ou da bandeira): troque o cartão antes de reativar`;
  return { kind: 'hold', attempt: last, reason };
}

/**
 * pausar / retomar / cancelar. Invalid transitions are refused with 409 and the current status; asking for
 * the state the recurrence is already in answers 200 with `mudou: false` (a retried request). A charge in
 * flight is never interrupted: it finishes and is recorded (a retry resumes an attempt left pending whatever
 * the status); phase 1 of the next one skips a recurrence that is not active.
 */
export async function transitionRecurrence(deps: OpsDeps, who: Actor, id: number, transition: Transition) {
  const result = await deps.pool.transaction(async (tx) => {
    const current = await lockForChange(tx, id);
    const decision = decideTransition(current.status, transition);
    const pending = await findPendingAttempt(tx, id);
    // A retried retomar that the first call answered in hold: the same answer, nothing changed.
    const retriedResume =
      decision.kind === 'refuse' && transition === 'retomar' && current.status === 'hold'
        ? await resumedOntoHold(tx, id)
        : false;
    if (retriedResume) return { recurrence: current, changed: false, pending };
    if (decision.kind === 'refuse') {
      throw new AppError('CONFLICT', `cannot ${transition} recurrence ${id}: it is ${current.status}`, {
        details: { status: current.status },
      });
    }
    if (decision.kind === 'already') return { recurrence: current, changed: false, pending };
    const to = decision.to as 'ativo' | 'pausado' | 'cancelado';
    const resume = to === 'ativo' ? await resumePoint(deps, tx, current, pending) : null;
    const resumeAt = resume?.at ?? null;
    // A charge in flight at the pause and declined (or refused) meanwhile left the recurrence paused, so it
    // was never held. Resumed, the same request would be sent again: it goes on hold.
    const ended = to === 'ativo' && pending === null ? await endedWhilePaused(tx, current) : null;
    let updated = await updateRecurrenceStatus(tx, id, to, {
      resume,
      pause:
        to === 'pausado'
          ? { on: businessDate(deps.now(), deps.config.timeZone), earlier: pausesStillAhead(current) }
          : undefined,
      resetDeclines: ended?.kind === 'lifted',
    });
    const held = ended?.kind === 'hold' ? ended : null;
    if (held !== null) {
      await markOnHold(tx, [{ id, reason: held.reason }], false);
      updated = (await lockRecurrence(tx, id)) ?? updated;
    }
    await insertChangeHistory(tx, id, who.name, statusHistory(current, updated.status, resumeAt));
    // After the history row: the event's content is read from the rows as this transaction leaves them.
    if (held !== null)
      await emitCheckoutEvents(deps, tx, [{ attempt: held.attempt, type: 'recorrencia_em_hold' }]);
    else await emitRecurrenceChanged(deps, tx, id);
    await insertAudit(tx, {
      who,
      action: `${transition}_recurrence`,
      target: `recorrencia:${id}`,
      details: { from: current.status, to: updated.status, pending_attempt: pending?.id ?? null },
    });
    return { recurrence: updated, changed: true, pending };
  });
  if (result.changed && result.recurrence.status === 'hold') {
    deps.log.warn(
      { recorrenciaId: id, by: who, transition, motivoHold: result.recurrence.motivo_hold },
      'recurrence resumed onto hold: its charge ended during the pause with no retry left',
    );
  } else if (result.changed) {
    deps.log.info({ recorrenciaId: id, by: who, transition }, 'recurrence status changed');
  }
  return {
    recorrencia: presentRecurrence(result.recurrence),
    mudou: result.changed,
    cobranca_em_andamento: inFlight(result.pending),
  };
}

/**
 * A recurrence resumed (retomar) and then held still has its next cycle before the resume's date when it was
 * not charged since. Reactivated, a cycle never attempted is one of the pause: it starts at its first cycle on
 * or after the resume's date, the cycles of the pause recorded as skipped (what the resume does). One
 * attempted is owed from before the pause and stays for phase 1 to charge (see startAfterPause). Returns the
 * new next cycle, or null when nothing moves (an attempt still pending sets it when it resolves).
 */
async function skipCyclesOfPauseOnReactivation(
  tx: DatabaseTransactionConnection,
  recurrence: Recurrence,
): Promise<IsoDate | null> {
  if ((await findPendingAttempt(tx, recurrence.id)) !== null) return null;
  if ((await lastAttemptNumber(tx, recurrence.id, recurrence.proxima_cobranca)) > 0) return null;
  return moveNextChargePastPause(tx, recurrence);
}

/**
 * Whether an irreversible decline still applies to the recurrence as it is: the card it still has and, for 13
 * (invalid amount), the amount too, each compared with the declined request's own (a change saved while that
 * request was in flight counts; one changed back to the declined value does not).
 */
function declinedCardStillItsOwn(declined: Attempt, recurrence: Recurrence): boolean {
  if (declined.cartao_token !== recurrence.cartao_token) return false;
  return declined.codigo_recusa !== '13' || declined.valor_centavos === recurrence.valor_centavos;
}

/**
 * The recurrence's last attempt, when it was an irreversible decline of the card the recurrence still has, of
 * the amount it still has for 13 (invalid amount), and it was not reactivated since:
 * the brands forbid sending that card again. Null otherwise. A new card shows in the token itself; changed
 * and changed back to the declined one, it is the declined card again.
 */
async function irreversibleDeclineOfItsCard(
  tx: DatabaseTransactionConnection,
  recurrence: Recurrence,
): Promise<Attempt | null> {
  const last = await findLastAttempt(tx, recurrence.id);
  if (
    last?.status !== 'recusada' ||
    !isIrreversibleDecline({ code: last.codigo_recusa ?? '', reversible: last.recusa_reversivel ?? true }) ||
    !declinedCardStillItsOwn(last, recurrence)
  ) {
    return null;
  }
  return (await changedSince(tx, recurrence.id, last.resolvida_em ?? last.criado_em, [])) ? null : last;
}

/**
 * Takes a recurrence off hold. Not while it has a blocked attempt (see src/ops/blocked-attempts.ts), nor when
 * the hold followed an irreversible decline of the card it still has and nothing changed since (the brands
 * forbid sending that card again: the checkout changes the card, or what the code was about, such as the
 * amount), unless `force`.
 */
export async function reactivateRecurrence(
  deps: OpsDeps,
  who: Actor,
  id: number,
  options: { force: boolean } = { force: false },
): Promise<{ id: number; status: 'ativo' }> {
  await deps.pool.transaction(async (tx) => {
    const recurrence = await lockRecurrence(tx, id);
    if (recurrence === null) throw new AppError('NOT_FOUND', `no recurrence ${id}`);
    // Active again, its blocked attempt would only be refused and held again: an operator resolves it first.
    const pending = await findPendingAttempt(tx, id);
    if (pending !== null && isBlocked(pending)) {
      throw new AppError(
        'CONFLICT',
        `recurrence ${id} has attempt ${pending.id} blocked (the gateway holds another request under its key ${pending.chave_idempotencia}): resolve it first with POST /recorrencias/${id}/cobrancas/${pending.id}/resolver`,
        { details: { status: recurrence.status, cobranca_bloqueada: pending.id } },
      );
    }
    const declined =
      options.force || recurrence.status !== 'hold'
        ? null
        : await irreversibleDeclineOfItsCard(tx, recurrence);
    if (declined !== null) {
      throw new AppError(
        'CONFLICT',
        `recurrence ${id} was held after an irreversible decline (code ${declined.codigo_recusa ?? '?'}) of the card it still has: change the card (or what the code was about) first, or send {"force": true}`,
        { details: { status: recurrence.status, codigo_recusa: declined.codigo_recusa } },
      );
    }
    if (!(await reactivateFromHold(tx, id))) {
      throw new AppError(
        'CONFLICT',
        `only a recurrence on hold can be reactivated; ${id} is ${recurrence.status}`,
        {
          details: { status: recurrence.status },
        },
      );
    }
    const resumedAt = await skipCyclesOfPauseOnReactivation(tx, recurrence);
    // In the recurrence's history too: the checkout reads it, and an import does not overwrite a recurrence
    // changed here.
    await insertChangeHistory(tx, id, who.name, statusHistory(recurrence, 'ativo', resumedAt));
    await emitRecurrenceChanged(deps, tx, id);
    await insertAudit(tx, {
      who,
      action: 'reactivate',
      target: `recorrencia:${id}`,
      details: { motivo_hold: recurrence.motivo_hold, force: options.force },
    });
  });
  deps.log.info({ recorrenciaId: id, by: who }, 'recurrence taken off hold');
  return { id, status: 'ativo' };
}
