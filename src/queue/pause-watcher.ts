// Makes a worker honour pauses (tarefas_pausadas) within a second: it stops taking a paused queue's jobs
// (jobs already running finish) and starts again on resume. A worker that starts while a queue is paused
// never takes its jobs. If the database cannot be read, the current state is kept and the error logged.
import type { PgBoss } from 'pg-boss';
import type { DatabasePool } from '../db/pool.ts';
import { listPauses } from '../db/pauses.ts';
import type { Logger } from '../log.ts';

export type QueueRegistration = { queue: string; register: () => Promise<void> };

const POLL_MS = 1_000;

export async function startPauseWatcher(
  boss: PgBoss,
  pool: DatabasePool,
  log: Logger,
  registrations: QueueRegistration[],
): Promise<{ stop(): void; working(): string[] }> {
  const working = new Set<string>();
  let syncing = false;
  const sync = async () => {
    if (syncing) return;
    syncing = true;
    try {
      const paused = new Set((await listPauses(pool)).map((pause) => pause.fila));
      for (const { queue, register } of registrations) {
        if (paused.has(queue) && working.has(queue)) {
          await boss.offWork(queue, { wait: false });
          working.delete(queue);
          log.warn({ queue }, 'queue paused: no longer taking its jobs');
        } else if (!paused.has(queue) && !working.has(queue)) {
          await register();
          working.add(queue);
          log.info({ queue }, 'taking jobs');
        }
      }
    } finally {
      syncing = false;
    }
  };
  await sync();
  const timer = setInterval(() => {
    sync().catch((error: unknown) =>
      log.error({ err: error }, 'could not read paused queues: keeping the current state'),
    );
  }, POLL_MS);
  timer.unref();
  return { stop: () => clearInterval(timer), working: () => [...working] };
}
