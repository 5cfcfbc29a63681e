// The queues this service owns, as operators see them: the four periodic tasks (with their schedules) and
// the work queues. Pausing applies to any of them; the dead-letter queue only holds jobs for inspection.
import type { Config } from '../config.ts';
import {
  CHARGE_DEAD_LETTER_QUEUE,
  CHARGE_QUEUE,
  CHECKOUT_EVENT_QUEUE,
  NOTICE_DELIVERY_QUEUE,
  PERIODIC_TASKS,
  isPeriodicTask,
} from '../queue/task-names.ts';
import { PERIODIC_TASK_DEFINITIONS } from '../tasks/registry.ts';

export type QueueKind = 'periodic' | 'work' | 'dead_letter';

export type CatalogEntry = { name: string; kind: QueueKind; description: string; pausable: boolean };

export function catalog(): CatalogEntry[] {
  return [
    ...PERIODIC_TASKS.map((name) => ({
      name,
      kind: 'periodic' as const,
      description: PERIODIC_TASK_DEFINITIONS[name].description,
      pausable: true,
    })),
    {
      name: CHARGE_QUEUE,
      kind: 'work',
      description: 'Uma cobrança por recorrência, data de negócio e motivo.',
      pausable: true,
    },
    {
      name: NOTICE_DELIVERY_QUEUE,
      kind: 'work',
      description: 'Entrega de avisos aos vendedores.',
      pausable: true,
    },
    {
      name: CHECKOUT_EVENT_QUEUE,
      kind: 'work',
      description: 'Entrega de eventos ao checkout (cobranças, holds, conclusões).',
      pausable: true,
    },
    {
      name: CHARGE_DEAD_LETTER_QUEUE,
      kind: 'dead_letter',
      description:
        'Cobranças que esperam um operador: retentativas esgotadas, pedido recusado pelo gateway, aprovação que não pôde ser registrada ou payload inválido.',
      pausable: false,
    },
  ];
}

export function findInCatalog(name: string): CatalogEntry | undefined {
  return catalog().find((entry) => entry.name === name);
}

export function cronOf(config: Config, name: string): string | null {
  return isPeriodicTask(name) ? config.cron[name] : null;
}
