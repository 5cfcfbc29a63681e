// The start-up sequence every database role shares: wait for Postgres, open the pool (a worker opens all of
// its connections here), refuse to run with session settings the code cannot work with (DateStyle) or on a
// database that is not migrated for this release.
import { createDbPool, type DatabasePool } from '../db/pool.ts';
import { runnerFor } from '../db/raw-query.ts';
import { assertSchemaCurrent } from '../db/schema-check.ts';
import { assertSessionSettings } from '../db/session-settings.ts';
import { waitForDatabase } from '../db/wait-for-database.ts';
import type { RoleContext } from './context.ts';

export async function connectToMigratedDatabase(
  ctx: RoleContext,
  role: string,
  options: { holdConnections?: boolean } = {},
): Promise<DatabasePool> {
  await waitForDatabase(ctx.databaseUrl, ctx.log, { signal: ctx.signal });
  const pool = await createDbPool(ctx.databaseUrl, {
    maxConnections: ctx.config.pools.app,
    applicationName: `recorrencias:${role}`,
    holdConnections: options.holdConnections,
  });
  try {
    await assertSessionSettings(runnerFor(pool));
    await assertSchemaCurrent(runnerFor(pool));
  } catch (error) {
    await pool.end();
    throw error;
  }
  return pool;
}
