// The Prometheus metrics of the admin server: queue depths and run times, why charge jobs retry, the business
// date's charges, recurrences, task runs and their times, the notice and event outboxes, live and crashed
// instances, paused queues, gateway slots and Postgres connections, read from the database at each scrape (the
// admin process runs no jobs, so it has nothing to count in memory), plus the process defaults.
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { connectionBudget } from '../db/connection-budget.ts';
import { gatewaySlotCounts } from '../db/gateway-slots.ts';
import { recentCrashes } from '../db/instances.ts';
import { recentJobs, RETRY_REASON_SAMPLE, retryingJobReasons } from '../db/jobs.ts';
import { listSchedules } from '../db/schedules.ts';
import { getMetricGauges, NOTICE_STATUSES } from '../db/metrics.ts';
import { recurrenceStats } from '../db/stats.ts';
import { businessDate } from '../domain/dates.ts';
import { CHARGE_QUEUE, PERIODIC_TASKS } from '../queue/task-names.ts';
import { firstOccurrenceOn } from '../tasks/job-business-date.ts';
import type { OpsDeps } from './deps.ts';
import { queueStates } from './queues.ts';

/** The window of the run-time quantiles and completion counts. */
const DURATION_WINDOW_MINUTES = 15;
const INSTANCE_ROLES = ['worker', 'scheduler', 'admin'] as const;
/** The window in which crashes are counted: two of them in it is a crash loop. */
const CRASH_WINDOW_MINUTES = 15;
const OUTCOMES = {
  approved: 'aprovada',
  declined: 'recusada',
  rejected: 'rejeitada',
  pending: 'pendente',
} as const;

function definitions(registry: Registry) {
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Gauge<L>({ name: `recorrencias_${name}`, help, labelNames, registers: [registry] });
  return {
    jobs: gauge(
      'jobs',
      'Live jobs per queue and state (queued = ready to run; deferred = queued or retrying, not before a later ' +
        'time; failed = retries ran out, kept JOB_HISTORY_RETENTION_DAYS). Finished jobs: see jobs_completed_15m.',
      ['queue', 'state'],
    ),
    deadLetter: gauge(
      'dead_letter_jobs',
      'Jobs of the queue waiting in its dead-letter queue (their retries ran out).',
      ['queue'],
    ),
    // Gauges, not a summary or histogram: the admin process runs no jobs, so the run times come from pg-boss's
    // rows over a sliding window, and a window count is not the ever-growing _count a summary promises.
    duration: gauge(
      'job_duration_seconds',
      `Run time of the jobs completed in the last ${DURATION_WINDOW_MINUTES} minutes, by quantile (from pg-boss's rows).`,
      ['queue', 'quantile'],
    ),
    completed: gauge('jobs_completed_15m', `Jobs completed in the last ${DURATION_WINDOW_MINUTES} minutes.`, [
      'queue',
    ]),
    failed: gauge(
      'jobs_failed_15m',
      `Jobs that failed for good (retries ran out) in the last ${DURATION_WINDOW_MINUTES} minutes.`,
      ['queue'],
    ),
    charges: gauge(
      'charges',
      "Charge attempts of the current business date by outcome (pending: the gateway's answer is not known yet).",
      ['outcome'],
    ),
    chargesAmount: gauge(
      'charges_amount_cents',
      'Amount in cents of the charge attempts of the current business date by outcome.',
      ['outcome'],
    ),
    pendingAttempts: gauge('pending_attempts', 'Charge attempts not resolved yet, of any date.'),
    oldestPending: gauge(
      'oldest_pending_attempt_age_seconds',
      'Age of the oldest unresolved charge attempt the workers still resolve (blocked ones apart); 0 when there is none.',
    ),
    blockedAttempts: gauge(
      'blocked_attempts',
      'Charge attempts blocked for an operator: the gateway holds another request under their key (409), or ' +
        'the key outlived GATEWAY_KEY_RETENTION_HOURS before an answer (idempotency_key_expired).',
    ),
    keyRetention: gauge(
      'gateway_key_retention_seconds',
      'GATEWAY_KEY_RETENTION_HOURS in seconds (0 = for ever): a pending attempt older than this is never sent or looked up again.',
    ),
    retrying: gauge(
      'charge_jobs_retrying',
      "Charge jobs waiting for a retry, by why their last attempt failed: the unknown outcome's reason " +
        `(unauthorized, forbidden, timeout, gateway_busy, slot_error, http_503...) or the failure's status; counted among at most ${RETRY_REASON_SAMPLE} of them.`,
      ['reason'],
    ),
    gatewaySlots: gauge(
      'gateway_slots',
      'Slots of the cluster-wide cap on concurrent gateway calls (GATEWAY_MAX_CONCURRENCY): total, and taken by a call now.',
      ['state'],
    ),
    recurrences: gauge('recurrences', 'Recurrences by status.', ['status']),
    due: gauge(
      'recurrences_due',
      'Active recurrences due on or before the current business date, not waiting for a retry.',
    ),
    waitingRetry: gauge(
      'recurrences_waiting_retry',
      'Active recurrences waiting for the retry of a declined charge.',
    ),
    lastSuccess: gauge(
      'task_last_success_timestamp_seconds',
      'End of the last successful run of the task (Unix seconds); 0 when it never succeeded.',
      ['task'],
    ),
    firstRun: gauge(
      'first_task_run_timestamp_seconds',
      'Start of the first task run recorded (Unix seconds): when this installation began running; 0 before any.',
    ),
    succeededToday: gauge(
      'task_succeeded_for_business_date',
      'Whether the task has a successful run for the current business date (1) or not (0).',
      ['task'],
    ),
    dueMinutes: gauge(
      'task_due_minutes',
      "Minutes since local midnight of the task's time on the current business date, from its stored schedule " +
        '(else its CRON_* setting); absent on a day it has no occurrence. Alerts say "not done 30 minutes after".',
      ['task'],
    ),
    running: gauge('task_running', 'Whether a run of the task is executing now (1) or not (0).', ['task']),
    businessMinutes: gauge(
      'business_time_minutes',
      'Minutes since midnight in BUSINESS_TIME_ZONE (for alerts like "by 08:30 local").',
    ),
    notices: gauge('notices', 'Seller notices not delivered yet, by status (pendente, falhou).', ['status']),
    noticesNotSent: gauge(
      'notices_recorded_unsent',
      'Seller notices of the latest date notificar_recorrencias_hold succeeded for that were recorded and not sent ' +
        '(registrado: the worker that ran it had no NOTICE_WEBHOOK_URL); they reach no seller until re-sent.',
    ),
    oldestNotice: gauge(
      'notice_oldest_undelivered_age_seconds',
      'Age of the oldest seller notice not delivered (pendente or falhou); 0 when there is none.',
    ),
    undeliveredEvents: gauge(
      'checkout_events_undelivered',
      'Checkout events not delivered yet (pendente or falhou) in eventos_checkout.',
    ),
    oldestEvent: gauge(
      'checkout_event_oldest_undelivered_age_seconds',
      'Age of the oldest checkout event not delivered (pendente or falhou); 0 when there is none.',
    ),
    instances: gauge('instances_alive', "Live instances per role, from pg-boss's instance registry.", [
      'role',
    ]),
    crashes: gauge(
      'instance_crashes_15m',
      `Lives of the role that ended without stopping (kill -9, out of memory, a fatal error) in the last ${CRASH_WINDOW_MINUTES} ` +
        "minutes, from pg-boss's instance registry; a life counts once it has missed three heartbeats (30 s).",
      ['role'],
    ),
    connections: gauge(
      'postgres_connections',
      "Postgres connections under each limit that applies to the service's login (server: max_connections less " +
        'the reserved slots; role and database: their CONNECTION LIMIT): used now, and allowed.',
      ['limit', 'state'],
    ),
    paused: gauge('queue_paused', 'Whether the queue is paused across the cluster (1) or not (0).', [
      'queue',
    ]),
  };
}

type Gauges = ReturnType<typeof definitions>;

/** Every metric /metrics exports, no values read yet: a registry per app, never prom-client's global one. */
export function createMetricsRegistry(): { registry: Registry; gauges: Gauges } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return { registry, gauges: definitions(registry) };
}

/** Minutes since local midnight of `instant` in `timeZone`. */
export function minutesSinceMidnight(instant: Date, timeZone: string): number {
  const parts = new Intl.DateTimeFormat('en-GB', {
    timeZone,
    hour: 'numeric',
    minute: 'numeric',
    hourCycle: 'h23',
  }).formatToParts(instant);
  const part = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  return part('hour') * 60 + part('minute');
}

async function readSnapshot(deps: OpsDeps) {
  const now = deps.now();
  const date = businessDate(now, deps.config.timeZone);
  const [queues, recent, stats, gauges, instances, crashes, retrying, slots, budget, stored] =
    await Promise.all([
      queueStates(deps),
      recentJobs(deps.pool, DURATION_WINDOW_MINUTES),
      recurrenceStats(deps.pool, date),
      getMetricGauges(deps.pool, { date, tasks: PERIODIC_TASKS }),
      deps.boss.getInstances(),
      recentCrashes(deps.pool, CRASH_WINDOW_MINUTES),
      retryingJobReasons(deps.pool, CHARGE_QUEUE),
      gatewaySlotCounts(deps.pool),
      connectionBudget(deps.pool),
      listSchedules(deps.pool, PERIODIC_TASKS),
    ]);
  const dueMinutes = PERIODIC_TASKS.flatMap((task) => {
    const schedule = stored.find((row) => row.name === task);
    const timeZone = schedule?.timezone ?? deps.config.timeZone;
    const occurrence = firstOccurrenceOn(schedule?.cron ?? deps.config.cron[task], timeZone, date);
    return occurrence === null ? [] : [{ task, minutes: minutesSinceMidnight(occurrence, timeZone) }];
  });
  return { now, queues, recent, stats, gauges, instances, crashes, retrying, slots, budget, dueMinutes };
}

/** Sets every gauge from one snapshot; labelled gauges are reset first so vanished series disappear. */
function apply(g: Gauges, s: Awaited<ReturnType<typeof readSnapshot>>, config: OpsDeps['config']): void {
  for (const metric of Object.values(g)) metric.reset();
  for (const queue of s.queues) {
    for (const [state, n] of Object.entries(queue.counts)) g.jobs.set({ queue: queue.queue, state }, n);
    if (queue.deadLettered !== null) g.deadLetter.set({ queue: queue.queue }, queue.deadLettered);
    g.paused.set({ queue: queue.queue }, queue.paused ? 1 : 0);
    const recent = s.recent.find((row) => row.queue === queue.queue);
    g.completed.set({ queue: queue.queue }, recent?.completed ?? 0);
    g.failed.set({ queue: queue.queue }, recent?.failed ?? 0);
    for (const [quantile, seconds] of [
      ['0.5', recent?.p50],
      ['0.95', recent?.p95],
      ['0.99', recent?.p99],
    ] as const) {
      if (seconds !== undefined && seconds !== null)
        g.duration.set({ queue: queue.queue, quantile }, seconds);
    }
  }
  for (const [outcome, status] of Object.entries(OUTCOMES)) {
    g.charges.set({ outcome }, s.stats.tentativas_na_data[status].quantidade);
    g.chargesAmount.set({ outcome }, s.stats.tentativas_na_data[status].valor_centavos);
  }
  g.pendingAttempts.set(s.stats.tentativas_pendentes_total);
  g.oldestPending.set(s.gauges.tentativa_pendente_mais_antiga_segundos ?? 0);
  g.blockedAttempts.set(s.gauges.tentativas_bloqueadas);
  g.keyRetention.set(config.gateway.keyRetentionHours * 3600);
  for (const { reason, n } of s.retrying) g.retrying.set({ reason }, n);
  g.gatewaySlots.set({ state: 'total' }, s.slots.total);
  g.gatewaySlots.set({ state: 'taken' }, s.slots.taken);
  for (const { limit, allowed, used } of s.budget.limits) {
    g.connections.set({ limit, state: 'used' }, used);
    g.connections.set({ limit, state: 'allowed' }, allowed);
  }
  for (const [status, n] of Object.entries(s.stats.por_status)) g.recurrences.set({ status }, n);
  g.due.set(s.stats.devidas_na_data);
  g.waitingRetry.set(s.stats.aguardando_retentativa);
  g.firstRun.set(s.gauges.primeira_execucao ?? 0);
  for (const { task, minutes } of s.dueMinutes) g.dueMinutes.set({ task }, minutes);
  for (const task of s.gauges.tarefas) {
    g.lastSuccess.set({ task: task.tarefa }, task.ultimo_sucesso ?? 0);
    g.succeededToday.set({ task: task.tarefa }, task.sucesso_na_data ? 1 : 0);
    g.running.set({ task: task.tarefa }, task.executando ? 1 : 0);
  }
  g.businessMinutes.set(minutesSinceMidnight(s.now, config.timeZone));
  for (const status of NOTICE_STATUSES) g.notices.set({ status }, s.gauges.avisos_por_status[status] ?? 0);
  g.noticesNotSent.set(s.gauges.avisos_registrados_ultima_data);
  g.oldestNotice.set(s.gauges.aviso_nao_entregue_mais_antigo_segundos ?? 0);
  g.undeliveredEvents.set(s.gauges.eventos_nao_entregues);
  g.oldestEvent.set(s.gauges.evento_nao_entregue_mais_antigo_segundos ?? 0);
  for (const role of INSTANCE_ROLES) {
    const name = `recorrencias-${role}`;
    g.instances.set(
      { role },
      s.instances.filter((instance) => instance.live && instance.name === name).length,
    );
    // A crashed process stays "live" for three missed heartbeats, so a restarted one keeps instances_alive up
    // through a crash loop; the lives that ended without stopping give it away.
    g.crashes.set({ role }, s.crashes.find((row) => row.name === name)?.crashes ?? 0);
  }
}

export type Metrics = { contentType: string; scrape(): Promise<string> };

/**
 * The metrics of one admin app. `scrape` reads the database and renders the text format; scrapes that
 * arrive while one is in flight share its answer, so a burst of scrapers costs one round of queries.
 */
export function createMetrics(deps: OpsDeps): Metrics {
  const { registry, gauges } = createMetricsRegistry();
  let inFlight: Promise<string> | null = null;
  const scrape = async () => {
    apply(gauges, await readSnapshot(deps), deps.config);
    return registry.metrics();
  };
  return {
    contentType: registry.contentType,
    scrape: () => {
      inFlight ??= scrape().finally(() => {
        inFlight = null;
      });
      return inFlight;
    },
  };
}
