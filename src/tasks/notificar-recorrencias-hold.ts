// TEMPORARY (replaced by the charging engine): notificar_recorrencias_hold.
import type { PeriodicTask } from './task.ts';

export const notificarRecorrenciasHold: PeriodicTask = {
  name: 'notificar_recorrencias_hold',
  description: 'notificar_recorrencias_hold',
  run: async () => {
    throw new Error('not implemented yet');
  },
};
