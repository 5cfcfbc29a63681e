// retentar_cobrancas_falhadas (10:00): one charge job for every active recurrence whose retry date has come
// (after a reversible decline). The charge creates a new attempt number, so a new idempotency key.
import { countChargeable } from '../db/recorrencias.ts';
import { fanOutCharges } from './charge/fan-out.ts';
import type { PeriodicTask } from './task.ts';

export const retentarCobrancasFalhadas: PeriodicTask = {
  name: 'retentar_cobrancas_falhadas',
  description: 'Enfileira a retentativa das recorrências recusadas cuja data de retentativa chegou.',
  run: (ctx) => fanOutCharges(ctx, 'retry', 'retentativa'),
  dryRun: async (ctx) => ({ retentativas_a_enfileirar: await countChargeable(ctx.pool, 'retry', ctx.date) }),
};
