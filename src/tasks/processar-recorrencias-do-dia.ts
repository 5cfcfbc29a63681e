// TEMPORARY (replaced by the charging engine): processar_recorrencias_do_dia.
import type { PeriodicTask } from './task.ts';

export const processarRecorrenciasDoDia: PeriodicTask = {
  name: 'processar_recorrencias_do_dia',
  description: 'processar_recorrencias_do_dia',
  run: async () => {
    throw new Error('not implemented yet');
  },
};
