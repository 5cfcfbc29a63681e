// The session settings the code relies on, checked when a role connects: dates arrive as ISO text only under
// DateStyle ISO (the default, which a role or database setting can change).
import type { SqlRunner } from './raw-query.ts';
import { DATESTYLE_FIX } from './pool.ts';

/** What is wrong with this connection's settings, or null when nothing is. */
export async function sessionSettingsProblem(run: SqlRunner): Promise<string | null> {
  const [row] = await run('SELECT current_setting($1) AS datestyle', ['DateStyle']);
  const dateStyle = typeof row?.datestyle === 'string' ? row.datestyle : '';
  return dateStyle.startsWith('ISO')
    ? null
    : `Postgres DateStyle is '${dateStyle}': dates would be misread; set it to ISO (${DATESTYLE_FIX})`;
}
