// How many more connections Postgres would grant this service's login right now: the server's
// max_connections (less the slots reserved for superusers), the role's and the database's CONNECTION LIMIT,
// each less the sessions already counted against it. A worker holds its pool from start-up and waits while
// Postgres refuses it, so `check` compares this with what one more worker needs.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const BudgetRow = z.object({
  max_connections: z.number(),
  reserved: z.number(),
  superuser: z.boolean(),
  role_limit: z.number(),
  database_limit: z.number(),
  server_used: z.number(),
  role_used: z.number(),
  database_used: z.number(),
});

export type ConnectionLimit = { limit: 'server' | 'role' | 'database'; allowed: number; used: number };

export type ConnectionBudget = {
  /** The limits that apply to this login (superusers are exempt from the role and database limits). */
  limits: ConnectionLimit[];
  /** Connections still grantable under the tightest limit. */
  free: number;
};

export async function connectionBudget(db: CommonQueryMethods): Promise<ConnectionBudget> {
  // reserved_connections exists from Postgres 16 on (slots for pg_use_reserved_connections); missing_ok.
  const row = await db.one(sql.type(BudgetRow)`
    SELECT current_setting('max_connections')::int AS max_connections,
           current_setting('superuser_reserved_connections')::int
             + coalesce(nullif(current_setting('reserved_connections', true), ''), '0')::int AS reserved,
           r.rolsuper AS superuser,
           r.rolconnlimit AS role_limit,
           d.datconnlimit AS database_limit,
           (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS server_used,
           (SELECT count(*)::int FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND usename = current_user) AS role_used,
           (SELECT count(*)::int FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND datname = current_database()) AS database_used
    FROM pg_roles r, pg_database d
    WHERE r.rolname = current_user AND d.datname = current_database()`);
  const limits: ConnectionLimit[] = [
    {
      limit: 'server',
      allowed: row.superuser ? row.max_connections : row.max_connections - row.reserved,
      used: row.server_used,
    },
  ];
  if (!row.superuser && row.role_limit >= 0) {
    limits.push({ limit: 'role', allowed: row.role_limit, used: row.role_used });
  }
  if (!row.superuser && row.database_limit >= 0) {
    limits.push({ limit: 'database', allowed: row.database_limit, used: row.database_used });
  }
  const free = Math.max(0, Math.min(...limits.map((limit) => limit.allowed - limit.used)));
  return { limits, free };
}
