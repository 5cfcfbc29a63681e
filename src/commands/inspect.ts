// `inspect active|scheduled|registered [--json]` and `stats [--date D] [--json]`: the `celery inspect`
// equivalents and the seed's recurrence counts, from the same functions the admin API serves.
import { parseArgs } from 'node:util';
import { recurrenceStats } from '../db/stats.ts';
import { businessDate, isoDate } from '../domain/dates.ts';
import { AppError } from '../errors.ts';
import { jobsByState, registeredTasks, schedules } from '../ops/inspect.ts';
import type { RoleContext } from '../roles/context.ts';
import { withCommandDeps } from './command-deps.ts';
import { print, printJson, table } from './print.ts';

const WHAT = ['active', 'scheduled', 'registered'] as const;

export async function inspectCommand(ctx: RoleContext, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: { json: { type: 'boolean', default: false } },
  });
  const what = positionals[0];
  if (what === undefined || !(WHAT as readonly string[]).includes(what) || positionals.length > 1) {
    throw new AppError('INVALID_INPUT', `inspect ${WHAT.join('|')} [--json]`);
  }
  await withCommandDeps(ctx, async (deps) => {
    if (what === 'active') {
      const { jobs } = await jobsByState(deps, { state: 'active', limit: 500 });
      if (values.json) return printJson(jobs);
      print(table([...jobs], ['id', 'queue', 'started_on', 'retry_count', 'data']));
      return print(`${jobs.length} active job(s)`);
    }
    if (what === 'scheduled') {
      const rows = await schedules(deps);
      if (values.json) return printJson(rows);
      return print(
        table(
          rows.map((row) => ({
            task: row.task,
            cron: row.cron,
            timeZone: row.timeZone,
            state: row.paused ? 'paused' : row.registered ? 'registered' : 'NOT REGISTERED',
            next: row.nextRuns[0]?.local ?? '-',
            nextUtc: row.nextRuns[0]?.utc ?? '-',
            lastRun:
              row.lastRun === null
                ? '-'
                : `${row.lastRun.data_negocio} ${row.lastRun.status}${processEnded(row.lastRun)}`,
          })),
          ['task', 'cron', 'timeZone', 'state', 'next', 'nextUtc', 'lastRun'],
        ),
      );
    }
    const tasks = await registeredTasks(deps);
    if (values.json) return printJson(tasks);
    print(
      table(
        tasks.map((task) => ({
          name: task.name,
          kind: task.kind,
          schedule: task.schedule?.cron ?? '-',
          hardLimit: task.limits.hardSeconds,
          retries: task.retries.limit,
          paused: task.paused === null ? 'no' : `yes (${task.paused.by})`,
          workers: task.workers.length,
        })),
        ['name', 'kind', 'schedule', 'hardLimit', 'retries', 'paused', 'workers'],
      ),
    );
  });
  return 0;
}

export async function statsCommand(ctx: RoleContext, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: { date: { type: 'string' }, json: { type: 'boolean', default: false } },
  });
  const date = isoDate.safeParse(values.date ?? businessDate(new Date(), ctx.config.timeZone));
  if (!date.success) throw new AppError('INVALID_INPUT', '--date must be YYYY-MM-DD');
  await withCommandDeps(ctx, async (deps) => {
    const stats = await recurrenceStats(deps.pool, date.data);
    if (values.json) return printJson(stats);
    print(`business date ${stats.data_negocio}`);
    print(
      table(
        Object.entries(stats.por_status).map(([status, count]) => ({ status, count })),
        ['status', 'count'],
      ),
    );
    print(
      `due on the date: ${stats.devidas_na_data}   on hold: ${stats.em_hold}   waiting for retry: ${stats.aguardando_retentativa}`,
    );
    print(
      table(
        Object.entries(stats.tentativas_na_data).map(([status, totals]) => ({
          attempts: status,
          count: totals.quantidade,
          cents: totals.valor_centavos,
        })),
        ['attempts', 'count', 'cents'],
      ),
    );
  });
  return 0;
}

/**
 * A run left 'executando' by a process that ended (a crash, a forced stop) is not running: said so. Only a run
 * of that task and date redoes it (the scheduled ones are for later dates).
 */
function processEnded(run: { status: string; running: boolean; data_negocio: string }): string {
  return run.status === 'executando' && !run.running
    ? ` (its process ended; run it again for ${run.data_negocio})`
    : '';
}
