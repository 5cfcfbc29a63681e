// The rules a recurrence's schedule and status must follow, shared by the API and the import: an anchor
// day coherent with the next charge date, moving a schedule forward to a date, and the state machine of the
// operations the checkout may apply (pausar, retomar, cancelar).
import {
  cyclesBetween,
  latestCycleOnOrBefore,
  nextCycle,
  type Periodicity,
  type Schedule,
} from './calendar.ts';
import { dateParts, daysInMonth, fromParts, type IsoDate } from './dates.ts';

/** What a recurrence is agreed to be, whoever creates it (the API, the import). */
export type RecurrenceTerms = {
  vendedor_id: string;
  cliente_ref: string | null;
  cartao_token: string;
  bandeira: string;
  valor_centavos: number;
  moeda: string;
  descricao: string;
  periodicidade: Periodicity;
  dia_ancora: number | null;
  proxima_cobranca: IsoDate;
  total_ciclos: number | null;
  referencia_externa: string | null;
};

/**
 * Why `date` cannot be the next charge of a schedule, or null when it can. Monthly-family cycles fall on
 * the anchor day, or on the month's last day when the anchor is beyond it (anchor 31 -> Feb 28); weekly
 * cycles have no anchor.
 */
export function scheduleProblem(schedule: Schedule, date: IsoDate): string | null {
  if (schedule.periodicidade === 'semanal') {
    return schedule.dia_ancora === null ? null : 'dia_ancora: weekly recurrences have no anchor day';
  }
  if (schedule.dia_ancora === null) return `dia_ancora: required for ${schedule.periodicidade} recurrences`;
  if (!isOnAnchor(date, schedule.dia_ancora)) {
    return `proxima_cobranca: ${date} does not fall on anchor day ${schedule.dia_ancora} (nor on the last day of a shorter month)`;
  }
  return null;
}

export function isOnAnchor(date: IsoDate, anchorDay: number): boolean {
  const { year, month, day } = dateParts(date);
  return day === Math.min(anchorDay, daysInMonth(year, month));
}

/** The date of `anchorDay` in the month of `date`, clamped to the month's last day. */
export function anchorInMonthOf(date: IsoDate, anchorDay: number): IsoDate {
  const { year, month } = dateParts(date);
  return fromParts(year, month, Math.min(anchorDay, daysInMonth(year, month)));
}

/** The first cycle on or after `date`, counting from the unpaid cycle `due` (`due` itself when not before). */
export function firstCycleOnOrAfter(due: IsoDate, date: IsoDate, schedule: Schedule): IsoDate {
  if (due >= date) return due;
  const latest = latestCycleOnOrBefore(due, date, schedule);
  return latest === date ? latest : nextCycle(latest, schedule);
}

/**
 * A recurrence's pauses: the last, from `pausada_desde` (null: paused before that was recorded) to its resume
 * `cobrar_a_partir_de`, and the earlier ones still ahead of the next charge (`pausas_anteriores`).
 */
export type Pause = {
  pausada_desde: IsoDate | null;
  cobrar_a_partir_de: IsoDate | null;
  pausas_anteriores: ReadonlyArray<readonly [IsoDate | null, IsoDate]>;
};

/**
 * Whether the next cycle is before a resume's date: a cycle of the pause (moveNextChargePastPause moves it),
 * or one owed from before the pause (charged itself).
 */
export function nextChargeBeforeResume(recurrence: {
  proxima_cobranca: IsoDate;
  cobrar_a_partir_de: IsoDate | null;
}): boolean {
  return (
    recurrence.cobrar_a_partir_de !== null && recurrence.proxima_cobranca < recurrence.cobrar_a_partir_de
  );
}

/** Whether `cycle` falls in [from, until): a pause's days; an unknown start (null) reaches back for ever. */
function within(cycle: IsoDate, [from, until]: PauseDays): boolean {
  return (from === null || cycle >= from) && cycle < until;
}

/**
 * Whether `cycle`, before the resume's date, is owed rather than a cycle of a pause: it fell due outside every
 * pause (before the last began, between two), or it was attempted then (declined, or in flight at `pausar`).
 * For a pause whose start was not recorded, only an attempted cycle before its resume is.
 */
function owedFromBeforePause(cycle: IsoDate, pause: Pause, attempted: boolean): boolean {
  if (attempted) return true;
  const last =
    pause.cobrar_a_partir_de === null ? [] : [[pause.pausada_desde, pause.cobrar_a_partir_de] as const];
  return ![...pause.pausas_anteriores, ...last].some((days) => within(cycle, days));
}

/** A pause's days, [from, until): from its `pausar` (null: not recorded) to its `retomar`. */
export type PauseDays = readonly [IsoDate | null, IsoDate];

/**
 * The recurrence's pauses, the last one included, that still have a cycle ahead of its next charge, not yet
 * recorded as skipped: while a cycle owed from before them is unpaid. A new `pausar` keeps them in
 * `pausas_anteriores`, so each pause's cycles stay its own; empty once the next charge is past the last
 * resume. A pause whose start was not recorded is kept while the next charge is before the resume.
 */
export function pausesStillAhead(recurrence: Pause & Schedule & { proxima_cobranca: IsoDate }): PauseDays[] {
  const resumedOn = recurrence.cobrar_a_partir_de;
  if (resumedOn === null || recurrence.proxima_cobranca >= resumedOn) return [];
  const after = nextCycle(recurrence.proxima_cobranca, recurrence);
  const all: PauseDays[] = [...recurrence.pausas_anteriores, [recurrence.pausada_desde, resumedOn]];
  return all.filter(([from, until]) => from === null || firstCycleOnOrAfter(after, from, recurrence) < until);
}

/** Where a resumed recurrence's next cycle moves, and the cycles recorded as skipped on the way. */
export type MoveFromPause = { next: IsoDate; behind: IsoDate[]; paused: IsoDate[] };

/**
 * A recurrence whose next cycle `due` is still before its last resume's date, for a charge of cycles due by
 * `until`. Cycles of a pause are never charged. Owed cycles (owedFromBeforePause: `due` when `attempted`, and
 * the ones outside every pause) are charged as any cycles behind are: with back-billing, each, oldest first
 * (the next charge moves to the oldest; null when that is `due`); without, only the latest cycle due, which
 * is the first after the last resume when that is due by `until` (the owed ones then skipped as behind),
 * else the latest owed one. Without owed cycles, the next charge moves to the first cycle on or after the
 * resume's date. The cycles of a pause passed on the way are returned as `paused`. Null when nothing moves.
 */
export function moveFromPause(
  due: IsoDate,
  pause: Pause,
  attempted: boolean,
  until: IsoDate,
  schedule: Schedule,
  backbill: boolean,
): MoveFromPause | null {
  const resumedOn = pause.cobrar_a_partir_de;
  if (resumedOn === null || due >= resumedOn) return null;
  const next = firstCycleOnOrAfter(due, resumedOn, schedule);
  const cycles = cyclesBetween(due, next, schedule);
  const owed = cycles.filter((cycle) => owedFromBeforePause(cycle, pause, attempted && cycle === due));
  const paused = cycles.filter((cycle) => !owed.includes(cycle));
  const moveTo = (target: IsoDate, behind: IsoDate[]): MoveFromPause | null =>
    target === due ? null : { next: target, behind, paused: paused.filter((cycle) => cycle < target) };
  const [oldestOwed] = owed;
  const latestOwed = owed.at(-1);
  if (oldestOwed === undefined || latestOwed === undefined) return { next, behind: [], paused };
  if (backbill) return moveTo(oldestOwed, []);
  if (next <= until) return { next, behind: owed, paused };
  return moveTo(latestOwed, owed.slice(0, -1));
}

export type RecurrenceStatus = 'ativo' | 'hold' | 'pausado' | 'cancelado' | 'concluido';
export const TRANSITIONS = ['pausar', 'retomar', 'cancelar'] as const;
export type Transition = (typeof TRANSITIONS)[number];

/**
 * The state machine the checkout drives: ativo -> pausado, pausado -> ativo, ativo|pausado|hold -> cancelado.
 * cancelado and concluido are final; hold goes back to ativo only through an operator's `reativar`.
 */
const MACHINE: Record<Transition, { from: readonly RecurrenceStatus[]; to: RecurrenceStatus }> = {
  pausar: { from: ['ativo'], to: 'pausado' },
  retomar: { from: ['pausado'], to: 'ativo' },
  cancelar: { from: ['ativo', 'pausado', 'hold'], to: 'cancelado' },
};

/** 'apply', 'already' (the target state is the current one: a retried request) or 'refuse'. */
export function decideTransition(
  current: RecurrenceStatus,
  transition: Transition,
): { kind: 'apply' | 'already' | 'refuse'; to: RecurrenceStatus } {
  const rule = MACHINE[transition];
  if (current === rule.to) return { kind: 'already', to: rule.to };
  return { kind: rule.from.includes(current) ? 'apply' : 'refuse', to: rule.to };
}
