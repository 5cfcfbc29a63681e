// processar_recorrencias_do_dia (08:00): one charge job for every active recurrence due on or before the
// business date that is not waiting for a retry. Taking everything due *up to* the date is what catches up
// a day the service was down. Rerunning it enqueues nothing new (deterministic job ids).
import { countChargeable } from '../db/recorrencias.ts';
import { fanOutCharges } from './charge/fan-out.ts';
import type { PeriodicTask } from './task.ts';

export const processarRecorrenciasDoDia: PeriodicTask = {
  name: 'processar_recorrencias_do_dia',
  description: 'Enfileira uma cobrança para cada recorrência ativa devida até a data de negócio.',
  run: (ctx) => fanOutCharges(ctx, 'due', 'agendada'),
  dryRun: async (ctx) => ({ cobrancas_a_enfileirar: await countChargeable(ctx.pool, 'due', ctx.date) }),
};
