// What one-shot commands (run, seed, purge-archive, ...) share: a pool and a pg-boss instance that neither
// supervises nor schedules, opened on a migrated database and always closed afterwards; and the name their
// audit rows carry.
import { hostname, userInfo } from 'node:os';
import type { Actor } from '../ops/actor.ts';
import { createBoss } from '../queue/boss.ts';
import { connectToMigratedDatabase } from '../roles/connect.ts';
import type { RoleContext } from '../roles/context.ts';
import type { TaskDeps } from '../tasks/task.ts';

export async function withCommandDeps<T>(ctx: RoleContext, work: (deps: TaskDeps) => Promise<T>): Promise<T> {
  const pool = await connectToMigratedDatabase(ctx, 'cli');
  const boss = createBoss(ctx.config, ctx.databaseUrl, 'cli', ctx.log);
  try {
    await boss.start();
    return await work({ config: ctx.config, pool, boss, log: ctx.log, now: () => new Date() });
  } finally {
    await boss.stop({ graceful: false, close: true }).catch(() => undefined);
    await pool.end();
  }
}

/** Who runs a command, for audit rows: `cli:<operating-system user>`, from `cli:<host>`. */
export function commandLineActor(): Actor {
  let name = 'cli';
  try {
    name = `cli:${userInfo().username}`;
  } catch {
    // A user id with no passwd entry (some containers): the host still says where the command ran.
  }
  return { name, requestId: null, source: `cli:${hostname()}` };
}
