// limpar_recorrencias_antigas (Sunday 02:00): archives recurrences ended more than ARCHIVE_AFTER_DAYS ago
// (default 180), with their attempts and skipped cycles, in bounded batches of one transaction each.
// Nothing is deleted without being archived; nothing in use is touched. The archive is purged only by the
// explicit `purge-archive` command.
import { archiveEndedBatch, countArchivable } from '../db/arquivo.ts';
import type { PeriodicTask } from './task.ts';

export const limparRecorrenciasAntigas: PeriodicTask = {
  name: 'limpar_recorrencias_antigas',
  description: 'Arquiva recorrências encerradas há mais de ARCHIVE_AFTER_DAYS dias, com suas tentativas.',
  run: async (ctx) => {
    const { afterDays, batchSize } = ctx.config.archive;
    const totals = {
      recorrencias_arquivadas: 0,
      cobrancas_arquivadas: 0,
      ciclos_pulados_arquivados: 0,
      lotes: 0,
    };
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
    return totals;
  },
  dryRun: async (ctx) => ({
    recorrencias_a_arquivar: await countArchivable(ctx.pool, ctx.config.archive.afterDays),
  }),
};
