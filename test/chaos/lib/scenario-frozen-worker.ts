// A worker frozen (SIGSTOP) past its job's expiry while another worker takes the job over and commits it;
// resumed, its late commit must be refused by the fence (the assertion the no_fence mutant must fail).
import pg from 'pg';
import type { Violation } from './checker.ts';
import { query } from './cluster.ts';
import {
  finishScenario,
  generateRecurrences,
  seededRows,
  type ScenarioContext,
  type ScenarioResult,
} from './scenario-common.ts';
import { DAY, openStack } from './scenarios.ts';
import { until } from './wait.ts';

const PROCESSAR = 'processar_recorrencias_do_dia';
const FENCE_REFUSED = 'job claim lost before commit: outcome not recorded here (fence refused)';

/**
 * A worker frozen (SIGSTOP) with its charge's answer in hand, past its job's expiry, while another worker
 * takes the job over and commits it; resumed (SIGCONT), it must reach its commit and be refused by the fence
 * (the fenced completion is phase 3's first statement). A row lock held by the harness on the gateway slot the
 * worker frees right after the answer pins the moment. (Frozen during the gateway call instead, it would wake
 * up with its timers expired - Linux returns EINTR from epoll_wait after SIGCONT - and give up on a timeout.)
 */
export async function frozenWorkerScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const startedAt = Date.now();
  const stack = await openStack(ctx, 'frozen_worker', { latencyMs: 0 }, { WORKER_CONCURRENCY: '1' });
  const rows = await stack.seed(
    generateRecurrences(ctx.rng, { count: 1, due: DAY, tokens: [['tok_aprova', 1]] }),
  );
  await stack.gateway.setFaults({ rules: [{ nth: 1, fault: 'hold' }] });
  await stack.startRole('admin', 'admin');
  const frozen = await stack.startRole('workerA', 'worker');
  await stack.runTask(PROCESSAR, DAY);
  await until(
    'the gateway to hold the answer',
    async () => ((await stack.gateway.stats()).held === 1 ? true : undefined),
    60_000,
    20,
  );
  const lockWaiters = async () =>
    query<{ pid: number }>(
      stack.url,
      `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'recorrencias:worker' AND wait_event_type = 'Lock'`,
    );
  const lock = new pg.Client({ connectionString: stack.url, application_name: 'chaos-harness-lock' });
  lock.on('error', () => undefined);
  await lock.connect();
  const extra: Violation[] = [];
  const frozenPid = frozen.pid();
  let thawedAt: number;
  try {
    // The gateway slot the held call occupies: the worker frees it right after the answer, before phase 3.
    await lock.query('BEGIN');
    const slots = await lock.query(
      `SELECT vaga FROM vagas_gateway WHERE job_id = (SELECT id FROM pgboss.job WHERE name = 'cobrar_recorrencia') FOR UPDATE`,
    );
    if (slots.rowCount !== 1)
      throw new Error(`expected the held charge to hold one gateway slot, found ${slots.rowCount}`);
    await stack.gateway.release();
    await until(
      'the worker to wait for its slot between the gateway answer and phase 3',
      async () => (await lockWaiters())[0],
      20_000,
      50,
    );
    // Its statement waits under a 60 s statement timeout (slonik): start the new worker before freezing, so
    // the takeover (heartbeat lost, then one supervision pass: 10-20 s) fits well inside it.
    await stack.startRole('workerB', 'worker');
    frozen.freeze();
    stack.note('freeze:worker_sigstop');
    await until(
      'another worker to take the job over and commit the charge',
      async () =>
        (
          await query(
            stack.url,
            `SELECT 1 FROM pgboss.job WHERE name = 'cobrar_recorrencia' AND state = 'completed' AND retry_count >= 1`,
          )
        ).length > 0
          ? true
          : undefined,
      50_000,
      250,
    );
    frozen.thaw();
    thawedAt = Date.now();
  } finally {
    frozen.thaw();
    await lock.query('COMMIT').catch(() => undefined);
    await lock.end();
  }
  const refused = await frozen
    .waitForLog((l) => l.msg === FENCE_REFUSED && l.pid === frozenPid, 20_000)
    .catch(() => undefined);
  if (refused === undefined)
    extra.push({
      kind: 'scenario',
      detail: `the frozen worker (pid ${frozenPid}) resumed and its late commit was not refused by the fence`,
    });
  else stack.note('fence:late_commit_refused');
  await until(
    'the charge job to complete',
    async () => ((await stack.busyJobs()) === 0 ? true : undefined),
    60_000,
    250,
  ).catch(() => undefined);
  const [job] = await query<{ status: string | null; retry_count: number }>(
    stack.url,
    `SELECT output->>'status' AS status, retry_count FROM pgboss.job WHERE name = 'cobrar_recorrencia'`,
  );
  if (job?.status !== 'approved' || job.retry_count < 1)
    extra.push({
      kind: 'scenario',
      detail: `the charge was not recorded by the job's new holder (output ${job?.status}, attempt ${job?.retry_count})`,
    });
  return finishScenario(stack, {
    scenario: 'frozen-worker',
    ctx,
    seeded: seededRows(rows),
    lastBusinessDate: DAY,
    lastFaultAt: thawedAt,
    startedAt,
    extra,
  });
}
