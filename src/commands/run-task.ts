// `run <task> [--date YYYY-MM-DD [--allow-future-date]] [--force] [--dry-run [--csv]]`: runs a periodic task
// now, in this process, and prints its result (the equivalent of calling the Celery task from the Django
// shell). Same rules as a scheduled run: one run per task and date at a time, and a date that already
// succeeded is not rerun unless forced; a date after today only with --allow-future-date; a paused task not
// at all (resume it first). --dry-run runs nothing and prints what the task would do (the list of charges
// for processar_recorrencias_do_dia, as JSON or CSV).
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { insertAudit } from '../db/pauses.ts';
import { businessDate, isoDate } from '../domain/dates.ts';
import { AppError } from '../errors.ts';
import { refuseFutureRun, refusePausedTask } from '../ops/control.ts';
import { isPeriodicTask, PERIODIC_TASKS } from '../queue/task-names.ts';
import type { RoleContext } from '../roles/context.ts';
import { runPeriodicTask } from '../tasks/periodic-runner.ts';
import { PERIODIC_TASK_DEFINITIONS } from '../tasks/registry.ts';
import { commandLineActor, withCommandDeps } from './command-deps.ts';
import { printDryRun } from './dry-run.ts';

export function parseRunArgs(args: string[], timeZone: string, now: Date) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      date: { type: 'string' },
      force: { type: 'boolean', default: false },
      'allow-future-date': { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
      csv: { type: 'boolean', default: false },
    },
  });
  const [task] = positionals;
  if (task === undefined || !isPeriodicTask(task) || positionals.length > 1) {
    throw new AppError(
      'INVALID_INPUT',
      `run <task> [--date YYYY-MM-DD [--allow-future-date]] [--force] [--dry-run [--csv]]; tasks: ${PERIODIC_TASKS.join(', ')}`,
    );
  }
  const today = businessDate(now, timeZone);
  const parsed = isoDate.safeParse(values.date ?? today);
  if (!parsed.success) throw new AppError('INVALID_INPUT', `--date: ${z.prettifyError(parsed.error)}`);
  // A dry run charges nothing: previewing a later day is what it is for.
  if (!values['dry-run'])
    refuseFutureRun(parsed.data, today, values['allow-future-date'], '--allow-future-date');
  return { task, date: parsed.data, force: values.force, dryRun: values['dry-run'], csv: values.csv };
}

export async function runTaskCommand(ctx: RoleContext, args: string[]): Promise<number> {
  const { task, date, force, dryRun, csv } = parseRunArgs(args, ctx.config.timeZone, new Date());
  if (dryRun) {
    await withCommandDeps(ctx, (deps) => printDryRun(deps, task, date, csv, ctx.signal));
    return 0;
  }
  const outcome = await withCommandDeps(ctx, async (deps) => {
    await refusePausedTask(deps.pool, task);
    // Stopped while it connected: nothing began, nothing to audit.
    ctx.signal.throwIfAborted();
    // Audited before the run, as POST /tasks/:name/run is: a run that crashes half-way still says who began it.
    await insertAudit(deps.pool, {
      who: commandLineActor(),
      action: 'run_task',
      target: task,
      details: { date, force, via: 'command line' },
    });
    return runPeriodicTask(PERIODIC_TASK_DEFINITIONS[task], deps, {
      date,
      force,
      jobId: null,
      attempt: 1,
      signal: ctx.signal,
    });
  });
  process.stdout.write(`${JSON.stringify({ task, ...outcome }, null, 2)}\n`);
  return 0;
}
