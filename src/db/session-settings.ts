// The session settings the code relies on, checked when a role connects: dates arrive as ISO text only under
// DateStyle ISO (the default, which a role or database setting can change).
import { ConfigError } from '../config.ts';
import type { SqlRunner } from './raw-query.ts';
import { DATESTYLE_FIX } from './pool.ts';

/** What is wrong with this connection's settings, or null when nothing is. */
export async function sessionSettingsProblem(run: SqlRunner): Promise<string | null> {
  // pg_settings' source says who set it (database, user, ...): the fix must go where it was set.
  const [row] = await run(`SELECT setting, source FROM pg_settings WHERE name = 'DateStyle'`);
  const dateStyle = typeof row?.setting === 'string' ? row.setting : '';
  const source = typeof row?.source === 'string' ? row.source : 'unknown';
  return dateStyle.startsWith('ISO')
    ? null
    : `Postgres DateStyle is '${dateStyle}' (set by: ${source}): dates would be misread; set it to ISO (${DATESTYLE_FIX})`;
}

/** Refuses to go on (a ConfigError: exit 2) when this connection's settings would make the code misread data. */
export async function assertSessionSettings(run: SqlRunner): Promise<void> {
  const problem = await sessionSettingsProblem(run);
  if (problem !== null) throw new ConfigError([problem]);
}
