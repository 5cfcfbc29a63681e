// The periodic tasks this release registers, by their permanent names.
import type { PeriodicTaskName } from '../queue/task-names.ts';
import { limparRecorrenciasAntigas } from './limpar-recorrencias-antigas.ts';
import { notificarRecorrenciasHold } from './notificar-recorrencias-hold.ts';
import { processarRecorrenciasDoDia } from './processar-recorrencias-do-dia.ts';
import { retentarCobrancasFalhadas } from './retentar-cobrancas-falhadas.ts';
import type { PeriodicTask } from './task.ts';

export const PERIODIC_TASK_DEFINITIONS: Record<PeriodicTaskName, PeriodicTask> = {
  processar_recorrencias_do_dia: processarRecorrenciasDoDia,
  retentar_cobrancas_falhadas: retentarCobrancasFalhadas,
  notificar_recorrencias_hold: notificarRecorrenciasHold,
  limpar_recorrencias_antigas: limparRecorrenciasAntigas,
};
