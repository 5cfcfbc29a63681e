// `all`: every long-running role in one process, for development and small installs. Stops in reverse order:
// the scheduler first (no new ticks), then the worker (in-flight jobs finish), then the admin server.
import type { PaymentGateway } from '../gateway/gateway.ts';
import { stopAll, type Running } from '../lifecycle.ts';
import { startAdmin, type AdminRunning } from './admin.ts';
import type { RoleContext } from './context.ts';
import { startScheduler } from './scheduler.ts';
import { startWorker } from './worker.ts';

export async function startAll(
  ctx: RoleContext,
  options: { gateway?: PaymentGateway } = {},
): Promise<Running & { adminUrl: string }> {
  const parts: Array<[string, Running]> = [];
  const started = stopAll(ctx.log, parts);
  try {
    const admin: AdminRunning = await startAdmin({ ...ctx, log: ctx.log.child({ component: 'admin' }) });
    parts.push(['admin', admin]);
    parts.push([
      'worker',
      await startWorker({ ...ctx, log: ctx.log.child({ component: 'worker' }) }, options),
    ]);
    parts.push([
      'scheduler',
      await startScheduler({ ...ctx, log: ctx.log.child({ component: 'scheduler' }) }),
    ]);
    return { stop: () => started.stop(), adminUrl: admin.url };
  } catch (error) {
    await started.stop();
    throw error;
  }
}
