// TEMPORARY (replaced by the charging engine): limpar_recorrencias_antigas.
import type { PeriodicTask } from './task.ts';

export const limparRecorrenciasAntigas: PeriodicTask = {
  name: 'limpar_recorrencias_antigas',
  description: 'limpar_recorrencias_antigas',
  run: async () => {
    throw new Error('not implemented yet');
  },
};
