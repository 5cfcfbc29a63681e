// `all`: every long-running role in one process, for development and small installs. Stops in reverse order:
// the scheduler first (no new ticks), then the worker (in-flight jobs finish), then the admin server.
import { stopAll, type Running } from '../lifecycle.ts';
import { startAdmin, type AdminRunning } from './admin.ts';
import type { RoleContext } from './context.ts';
import { startScheduler } from './scheduler.ts';
import { startWorker } from './worker.ts';

export async function startAll(ctx: RoleContext): Promise<Running & { adminUrl: string }> {
  const parts: Array<[string, Running]> = [];
  const started = stopAll(ctx.log, parts);
  try {
    const admin: AdminRunning = await startAdmin({ ...ctx, log: ctx.log.child({ role: 'admin' }) });
    parts.push(['admin', admin]);
    parts.push(['worker', await startWorker({ ...ctx, log: ctx.log.child({ role: 'worker' }) })]);
    parts.push(['scheduler', await startScheduler({ ...ctx, log: ctx.log.child({ role: 'scheduler' }) })]);
    return { stop: () => started.stop(), adminUrl: admin.url };
  } catch (error) {
    await started.stop();
    throw error;
  }
}
