// TEMPORARY (replaced by the charging engine): retentar_cobrancas_falhadas.
import type { PeriodicTask } from './task.ts';

export const retentarCobrancasFalhadas: PeriodicTask = {
  name: 'retentar_cobrancas_falhadas',
  description: 'retentar_cobrancas_falhadas',
  run: async () => {
    throw new Error('not implemented yet');
  },
};
