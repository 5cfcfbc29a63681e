// A periodic task for the tests of the run lock: its run waits until the test releases it (or its signal
// aborts), counting the runs inside it at once; and the runner's dependencies for a database URL.
import type { Test } from 'tap';
import { loadConfig } from '../../src/config.ts';
import { createDbPool } from '../../src/db/pool.ts';
import type { Logger } from '../../src/log.ts';
import { createBoss } from '../../src/queue/boss.ts';
import { runPeriodicTask, type PeriodicOutcome } from '../../src/tasks/periodic-runner.ts';
import type { PeriodicTask, TaskDeps } from '../../src/tasks/task.ts';
import { silentLog } from './harness.ts';

export async function runnerDeps(
  t: Test,
  url: string,
  env: Record<string, string> = {},
  log: Logger = silentLog,
): Promise<TaskDeps> {
  const config = loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent', ...env });
  const pool = await createDbPool(url, { maxConnections: 4, applicationName: 'test' });
  t.teardown(() => pool.end());
  // Never started: the runner does not touch the queue.
  const boss = createBoss(config, url, 'cli', silentLog);
  return { config, pool, boss, log, now: () => new Date() };
}

/** `ignoreSignal`: the run goes on until released even when aborted, as a run stuck in one statement would. */
export function gatedTask(options: { ignoreSignal?: boolean } = {}) {
  let release = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  let entered = () => {};
  const firstEntered = new Promise<void>((resolve) => (entered = resolve));
  const state = { inside: 0, peakInside: 0 };
  const task: PeriodicTask = {
    name: 'limpar_recorrencias_antigas',
    description: 'waits for the test',
    async run({ signal }) {
      state.inside += 1;
      state.peakInside = Math.max(state.peakInside, state.inside);
      entered();
      try {
        await new Promise<void>((resolve, reject) => {
          if (options.ignoreSignal !== true)
            signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
          void gate.then(resolve);
        });
      } finally {
        state.inside -= 1;
      }
      return { feitas: 1 };
    },
    dryRun: async () => ({}),
  };
  return { task, state, release, firstEntered };
}

/** A run that should end at once; one still going after `ms` is reported as such instead of hanging the test. */
export async function returnsWithin<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A run for `date`; an `attempt` above 1 runs it as a task job's retry would. */
export function runOn(
  task: PeriodicTask,
  deps: TaskDeps,
  date: string,
  force = false,
  attempt = 1,
  jobId: string | null = null,
): Promise<PeriodicOutcome> {
  return runPeriodicTask(task, deps, {
    date,
    force,
    jobId,
    attempt,
    signal: new AbortController().signal,
  });
}
