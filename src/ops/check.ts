// The deployment self-check (the seed's testar_recorrencias_celery.py made real): database reachable,
// migrations current, the four tasks registered with handlers and queues, schedules present in the right
// time zone with their next runs, daily tasks early enough in the day for their run-late alerts to fire, room
// for one more worker's connections, the gateway answering with our credentials (a lookup of a key nobody
// used: it charges nothing), a dry run of each task (read-only, no webhook), the recurrence statistics.
// Missing workers or schedulers (a fresh deploy checks before starting them), a late daily task and a short
// connection budget are warnings.
import { randomUUID } from 'node:crypto';
import { connectionBudget } from '../db/connection-budget.ts';
import { listPauses } from '../db/pauses.ts';
import { recurrenceStats } from '../db/stats.ts';
import { businessDate } from '../domain/dates.ts';
import { createHttpGateway } from '../gateway/http-gateway.ts';
import { queuePolicyDrift } from '../queue/queue-options.ts';
import { PERIODIC_TASKS } from '../queue/task-names.ts';
import { PERIODIC_TASK_DEFINITIONS } from '../tasks/registry.ts';
import { catalog } from './catalog.ts';
import type { OpsDeps } from './deps.ts';
import { schedules } from './inspect.ts';
import {
  describeBlindAlert,
  LATEST_ALERTED_TIME,
  RUN_LATE_ADVICE,
  runLateAlertsThatCannotFire,
} from './run-late-alerts.ts';

export type CheckResult = { name: string; status: 'ok' | 'warning' | 'failed'; detail: string };

/**
 * Looks up a key nobody ever sent: a gateway that answers 404 (not found) is reachable and accepts our
 * credentials. A wrong GATEWAY_API_KEY fails every charge alike, so a deploy should learn it here, not at 08:00.
 */
async function gatewayCheck(deps: OpsDeps): Promise<Omit<CheckResult, 'name'>> {
  const { url, apiKey, timeoutMs } = deps.config.gateway;
  if (url === undefined)
    return { status: 'warning', detail: 'GATEWAY_URL is not set here: the gateway was not contacted' };
  const gateway = createHttpGateway({ url, apiKey, timeoutMs, log: deps.log });
  const outcome = await gateway.lookup(
    {
      idempotencyKey: `recorrencias-check-${randomUUID()}`,
      amountCents: 1,
      currency: 'BRL',
      cardToken: 'none',
      description: 'check',
      metadata: { recorrenciaId: 0, ciclo: '1970-01-01', tentativa: 1 },
    },
    AbortSignal.timeout(timeoutMs),
  );
  if (outcome.kind === 'not_found')
    return { status: 'ok', detail: `${url} answers a lookup with our credentials (unknown key: 404)` };
  if (outcome.kind === 'unknown' && (outcome.reason === 'unauthorized' || outcome.reason === 'forbidden'))
    return {
      status: 'failed',
      detail: `${url} refused our credentials (${outcome.reason}): check GATEWAY_API_KEY`,
    };
  const why = 'reason' in outcome ? `${outcome.kind}: ${outcome.reason}` : outcome.kind;
  return { status: 'failed', detail: `${url} did not answer a lookup as the contract says (${why})` };
}

async function step(name: string, work: () => Promise<Omit<CheckResult, 'name'>>): Promise<CheckResult> {
  try {
    return { name, ...(await work()) };
  } catch (error) {
    return { name, status: 'failed', detail: (error as Error).message };
  }
}

/** Runs every check after the schema check (which the caller does first, before pg-boss can start). */
export async function runChecks(deps: OpsDeps): Promise<CheckResult[]> {
  const date = businessDate(deps.now(), deps.config.timeZone);
  const results: CheckResult[] = [];
  results.push(
    await step('tasks registered with handlers', async () => {
      const missing = PERIODIC_TASKS.filter(
        (task) => typeof PERIODIC_TASK_DEFINITIONS[task]?.run !== 'function',
      );
      return missing.length === 0
        ? { status: 'ok', detail: PERIODIC_TASKS.join(', ') }
        : { status: 'failed', detail: `no handler for ${missing.join(', ')}` };
    }),
  );
  results.push(
    await step('queues exist with their policies', async () => {
      const queues = await deps.boss.getQueues();
      const missing = catalog().filter((entry) => !queues.some((queue) => queue.name === entry.name));
      if (missing.length > 0) {
        return {
          status: 'failed',
          detail: `missing ${missing.map((entry) => entry.name).join(', ')}: run migrate`,
        };
      }
      const drift = queuePolicyDrift(queues, deps.config);
      return drift.length === 0
        ? { status: 'ok', detail: `${catalog().length} queues` }
        : {
            status: 'warning',
            detail: `stored policies differ from this configuration (run migrate to apply it): ${drift.join('; ')}`,
          };
    }),
  );
  results.push(
    await step('no queue paused', async () => {
      const pauses = await listPauses(deps.pool);
      // A pause is deliberate, but while it lasts nothing of that queue runs (the charge queue's is the
      // emergency stop): a check that passes must not hide it.
      return pauses.length === 0
        ? { status: 'ok', detail: 'none' }
        : {
            status: 'warning',
            detail: pauses
              .map(
                (p) =>
                  `${p.fila} paused by ${p.pausada_por} at ${p.pausada_em.toISOString()}: ${p.motivo ?? 'no reason given'}`,
              )
              .join('; '),
          };
    }),
  );
  results.push(
    await step(`schedules present in ${deps.config.timeZone}`, async () => {
      const rows = await schedules(deps);
      const wrong = rows.filter(
        (row) =>
          !row.paused &&
          (!row.registered ||
            row.timeZone !== deps.config.timeZone ||
            row.cron !== deps.config.cron[row.task as keyof typeof deps.config.cron]),
      );
      const detail = rows
        .map(
          (row) =>
            `${row.task} ${row.cron} ${row.paused ? 'PAUSED' : `next ${row.nextRuns[0]?.local ?? '-'} (${row.nextRuns[0]?.utc ?? '-'})`}`,
        )
        .join('; ');
      return wrong.length === 0
        ? { status: 'ok', detail }
        : {
            status: 'failed',
            detail: `not registered as configured: ${wrong.map((row) => row.task).join(', ')} (start a scheduler or run migrate)`,
          };
    }),
  );
  results.push(
    await step('run-late alerts can fire', async () => {
      // A daily task set to run late in the evening leaves its alert no time before midnight, when the alert
      // starts reading the next date: that task could fail every day without a page.
      const blind = runLateAlertsThatCannotFire(deps.config, date).map(describeBlindAlert).join('; ');
      return blind === ''
        ? { status: 'ok', detail: `every daily task runs by ${LATEST_ALERTED_TIME}` }
        : { status: 'warning', detail: `${blind} (${RUN_LATE_ADVICE})` };
    }),
  );
  for (const role of ['worker', 'scheduler'] as const) {
    results.push(
      await step(`${role}s alive`, async () => {
        const live = (await deps.boss.getInstances()).filter(
          (instance) => instance.live && instance.name === `recorrencias-${role}`,
        ).length;
        return live > 0
          ? { status: 'ok', detail: `${live}` }
          : { status: 'warning', detail: `none seen in the last 30 s (start \`node dist/main.js ${role}\`)` };
      }),
    );
  }
  results.push(
    await step('connections for one more worker', async () => {
      const budget = await connectionBudget(deps.pool);
      // A worker holds DB_POOL_SIZE from start-up; pg-boss opens up to BOSS_POOL_SIZE more as it needs them.
      const { app, boss } = deps.config.pools;
      const limits = budget.limits.map((limit) => `${limit.limit} ${limit.used}/${limit.allowed}`).join(', ');
      const detail = `${budget.free} free (in use/allowed: ${limits}, this check's own included); a worker holds ${app} and opens up to ${boss} more`;
      if (budget.free >= app + boss) return { status: 'ok', detail };
      return {
        status: 'warning',
        detail: `${detail}: ${budget.free < app ? 'another worker would wait at start-up' : "another worker's pg-boss pool could be refused"} (lower DB_POOL_SIZE or raise the limit)`,
      };
    }),
  );
  results.push(await step('gateway answers with our credentials', () => gatewayCheck(deps)));
  for (const task of PERIODIC_TASKS) {
    results.push(
      await step(`dry run ${task}`, async () => ({
        status: 'ok',
        detail: JSON.stringify(await PERIODIC_TASK_DEFINITIONS[task].dryRun({ ...deps, date })),
      })),
    );
  }
  results.push(
    await step('recurrence statistics', async () => {
      const stats = await recurrenceStats(deps.pool, date);
      const byStatus = Object.entries(stats.por_status)
        .map(([status, count]) => `${status} ${count}`)
        .join(', ');
      return {
        status: 'ok',
        detail: `${byStatus}; due ${stats.devidas_na_data}; waiting for retry ${stats.aguardando_retentativa}`,
      };
    }),
  );
  return results;
}
