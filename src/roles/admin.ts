// `admin`: the Fastify admin server. Listens on ADMIN_HOST:ADMIN_PORT and logs where.
import { buildAdminApp } from '../http/app.ts';
import type { Running } from '../lifecycle.ts';
import { connectToMigratedDatabase } from './connect.ts';
import type { RoleContext } from './context.ts';

export type AdminRunning = Running & { url: string };

export async function startAdmin(ctx: RoleContext): Promise<AdminRunning> {
  const { config, log } = ctx;
  const pool = await connectToMigratedDatabase(ctx, 'admin');
  const app = await buildAdminApp({ config, log, pool });
  let address: string;
  try {
    address = await app.listen({ host: config.admin.host, port: config.admin.port });
  } catch (error) {
    await pool.end();
    throw error;
  }
  log.info(
    { url: address, auth: config.admin.tokens.length > 0 ? 'bearer' : 'none (development, localhost only)' },
    'admin server listening',
  );
  return {
    url: address,
    stop: async () => {
      await app.close();
      await pool.end();
    },
  };
}
