// The morning fan-out shared by processar_recorrencias_do_dia and retentar_cobrancas_falhadas: pages through
// the recurrences to charge on the business date and enqueues one charge job each, in bulk.
import { findChargeablePage, type ChargeableCursor } from '../../db/recorrencias.ts';
import type { TaskCounts, TaskRunContext } from '../task.ts';
import { dueCharge, enqueueChargeJobs, type ChargeJobPayload } from './charge-jobs.ts';
import { crashPoint } from './test-hooks.ts';

const PAGE_SIZE = 5_000;

export async function fanOutCharges(
  ctx: TaskRunContext,
  kind: 'due' | 'retry',
  reason: ChargeJobPayload['motivo'],
): Promise<TaskCounts> {
  let cursor: ChargeableCursor = null;
  let found = 0;
  let enqueued = 0;
  for (;;) {
    ctx.signal.throwIfAborted();
    const page = await findChargeablePage(ctx.pool, kind, ctx.date, cursor, PAGE_SIZE);
    if (page.length === 0) break;
    enqueued += await enqueueChargeJobs(
      ctx.boss,
      page.map((row) => dueCharge(row.id, ctx.date, reason)),
    );
    found += page.length;
    crashPoint('fanout_after_page');
    const last = page[page.length - 1] as (typeof page)[number];
    cursor = { date: last.data, id: last.id };
  }
  // A job already present (same recurrence, date and reason) is not enqueued again.
  return { encontradas: found, enfileiradas: enqueued, ja_enfileiradas: found - enqueued };
}
