// limpar_recorrencias_antigas (Sunday 02:00): archives recurrences ended more than ARCHIVE_AFTER_DAYS ago
// (default 180), with their attempts and skipped cycles, in bounded batches of one transaction each; then
// prunes delivered checkout events (EVENT_RETENTION_DAYS), delivered seller notices (NOTICE_RETENTION_DAYS)
// and old Idempotency-Keys (IDEMPOTENCY_KEY_RETENTION_DAYS).
// Nothing is deleted without being archived; nothing in use is touched. The archive is purged only by the
// explicit `purge-archive` command.
import { archiveEndedBatch, countArchivable, pruneIdempotencyKeys } from '../db/arquivo.ts';
import { pruneDeliveredOutbox } from '../db/outbox.ts';
import type { PeriodicTask, TaskRunContext } from './task.ts';

/** Prunes batch by batch until none is left, counting in the run's progress under `key`. */
async function pruneInBatches(ctx: TaskRunContext, key: string, prune: () => Promise<number>): Promise<void> {
  let total = 0;
  for (;;) {
    ctx.progress[key] = total;
    ctx.signal.throwIfAborted();
    const removed = await prune();
    total += removed;
    if (removed === 0) return;
  }
}

export const limparRecorrenciasAntigas: PeriodicTask = {
  name: 'limpar_recorrencias_antigas',
  description: 'Arquiva recorrências encerradas há mais de ARCHIVE_AFTER_DAYS dias, com suas tentativas.',
  run: async (ctx) => {
    const { afterDays, batchSize } = ctx.config.archive;
    // The run's progress itself: each batch commits on its own, and a run stopped midway records how far it got.
    const totals = Object.assign(ctx.progress, {
      recorrencias_arquivadas: 0,
      cobrancas_arquivadas: 0,
      ciclos_pulados_arquivados: 0,
      lotes: 0,
    });
    for (;;) {
      ctx.signal.throwIfAborted();
      const moved = await archiveEndedBatch(ctx.pool, afterDays, batchSize);
      totals.recorrencias_arquivadas += moved.recorrencias;
      totals.cobrancas_arquivadas += moved.cobrancas;
      totals.ciclos_pulados_arquivados += moved.ciclos_pulados;
      if (moved.recorrencias === 0) break;
      totals.lotes += 1;
      if (moved.recorrencias < batchSize) break;
    }
    // The auxiliary history has retentions of its own: delivered checkout events and seller notices, old
    // Idempotency-Keys.
    await pruneInBatches(ctx, 'eventos_checkout_removidos', () =>
      pruneDeliveredOutbox(ctx.pool, 'eventos_checkout', ctx.config.archive.eventDays, batchSize),
    );
    await pruneInBatches(ctx, 'avisos_vendedores_removidos', () =>
      pruneDeliveredOutbox(ctx.pool, 'avisos_vendedores', ctx.config.archive.noticeDays, batchSize),
    );
    await pruneInBatches(ctx, 'chaves_idempotencia_removidas', () =>
      pruneIdempotencyKeys(ctx.pool, ctx.config.archive.idempotencyKeyDays, batchSize),
    );
    return { ...ctx.progress };
  },
  dryRun: async (ctx) => ({
    recorrencias_a_arquivar: await countArchivable(ctx.pool, ctx.config.archive.afterDays),
  }),
};
