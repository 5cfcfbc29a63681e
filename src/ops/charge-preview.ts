// The dry run of processar_recorrencias_do_dia as a list, for the cutover: what would be charged on a date
// (recurrence, old id, seller, the cycle per planCharge and BACKBILL_MISSED_CYCLES, the amount), without
// charging or enqueueing anything. Operators compare it with the old system's list before switching.
// Recurrences whose attempt is blocked are not in the list (their jobs charge nothing): only their count.
import type { CommonQueryMethods } from 'slonik';
import { describePause, findPause } from '../db/pauses.ts';
import { findDuePreviewPage, sumDuePreview, type DueRow } from '../db/previa-cobrancas.ts';
import { findLatestTaskRun } from '../db/task-runs.ts';
import { planCharge } from '../domain/calendar.ts';
import { businessDate, laterDate, type IsoDate } from '../domain/dates.ts';
import { moveFromPause, nextChargeBeforeResume } from '../domain/recurrence-rules.ts';
import { AppError } from '../errors.ts';
import { PERIODIC_TASK_DEFINITIONS } from '../tasks/registry.ts';
import type { PeriodicTaskName } from '../queue/task-names.ts';
import { requirePeriodicTask } from './control.ts';
import type { OpsDeps } from './deps.ts';

export type PreviewItem = {
  recorrencia_id: number;
  id_legado: string | null;
  vendedor_id: string;
  ciclo: IsoDate;
  valor_centavos: number;
  moeda: string;
  /** Cycles the charge would record as skipped (several cycles behind, without back-billing). */
  ciclos_pulados: number;
  /** True when a pending attempt would be resumed (its own cycle and amount) rather than a new one made. */
  retomada: boolean;
};

/**
 * Mirrors phase 1 of the charge: a pending attempt is resumed as is, otherwise the plan decides the cycle (a
 * cycle still before a resume's date that phase 1 would move past the pause itself, which a retomar or
 * reativar normally does first, shows as that later cycle even when it is not due yet). The
 * run's jobs take the recurrences due by `date`, and plan on it or on the day they run, whichever is later
 * (a run for a past date charges what is due by today): `planDate`.
 */
function previewOf(row: DueRow, planDate: IsoDate, backbill: boolean): PreviewItem {
  const base = {
    recorrencia_id: row.id,
    id_legado: row.id_legado,
    vendedor_id: row.vendedor_id,
    moeda: row.moeda,
  };
  if (row.pendente_ciclo !== null) {
    return {
      ...base,
      ciclo: row.pendente_ciclo,
      valor_centavos: row.pendente_valor_centavos ?? row.valor_centavos,
      ciclos_pulados: 0,
      retomada: true,
    };
  }
  // A recurrence resumed from a pause: its cycles are never charged, one owed from before it is (charged
  // itself, as decideCharge does), as phase 1 moves them (startAfterPause).
  const move = moveFromPause(row.proxima_cobranca, row, row.ciclo_tentado, planDate, row, backbill);
  const due = move?.next ?? row.proxima_cobranca;
  const plan =
    due > planDate ||
    nextChargeBeforeResume({ proxima_cobranca: due, cobrar_a_partir_de: row.cobrar_a_partir_de })
      ? { cycle: due, skipped: [] }
      : planCharge(due, planDate, row, backbill);
  return {
    ...base,
    ciclo: plan.cycle,
    valor_centavos: row.valor_centavos,
    ciclos_pulados: (move === null ? 0 : move.behind.length + move.paused.length) + plan.skipped.length,
    retomada: false,
  };
}

export function encodePreviewCursor(row: { proxima_cobranca: IsoDate; id: number }): string {
  return Buffer.from(`${row.proxima_cobranca}|${row.id}`).toString('base64url');
}

function decodePreviewCursor(value: string): { date: IsoDate; id: number } {
  const match = /^(\d{4}-\d{2}-\d{2})\|(\d{1,16})$/.exec(Buffer.from(value, 'base64url').toString('utf8'));
  if (match?.[1] === undefined || match[2] === undefined) {
    throw new AppError('INVALID_INPUT', 'cursor: not a cursor returned by this API');
  }
  return { date: match[1], id: Number(match[2]) };
}

/** The date a job of the run for `date` plans its cycle on, were it to run now (see decideCharge). */
function planDateOf(deps: OpsDeps, date: IsoDate): IsoDate {
  return laterDate(date, businessDate(deps.now(), deps.config.timeZone));
}

/** One page of the list, with the totals over the whole date and the cursor of the next page. */
export async function previewDueCharges(
  deps: OpsDeps,
  date: IsoDate,
  page: { limit: number; cursor?: string },
) {
  const after = page.cursor === undefined ? null : decodePreviewCursor(page.cursor);
  const [rows, totals] = await Promise.all([
    findDuePreviewPage(deps.pool, date, after, page.limit, deps.config.gateway.keyRetentionHours),
    sumDuePreview(deps.pool, date, deps.config.gateway.keyRetentionHours),
  ]);
  const last = rows.at(-1);
  return {
    ...totals,
    cobrancas: rows.map((row) =>
      previewOf(row, planDateOf(deps, date), deps.config.billing.backbillMissedCycles),
    ),
    nextCursor: rows.length === page.limit && last !== undefined ? encodePreviewCursor(last) : null,
  };
}

/** How many recurrences due by `date` the list leaves out because their pending attempt is blocked. */
export async function blockedDueCount(deps: OpsDeps, db: CommonQueryMethods, date: IsoDate): Promise<number> {
  return (await sumDuePreview(db, date, deps.config.gateway.keyRetentionHours)).bloqueadas;
}

/**
 * Every item, page by page (the command line prints the whole list), read through `db`: a repeatable-read
 * transaction gives the list and blockedDueCount one snapshot.
 */
export async function* allDueCharges(
  deps: OpsDeps,
  db: CommonQueryMethods,
  date: IsoDate,
  pageSize = 5_000,
): AsyncGenerator<PreviewItem> {
  let after: { date: IsoDate; id: number } | null = null;
  for (;;) {
    const rows = await findDuePreviewPage(db, date, after, pageSize, deps.config.gateway.keyRetentionHours);
    const planDate = planDateOf(deps, date);
    for (const row of rows) yield previewOf(row, planDate, deps.config.billing.backbillMissedCycles);
    const last = rows.at(-1);
    if (last === undefined || rows.length < pageSize) return;
    after = { date: last.proxima_cobranca, id: last.id };
  }
}

/**
 * What a real run of `task` for `date` would meet before doing any of the dry run's work: the date's
 * successful run (a run without force answers already_succeeded) and the task's pause (a run is refused).
 */
export async function runObstacles(db: CommonQueryMethods, task: PeriodicTaskName, date: IsoDate) {
  const [succeededRun, pause] = await Promise.all([
    findLatestTaskRun(db, task, date, 'sucesso'),
    findPause(db, task),
  ]);
  return {
    succeededRun,
    paused: pause === null ? null : describePause(pause),
  };
}

/**
 * A task's dry run for a date (default today): for processar_recorrencias_do_dia the list above, for the
 * other tasks their counts (PeriodicTask.dryRun), each with runObstacles. Reads only.
 */
export async function dryRunTask(
  deps: OpsDeps,
  name: string,
  request: { date?: IsoDate; limit: number; cursor?: string },
) {
  const task = requirePeriodicTask(name);
  const date = request.date ?? businessDate(deps.now(), deps.config.timeZone);
  const obstacles = await runObstacles(deps.pool, task, date);
  if (task === 'processar_recorrencias_do_dia') {
    return {
      status: 'dry_run' as const,
      task,
      date,
      ...obstacles,
      ...(await previewDueCharges(deps, date, request)),
    };
  }
  return {
    status: 'dry_run' as const,
    task,
    date,
    ...obstacles,
    counts: await PERIODIC_TASK_DEFINITIONS[task].dryRun({ ...deps, date }),
  };
}
