// `admin`: the Fastify admin server. Listens on ADMIN_HOST:ADMIN_PORT and logs where. Its pg-boss instance
// neither supervises nor schedules: it only reads state and sends jobs (run now, retry).
import { buildAdminApp } from '../http/app.ts';
import type { Running } from '../lifecycle.ts';
import { createBoss } from '../queue/boss.ts';
import { connectToMigratedDatabase } from './connect.ts';
import type { RoleContext } from './context.ts';

export type AdminRunning = Running & { url: string };

export async function startAdmin(ctx: RoleContext): Promise<AdminRunning> {
  const { config, log } = ctx;
  const pool = await connectToMigratedDatabase(ctx, 'admin');
  const boss = createBoss(config, ctx.databaseUrl, 'admin', log);
  let address: string;
  let app;
  try {
    await boss.start();
    app = await buildAdminApp({ config, log, pool, boss, now: () => new Date() });
    address = await app.listen({ host: config.admin.host, port: config.admin.port });
  } catch (error) {
    await boss.stop({ graceful: false }).catch(() => undefined);
    await pool.end();
    throw error;
  }
  const server = app;
  log.info(
    { url: address, auth: config.admin.tokens.length > 0 ? 'bearer' : 'none (development, localhost only)' },
    'admin server listening',
  );
  return {
    url: address,
    stop: async () => {
      await server.close();
      await boss.stop({ graceful: true, timeout: 10_000 });
      await pool.end();
    },
  };
}
