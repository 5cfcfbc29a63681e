// The morning fan-out shared by processar_recorrencias_do_dia and retentar_cobrancas_falhadas: pages through
// the recurrences to charge on the business date and enqueues one charge job each, in bulk. Reading the next
// page overlaps with the inserts of the previous ones: the insert (a row and pg-boss's indexes per job) is the
// slow half, and several in flight keep both halves busy. Once the first page is in, the queue table's
// planner statistics are refreshed, so that workers fetch through the queue's index rather than sort the queue.
import { analyzeQueueTable, anyJobExists } from '../../db/jobs.ts';
import { findChargeablePage, type ChargeableCursor } from '../../db/recorrencias.ts';
import { CHARGE_QUEUE } from '../../queue/task-names.ts';
import type { TaskCounts, TaskRunContext } from '../task.ts';
import {
  chargeJobId,
  dueCharge,
  enqueueChargeJobs,
  legacyChargeJobId,
  type ChargeJobIdScheme,
  type ChargeJobPayload,
} from './charge-jobs.ts';
import { crashPoint } from './test-hooks.ts';

export const PAGE_SIZE = 5_000;
/**
 * Page inserts in flight at once, each on a connection of the app pool (DB_POOL_SIZE, at least 5), not of
 * pg-boss's small one, which the workers' fetch loops need meanwhile. At 08:00 the fan-out shares the cores
 * with workers already charging its first pages: with 2 in flight a million took 56-59 s on 2 cores, with 4
 * 48-50 s. Charges of the same process may wait for a connection while the fan-out lasts.
 */
export const INSERTS_IN_FLIGHT = 4;

/** The charge queue's statistics, refreshed once per run; a failure costs speed only, so it is logged, not thrown. */
async function refreshStatistics(ctx: TaskRunContext): Promise<void> {
  try {
    await analyzeQueueTable(ctx.pool, CHARGE_QUEUE);
  } catch (error) {
    ctx.log.warn({ err: error, queue: CHARGE_QUEUE }, 'could not refresh the charge queue statistics');
  }
}

/**
 * The ids this run enqueues with, chosen on its first page: the earlier release's, when that page is already
 * enqueued under them (a run the previous release began, resumed after an upgrade), so that the run does not
 * enqueue those recurrences a second time; otherwise the sortable ones. The first page stands for the date:
 * the earlier release enqueued in the same order. It misses a run of it whose first page failed while its
 * second committed; those recurrences then get a second job, which finds its cycle charged or in flight.
 */
async function idSchemeFor(ctx: TaskRunContext, firstPage: ChargeJobPayload[]): Promise<ChargeJobIdScheme> {
  if (!(await anyJobExists(ctx.pool, CHARGE_QUEUE, firstPage.map(legacyChargeJobId)))) return chargeJobId;
  ctx.log.info(
    { date: ctx.date },
    "this date's charge jobs were begun by an earlier release: going on with its job ids",
  );
  return legacyChargeJobId;
}

export async function fanOutCharges(
  ctx: TaskRunContext,
  kind: 'due' | 'retry',
  reason: ChargeJobPayload['motivo'],
): Promise<TaskCounts> {
  let cursor: ChargeableCursor = null;
  let found = 0;
  let enqueued = 0;
  const inFlight = new Set<Promise<void>>();
  const failures: unknown[] = [];
  let analyzed = false;
  // A job already present (same recurrence, date and reason) is not enqueued again.
  const counts = (): TaskCounts => ({
    encontradas: found,
    enfileiradas: enqueued,
    ja_enfileiradas: found - enqueued,
  });
  let idOf: ChargeJobIdScheme | undefined;
  const insertPage = (payloads: ChargeJobPayload[], scheme: ChargeJobIdScheme) => {
    const insert: Promise<void> = enqueueChargeJobs(ctx.boss, payloads, { idOf: scheme, db: ctx.pool })
      .then(
        async (count) => {
          // Counted once inserted: a run that fails or stops records only the pages that made it.
          found += payloads.length;
          enqueued += count;
          Object.assign(ctx.progress, counts());
          crashPoint('fanout_after_page');
          if (analyzed || count === 0) return;
          analyzed = true;
          await refreshStatistics(ctx);
        },
        (error: unknown) => {
          failures.push(error);
        },
      )
      .finally(() => inFlight.delete(insert));
    inFlight.add(insert);
  };
  try {
    while (failures.length === 0) {
      ctx.signal.throwIfAborted();
      const page = await findChargeablePage(ctx.pool, kind, ctx.date, cursor, PAGE_SIZE);
      if (page.length === 0) break;
      const payloads = page.map((row) => dueCharge(row.id, ctx.date, reason));
      idOf ??= await idSchemeFor(ctx, payloads);
      if (inFlight.size >= INSERTS_IN_FLIGHT) await Promise.race(inFlight);
      // A stop asked for while waiting leaves this page out: the run records how far it got.
      ctx.signal.throwIfAborted();
      insertPage(payloads, idOf);
      const last = page[page.length - 1] as (typeof page)[number];
      cursor = { date: last.data, id: last.id };
    }
  } finally {
    // Every insert settles before the task ends, however it ends: a job inserted after the run was recorded
    // as over would be missing from its counts.
    await Promise.all(inFlight);
  }
  if (failures.length > 0) throw failures[0];
  return counts();
}
