// The equivalents of `celery inspect registered / scheduled / active`, for the admin API and the CLI:
// the queues with their options, pause state and the worker instances serving them; the schedules with
// their next and last runs; jobs by state.
import { listJobs, type JobCursor, type JobState, type JobSummary } from '../db/jobs.ts';
import { describePause, listPauses } from '../db/pauses.ts';
import { listLastRuns, type LastRun } from '../db/task-runs.ts';
import { businessDate } from '../domain/dates.ts';
import { PERIODIC_TASKS } from '../queue/task-names.ts';
import { catalog, cronOf, type QueueKind } from './catalog.ts';
import type { OpsDeps } from './deps.ts';

export type WorkerView = {
  instance: string;
  host: string;
  pid: number;
  localConcurrency: number;
  batchSize: number;
  active: number;
};

export type RegisteredTask = {
  name: string;
  kind: QueueKind;
  description: string;
  schedule: { cron: string; timeZone: string } | null;
  limits: { hardSeconds: number | null; softSeconds: number | null; heartbeatSeconds: number | null };
  retries: {
    limit: number;
    delaySeconds: number;
    backoff: boolean;
    maxDelaySeconds: number | null;
    deadLetter: string | null;
  };
  paused: { since: string; by: string; reason: string | null } | null;
  workers: WorkerView[];
};

export async function registeredTasks(deps: OpsDeps): Promise<RegisteredTask[]> {
  const [queues, pauses, instances] = await Promise.all([
    deps.boss.getQueues(),
    listPauses(deps.pool),
    deps.boss.getInstances(),
  ]);
  const live = instances.filter((instance) => instance.live);
  return catalog().map((entry) => {
    const queue = queues.find((q) => q.name === entry.name);
    const pause = pauses.find((p) => p.fila === entry.name);
    const cron = cronOf(deps.config, entry.name);
    return {
      name: entry.name,
      kind: entry.kind,
      description: entry.description,
      schedule: cron === null ? null : { cron, timeZone: deps.config.timeZone },
      limits: {
        hardSeconds: queue?.expireInSeconds ?? null,
        softSeconds: entry.kind === 'periodic' ? deps.config.tasks.softLimitSeconds : null,
        heartbeatSeconds: queue?.heartbeatSeconds ?? null,
      },
      retries: {
        limit: queue?.retryLimit ?? 0,
        delaySeconds: queue?.retryDelay ?? 0,
        backoff: queue?.retryBackoff ?? false,
        maxDelaySeconds: queue?.retryDelayMax ?? null,
        deadLetter: queue?.deadLetter ?? null,
      },
      paused: pause === undefined ? null : describePause(pause),
      workers: live.flatMap((instance) =>
        instance.workers
          .filter((worker) => worker.queue === entry.name)
          .map((worker) => ({
            instance: instance.name ?? instance.id,
            host: instance.host,
            pid: instance.pid,
            localConcurrency: worker.localConcurrency,
            batchSize: worker.batchSize,
            active: worker.active,
          })),
      ),
    };
  });
}

export type ScheduleView = {
  task: string;
  cron: string;
  timeZone: string;
  registered: boolean;
  paused: boolean;
  nextRuns: Array<{ local: string; utc: string }>;
  lastRun: LastRun | null;
};

function localTime(instant: Date, timeZone: string): string {
  const time = new Intl.DateTimeFormat('en-GB', {
    timeZone,
    hour: '2-digit',
    minute: '2-digit',
    hour12: false,
  }).format(instant);
  return `${businessDate(instant, timeZone)} ${time}`;
}

export async function schedules(deps: OpsDeps): Promise<ScheduleView[]> {
  const [rows, pauses, lastRuns] = await Promise.all([
    deps.boss.getSchedules(),
    listPauses(deps.pool),
    listLastRuns(deps.pool),
  ]);
  return PERIODIC_TASKS.map((task) => {
    const row = rows.find((schedule) => schedule.name === task);
    const cron = row?.cron ?? deps.config.cron[task];
    const timeZone = row?.timezone ?? deps.config.timeZone;
    const paused = pauses.some((pause) => pause.fila === task);
    return {
      task,
      cron,
      timeZone,
      registered: row !== undefined,
      paused,
      nextRuns: paused
        ? []
        : deps.boss
            .previewSchedule(cron, { tz: timeZone, count: 3 })
            .map((at) => ({ local: localTime(at, timeZone), utc: at.toISOString() })),
      lastRun: lastRuns.find((run) => run.tarefa === task) ?? null,
    };
  });
}

export async function jobsByState(
  deps: OpsDeps,
  filter: { state?: JobState; queue?: string; limit: number; after?: JobCursor },
): Promise<{ jobs: readonly JobSummary[]; nextCursor: string | null }> {
  const { jobs, last } = await listJobs(deps.pool, filter);
  return {
    jobs,
    nextCursor: jobs.length === filter.limit && last !== null ? encodeCursor(last) : null,
  };
}

export function encodeCursor(cursor: JobCursor): string {
  return Buffer.from(`${cursor.createdOn}|${cursor.id}`).toString('base64url');
}

/** ISO 8601 in UTC with 3 to 6 fractional digits (cursors from before microseconds carried 3). */
const CURSOR_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3,6}Z$/;

export function decodeCursor(value: string): JobCursor | null {
  const [createdOn, id] = Buffer.from(value, 'base64url').toString('utf8').split('|');
  if (createdOn === undefined || id === undefined) return null;
  // Date.parse rolls an impossible date over (02-30 -> 03-02): the date part must survive the round trip.
  const parsed = Date.parse(createdOn);
  if (!CURSOR_TIME.test(createdOn) || Number.isNaN(parsed)) return null;
  if (new Date(parsed).toISOString().slice(0, 10) !== createdOn.slice(0, 10)) return null;
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) return null;
  return { createdOn, id };
}
