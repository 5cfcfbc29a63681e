// Charging as deployed, with real OS processes: two runs released together behind a barrier, a run killed
// midway and finished by its retry, a worker stopped with a charge in flight, a missed tick caught up.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { loadConfig } from '../../src/config.ts';
import { createBoss } from '../../src/queue/boss.ts';
import { startFakeGateway } from '../../src/gateway/fake-gateway.ts';
import { INSERTS_IN_FLIGHT, PAGE_SIZE } from '../../src/tasks/charge/fan-out.ts';
import { createMigratedDatabase, query } from '../helpers/database.ts';
import {
  assertLedgerAgrees,
  attemptsOf,
  createHarness,
  insertRecurrence,
  silentLog,
} from '../helpers/harness.ts';
import { eventually, logMessage, PROJECT_ROOT, startService } from '../helpers/processes.ts';

const DAY = '2031-03-10';

async function seedDue(url: string, count: number, date = DAY): Promise<void> {
  await query(
    url,
    `INSERT INTO checkout_recorrencias (vendedor_id, cartao_token, bandeira, valor_centavos, periodicidade, dia_ancora, proxima_cobranca)
     SELECT 'v' || (g % 7), 'tok_aprova_' || g, 'visa', 1000 + g, 'mensal', extract(day FROM $1::date)::int, $1::date
     FROM generate_series(1, $2::int) g`,
    [date, count],
  );
}

async function chargeJobCount(url: string): Promise<{ n: number; distinct: number }> {
  const [row] = await query<{ n: number; distinct: number }>(
    url,
    `SELECT count(*)::int AS n, count(DISTINCT data->>'recorrenciaId')::int AS distinct FROM pgboss.job WHERE name = 'cobrar_recorrencia'`,
  );
  return row ?? { n: 0, distinct: 0 };
}

t.test(
  'two processes running the daily task at once, released together, enqueue each charge once',
  async (t) => {
    const url = await createMigratedDatabase(t);
    await seedDue(url, 6_000);
    const dir = await mkdtemp(join(tmpdir(), 'barrier-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const barrier = join(dir, 'go');
    const runOne = () =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(
          'sh',
          [
            '-c',
            `while [ ! -e "${barrier}" ]; do sleep 0.01; done; exec "${process.execPath}" dist/main.js run processar_recorrencias_do_dia --date ${DAY} --allow-future-date`,
          ],
          {
            cwd: PROJECT_ROOT,
            env: { PATH: process.env.PATH, DATABASE_URL: url, LOG_LEVEL: 'warn' },
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
        child.on('exit', (code) => resolve({ code, out }));
      });
    const runs = [runOne(), runOne()];
    await writeFile(barrier, 'go');
    const [a, b] = await Promise.all(runs);
    t.same([a?.code, b?.code], [0, 0], `${a?.out}\n${b?.out}`);
    const outcomes = [a, b].map(
      (r) =>
        JSON.parse(r?.out.slice(r.out.indexOf('{')) ?? '{}') as {
          status: string;
          counts?: { enfileiradas: number };
        },
    );
    t.equal(outcomes.filter((o) => o.status === 'succeeded').length, 1, 'one process ran the task');
    t.equal(outcomes.filter((o) => o.status === 'skipped').length, 1, 'the other found it running or done');
    t.same(
      await chargeJobCount(url),
      { n: 6_000, distinct: 6_000 },
      'every due recurrence enqueued exactly once',
    );
  },
);

async function sendTaskJob(t: Test, url: string, task: string, data: object): Promise<string> {
  const boss = createBoss(loadConfig({ DATABASE_URL: url }), url, 'cli', silentLog);
  await boss.start();
  t.teardown(() => boss.stop({ graceful: false, close: true }));
  const id = await boss.send(task, data);
  if (id === null) throw new Error('job not sent');
  return id;
}

t.test(
  'a run killed midway is redone by its retry, enqueuing what was missing and nothing twice',
  async (t) => {
    const url = await createMigratedDatabase(t);
    // One page more than the fan-out keeps in flight: the pages in flight when the first one's crash point
    // kills the worker commit on their own, and the last is never sent.
    const total = PAGE_SIZE * INSERTS_IN_FLIGHT + 2_000;
    await seedDue(url, total);
    const gateway = await startFakeGateway({ port: 0 });
    t.teardown(() => gateway.close());
    const env = {
      DATABASE_URL: url,
      GATEWAY_URL: gateway.url,
      TASK_TIME_LIMIT_SECONDS: '10',
      TASK_SOFT_TIME_LIMIT_SECONDS: '5',
      TASK_RETRY_DELAY_SECONDS: '1',
      WORKER_CONCURRENCY: '1',
    };
    // The queue's expiry comes from migrate: apply the short hard limit to this database.
    t.equal((await startService(t, ['migrate'], env).exited).code, 0);
    const doomed = startService(t, ['worker'], {
      ...env,
      RECORRENCIAS_TEST_CRASH_POINTS: 'fanout_after_page:1',
    });
    await doomed.waitForLog(logMessage('worker started'));
    await sendTaskJob(t, url, 'processar_recorrencias_do_dia', { date: DAY });
    const death = await doomed.exited;
    t.equal(death.signal, 'SIGKILL', 'the worker died at the crash point, after the first page');
    // A page insert still in flight at the kill commits on its own; once the dead worker's connections are
    // gone, nothing more of its run can land.
    await eventually(async () => {
      const [row] = await query<{ n: number }>(
        url,
        `SELECT count(*)::int AS n FROM pg_stat_activity
         WHERE datname = current_database() AND application_name LIKE 'recorrencias:worker%'`,
      );
      return row?.n === 0 ? true : undefined;
    }, 30_000);
    const midway = await chargeJobCount(url);
    t.ok(midway.n > 0 && midway.n < total, `killed midway (${midway.n} of ${total} enqueued)`);

    const survivor = startService(t, ['worker'], env);
    const done = await eventually(
      async () => {
        const rows = await query<{ status: string; erro: string | null; contagens: Record<string, number> }>(
          url,
          `SELECT status, erro, contagens FROM execucoes_tarefas ORDER BY id`,
        );
        return rows.some((row) => row.status === 'sucesso') ? rows : undefined;
      },
      90_000,
      250,
    );
    t.equal(done.length, 2);
    t.match(done[0], { status: 'falha', erro: /interrompida/ }, 'the crashed run is recorded as interrupted');
    // Charges of the first page may already have been approved (then they are no longer due): what counts is
    // that the retry enqueued exactly the missing ones.
    t.match(done[1], { status: 'sucesso', contagens: { enfileiradas: total - midway.n } });
    t.same(
      await chargeJobCount(url),
      { n: total, distinct: total },
      'every due recurrence enqueued exactly once',
    );
    t.equal((await survivor.stop()).code, 0);
  },
);

t.test('a worker told to stop with a charge in flight finishes it, then exits 0', async (t) => {
  const h = await createHarness(t);
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
  h.gateway.setFaults({ rules: [{ nth: 1, fault: 'hold' }] });
  const worker = startService(t, ['worker'], { DATABASE_URL: h.url, GATEWAY_URL: h.gateway.url });
  await worker.waitForLog(logMessage('worker started'));
  await sendTaskJob(t, h.url, 'processar_recorrencias_do_dia', { date: DAY });
  await h.gateway.waitForHeld(1, 30_000);
  worker.child.kill('SIGTERM');
  await worker.waitForLog(logMessage('stop requested: finishing in-flight work'));
  t.equal(worker.child.exitCode, null, 'still running while its charge is in flight');
  h.gateway.release();
  const { code } = await worker.exited;
  t.equal(code, 0);
  t.same(
    (await attemptsOf(h.url, id)).map((a) => a.status),
    ['aprovada'],
    'the in-flight charge was recorded',
  );
  t.same(await query(h.url, `SELECT state FROM pgboss.job WHERE name = 'cobrar_recorrencia'`), [
    { state: 'completed' },
  ]);
  await assertLedgerAgrees(t, h.url, h.gateway);
});

t.test(
  'a missed 08:00 tick is run once, for its own business date, when a scheduler comes back',
  async (t) => {
    const h = await createHarness(t);
    const first = startService(t, ['scheduler'], { DATABASE_URL: h.url });
    await first.waitForLog(logMessage('scheduler started'));
    await first.stop();
    // The tick fell three minutes ago; schedulers have been down for ten.
    const [tick] = await query<{ minute: number; hour: number; day: string }>(
      h.url,
      `SELECT extract(minute FROM t)::int AS minute, extract(hour FROM t)::int AS hour, t::date::text AS day
     FROM (SELECT (now() - interval '3 minutes') AT TIME ZONE 'America/Sao_Paulo' AS t) x`,
    );
    const cron = `${tick?.minute} ${tick?.hour} * * *`;
    await query(h.url, `UPDATE pgboss.version SET cron_on = now() - interval '10 minutes'`);
    await query(
      h.url,
      `UPDATE pgboss.schedule SET created_on = now() - interval '2 days', cron = $1 WHERE name = 'processar_recorrencias_do_dia'`,
      [cron],
    );
    const id = await insertRecurrence(h.pool, { proxima_cobranca: tick?.day ?? DAY });

    const env = {
      DATABASE_URL: h.url,
      GATEWAY_URL: h.gateway.url,
      CRON_PROCESSAR_RECORRENCIAS_DO_DIA: cron,
      SCHEDULER_INTERVAL_SECONDS: '2',
    };
    const scheduler = startService(t, ['scheduler'], env);
    const worker = startService(t, ['worker'], env);
    const runs = await eventually(async () => {
      const rows = await query<{ data_negocio: string; status: string }>(
        h.url,
        `SELECT data_negocio::text, status FROM execucoes_tarefas`,
      );
      return rows.some((row) => row.status === 'sucesso') ? rows : undefined;
    }, 60_000);
    t.same(
      runs,
      [{ data_negocio: tick?.day, status: 'sucesso' }],
      'one run, for the business date of the missed occurrence',
    );
    await eventually(async () =>
      (await attemptsOf(h.url, id)).some((a) => a.status === 'aprovada') ? true : undefined,
    );
    for (const service of [scheduler, worker]) t.equal((await service.stop()).code, 0);
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test('the cluster-wide cap bounds concurrent gateway calls across worker processes', async (t) => {
  const h = await createHarness(t, { gateway: { latencyMs: 300 } });
  await seedDue(h.url, 30);
  const env = {
    DATABASE_URL: h.url,
    GATEWAY_URL: h.gateway.url,
    WORKER_CONCURRENCY: '8',
    GATEWAY_MAX_CONCURRENCY: '3',
  };
  const workers = [startService(t, ['worker'], env), startService(t, ['worker'], env)];
  await Promise.all(workers.map((w) => w.waitForLog(logMessage('worker started'))));
  await sendTaskJob(t, h.url, 'processar_recorrencias_do_dia', { date: DAY });
  await eventually(async () => (h.gateway.ledger().length === 30 ? true : undefined), 60_000, 200);
  const peak = h.gateway.stats().max_in_progress;
  t.ok(
    peak <= 3,
    `at most 3 charges at the gateway at once (peak ${peak}) although the workers had 16 slots`,
  );
  t.ok(peak >= 2, `and the cap was actually reached in parallel (peak ${peak})`);
  for (const worker of workers) t.equal((await worker.stop()).code, 0);
  await assertLedgerAgrees(t, h.url, h.gateway);
});
