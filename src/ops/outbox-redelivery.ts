// Sends a seller notice or a checkout event again, by hand: for an entry whose deliveries gave up (`falhou`)
// after its job was deleted (past JOB_HISTORY_RETENTION_DAYS, so `POST /jobs/:id/retry` no longer finds it),
// one left `pendente` with no live job (its worker died on the last attempt), or one only recorded
// (`registrado`) before the webhook was configured. The receiver dedupes on the entry's event id, so a second
// delivery is harmless.
import { randomUUID } from 'node:crypto';
import { findLiveDeliveryJob, lockOutboxEntry, markOutboxPending, type OutboxTable } from '../db/outbox.ts';
import { insertAudit } from '../db/pauses.ts';
import { AppError } from '../errors.ts';
import { bossDb } from '../queue/boss-executor.ts';
import { CHECKOUT_EVENT_QUEUE, NOTICE_DELIVERY_QUEUE } from '../queue/task-names.ts';
import type { OpsDeps } from './deps.ts';
import type { Actor } from './actor.ts';

const DELIVERY = {
  avisos_vendedores: { queue: NOTICE_DELIVERY_QUEUE, idField: 'avisoId' },
  eventos_checkout: { queue: CHECKOUT_EVENT_QUEUE, idField: 'eventoId' },
} as const satisfies Record<OutboxTable, { queue: string; idField: string }>;

export async function redeliverOutboxEntry(
  deps: OpsDeps,
  who: Actor,
  table: OutboxTable,
  id: number,
): Promise<{ id: number; jobId: string }> {
  const { queue, idField } = DELIVERY[table];
  const jobId = randomUUID();
  await deps.pool.transaction(async (tx) => {
    const status = await lockOutboxEntry(tx, table, id);
    if (status === null) throw new AppError('NOT_FOUND', `no entry ${id} in ${table}`);
    if (status === 'enviado')
      throw new AppError('CONFLICT', `${table} ${id} was delivered already`, { details: { status } });
    const live = status === 'pendente' ? await findLiveDeliveryJob(tx, DELIVERY[table], id) : null;
    if (live !== null) {
      throw new AppError('CONFLICT', `${table} ${id} is pending: its delivery job ${live} is on it`, {
        details: { status, jobId: live },
      });
    }
    await markOutboxPending(tx, table, id);
    // A new job, committed with the status change: the old one may be gone, or kept as failed.
    await deps.boss.insert(queue, [{ id: jobId, data: { [idField]: id } }], { db: bossDb(tx) });
    await insertAudit(tx, {
      who,
      action: 'redeliver',
      target: `${table}:${id}`,
      details: { from: status, jobId },
    });
  });
  deps.log.info({ table, id, jobId, by: who }, 'outbox entry queued for delivery again');
  return { id, jobId };
}
