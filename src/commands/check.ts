// `check [--json]`: prints the deployment checklist and exits non-zero when any check fails.
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createDbPool } from '../db/pool.ts';
import { runnerFor } from '../db/raw-query.ts';
import { checkSchema } from '../db/schema-check.ts';
import { sessionSettingsProblem } from '../db/session-settings.ts';
import { businessDate } from '../domain/dates.ts';
import { runChecks, type CheckResult } from '../ops/check.ts';
import type { RoleContext } from '../roles/context.ts';
import { withCommandDeps } from './command-deps.ts';
import { print, printJson } from './print.ts';

const MARK = { ok: '✓', warning: '!', failed: '✗' } as const;

async function databaseChecks(url: string): Promise<CheckResult[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const version = (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]
      ?.server_version;
    const reachable: CheckResult = {
      name: 'database reachable',
      status: 'ok',
      detail: `PostgreSQL ${version}`,
    };
    const pool = await createDbPool(url, { maxConnections: 1, applicationName: 'recorrencias:check' });
    try {
      const settings = await sessionSettingsProblem(runnerFor(pool));
      const state = await checkSchema(runnerFor(pool));
      return [
        reachable,
        settings === null
          ? { name: 'session settings', status: 'ok', detail: 'DateStyle ISO' }
          : { name: 'session settings', status: 'failed', detail: settings },
        state.ok
          ? { name: 'migrations current', status: 'ok', detail: 'sql/ and pg-boss schema up to date' }
          : {
              name: 'migrations current',
              status: 'failed',
              detail: `${state.reason}: run \`node dist/main.js migrate\``,
            },
      ];
    } finally {
      await pool.end();
    }
  } catch (error) {
    return [{ name: 'database reachable', status: 'failed', detail: (error as Error).message }];
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function checkCommand(ctx: RoleContext, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: { json: { type: 'boolean', default: false } },
  });
  const results = await databaseChecks(ctx.databaseUrl);
  if (results.every((result) => result.status === 'ok')) {
    results.push(...(await withCommandDeps(ctx, (deps) => runChecks(deps))));
  }
  const failed = results.filter((result) => result.status === 'failed').length;
  const warnings = results.filter((result) => result.status === 'warning').length;
  if (values.json) {
    printJson({ ok: failed === 0, results });
  } else {
    print(
      `recorrencias check — business date ${businessDate(new Date(), ctx.config.timeZone)} (${ctx.config.timeZone})`,
    );
    for (const result of results) print(`${MARK[result.status]} ${result.name}: ${result.detail}`);
    print(
      failed === 0
        ? `all checks passed${warnings > 0 ? ` (${warnings} warning(s))` : ''}`
        : `${failed} check(s) FAILED`,
    );
  }
  return failed === 0 ? 0 : 1;
}
