// The scheduler as deployed: schedule registration, many schedulers at once, a missed tick caught up, and
// pauses that a reconcile pass running at the same moment does not undo (nor hold up, for the charge queue).
import pg from 'pg';
import t, { type Test } from 'tap';
import { loadConfig } from '../../src/config.ts';
import { insertPause } from '../../src/db/pauses.ts';
import type { DatabasePool, DatabaseTransactionConnection } from '../../src/db/pool.ts';
import { pauseQueue } from '../../src/ops/control.ts';
import { createBoss } from '../../src/queue/boss.ts';
import { CHARGE_QUEUE } from '../../src/queue/task-names.ts';
import { syncSchedules } from '../../src/roles/scheduler.ts';
import { createMigratedDatabase, lockWaiters, query } from '../helpers/database.ts';
import { returnsWithin } from '../helpers/gated-task.ts';
import { capturedLog } from '../helpers/captured-log.ts';
import { createHarness, silentLog, testActor, type Harness } from '../helpers/harness.ts';
import { eventually, logMessage, startService } from '../helpers/processes.ts';

const SEED_CRONS = {
  processar_recorrencias_do_dia: '0 8 * * *',
  retentar_cobrancas_falhadas: '0 10 * * *',
  notificar_recorrencias_hold: '0 18 * * *',
  limpar_recorrencias_antigas: '0 2 * * 0',
};

type ScheduleRow = { name: string; key: string; cron: string; timezone: string };

t.test(
  'two schedulers leave exactly the four schedules, in São Paulo time, with the seed crons',
  async (t) => {
    const url = await createMigratedDatabase(t);
    const schedulers = [
      startService(t, ['scheduler'], { DATABASE_URL: url }),
      startService(t, ['scheduler'], { DATABASE_URL: url }),
    ];
    await Promise.all(schedulers.map((s) => s.waitForLog(logMessage('scheduler started'))));
    const rows = await query<ScheduleRow>(
      url,
      'SELECT name, key, cron, timezone FROM pgboss.schedule ORDER BY name',
    );
    t.same(
      rows,
      Object.entries(SEED_CRONS)
        .map(([name, cron]) => ({ name, key: '', cron, timezone: 'America/Sao_Paulo' }))
        .sort((a, b) => a.name.localeCompare(b.name)),
    );
    // A restart re-registers (upsert) rather than adding rows.
    await schedulers[0]?.stop();
    const again = startService(t, ['scheduler'], { DATABASE_URL: url });
    await again.waitForLog(logMessage('scheduler started'));
    t.equal((await query(url, 'SELECT 1 FROM pgboss.schedule')).length, 4);
    for (const s of [again, schedulers[1]]) t.equal((await s?.stop())?.code, 0);
  },
);

t.test('a per-minute schedule produces one job per occurrence with two schedulers running', async (t) => {
  const url = await createMigratedDatabase(t);
  const env = {
    DATABASE_URL: url,
    CRON_LIMPAR_RECORRENCIAS_ANTIGAS: '* * * * *',
    SCHEDULER_INTERVAL_SECONDS: '5',
  };
  const schedulers = [startService(t, ['scheduler'], env), startService(t, ['scheduler'], env)];
  await Promise.all(schedulers.map((s) => s.waitForLog(logMessage('scheduler started'))));
  // No worker runs, so every job the schedules produce stays queued where we can count it. A job's
  // created_on minute is not its occurrence: the 08:03 occurrence filed at 08:03:58 may be forwarded at
  // 08:04:01. So each job is counted against the occurrence slots pg-boss filed (its send-it queue, one row
  // per occurrence whichever scheduler filed it first), read in the same snapshot as the jobs. Both
  // schedulers send every occurrence, so a second job for one would make jobs outnumber occurrences.
  const counts = async () => {
    const [row] = await query<{ jobs: number; occurrences: number; forwarded: number }>(
      url,
      `SELECT
         (SELECT count(*) FROM pgboss.job WHERE name = 'limpar_recorrencias_antigas')::int AS jobs,
         (SELECT count(DISTINCT data->>'slot') FROM pgboss.job
           WHERE name = '__pgboss__send-it' AND data->>'name' = 'limpar_recorrencias_antigas')::int AS occurrences,
         (SELECT count(*) FROM pgboss.job
           WHERE name = '__pgboss__send-it' AND data->>'name' = 'limpar_recorrencias_antigas'
             AND state = 'completed')::int AS forwarded`,
    );
    if (row === undefined) throw new Error('no counts');
    return row;
  };
  const seen: Array<{ jobs: number; occurrences: number; forwarded: number }> = [];
  await eventually(
    async () => {
      const row = await counts();
      seen.push(row);
      return row.forwarded >= 3 ? row : undefined;
    },
    240_000,
    1_000,
  );
  for (const s of schedulers) t.equal((await s.stop()).code, 0);
  seen.push(await counts());
  t.ok(
    seen.every((row) => row.jobs <= row.occurrences && row.jobs >= row.forwarded),
    `never more jobs than occurrences, every forwarded occurrence has its job: ${JSON.stringify(seen.at(-1))}`,
  );
  const last = seen.at(-1);
  t.ok((last?.jobs ?? 0) >= 3, 'at least three occurrences produced their job');
});

t.test('a tick missed while every scheduler was down is sent once when a scheduler starts', async (t) => {
  const url = await createMigratedDatabase(t);
  const first = startService(t, ['scheduler'], { DATABASE_URL: url });
  await first.waitForLog(logMessage('scheduler started'));
  t.equal((await first.stop()).code, 0);

  // Pretend the schedulers went down ten minutes ago and the task's daily tick fell three minutes ago.
  const [tick] = await query<{ minute: number; hour: number }>(
    url,
    `SELECT extract(minute FROM t)::int AS minute, extract(hour FROM t)::int AS hour
     FROM (SELECT (now() - interval '3 minutes') AT TIME ZONE 'America/Sao_Paulo' AS t) x`,
  );
  const cron = `${tick?.minute} ${tick?.hour} * * *`;
  await query(url, `UPDATE pgboss.version SET cron_on = now() - interval '10 minutes'`);
  await query(
    url,
    `UPDATE pgboss.schedule SET created_on = now() - interval '2 days', cron = $1 WHERE name = 'processar_recorrencias_do_dia'`,
    [cron],
  );

  const env = {
    DATABASE_URL: url,
    CRON_PROCESSAR_RECORRENCIAS_DO_DIA: cron,
    SCHEDULER_INTERVAL_SECONDS: '2',
  };
  const schedulers = [startService(t, ['scheduler'], env), startService(t, ['scheduler'], env)];
  const jobs = await eventually(async () => {
    const rows = await query<{ id: string }>(
      url,
      `SELECT id FROM pgboss.job WHERE name = 'processar_recorrencias_do_dia'`,
    );
    return rows.length > 0 ? rows : undefined;
  }, 60_000);
  t.equal(jobs.length, 1, 'the missed tick was sent');
  // Let two more cron passes happen, then check nothing else was sent.
  const [before] = await query<{ cron_on: Date }>(url, 'SELECT cron_on FROM pgboss.version');
  await eventually(
    async () => {
      const [row] = await query<{ passes: boolean }>(
        url,
        `SELECT cron_on > $1::timestamptz + interval '3 seconds' AS passes FROM pgboss.version`,
        [before?.cron_on],
      );
      return row?.passes ? true : undefined;
    },
    30_000,
    500,
  );
  const after = await query(url, `SELECT id FROM pgboss.job WHERE name = 'processar_recorrencias_do_dia'`);
  t.equal(after.length, 1, 'and only once');
  for (const s of schedulers) t.equal((await s.stop()).code, 0);
});

t.test(
  'schedulers with different CRON_* values say that they disagree; a deliberate change does not',
  async (t) => {
    const h = await createHarness(t);
    const task = 'processar_recorrencias_do_dia';
    const pass = async (cron: string) => {
      const { log, entries } = capturedLog('info');
      await syncSchedules(
        h.boss,
        h.pool,
        { ...h.config, cron: { ...h.config.cron, [task]: cron } },
        log,
        new Map(),
      );
      return entries.filter(logMessage(/^CRON_\* values disagree/));
    };
    await pass('0 8 * * *');
    // Registered an hour ago: a new release with another time replaces it without a word of warning.
    await query(h.url, `UPDATE pgboss.schedule SET updated_on = now() - interval '1 hour'`);
    t.same(await pass('0 9 * * *'), [], 'a change of an old schedule is not a disagreement');
    // The old release's scheduler, on its next pass, puts 08:00 back over the 09:00 written moments ago.
    t.match(await pass('0 8 * * *'), [
      {
        level: 40,
        task,
        registered: '0 9 * * *',
        registeredTimeZone: 'America/Sao_Paulo',
        configured: '0 8 * * *',
      },
    ]);
    t.same(await pass('0 8 * * *'), [], 'agreeing again: quiet');
  },
);

t.test("a scheduler renews a paused queue's job retention, at most once an hour", async (t) => {
  const h = await createHarness(t);
  await insertPause(h.pool, CHARGE_QUEUE, 'ana', 'incidente');
  const id = await h.boss.send(CHARGE_QUEUE, {
    recorrenciaId: 1,
    dataNegocio: '2031-03-10',
    motivo: 'agendada',
  });
  const daysLeft = async () => {
    const [row] = await query<{ days: number }>(
      h.url,
      `SELECT extract(epoch FROM keep_until - now()) / 86400 AS days FROM pgboss.job WHERE id = $1`,
      [id],
    );
    return Number(row?.days);
  };
  const expireSoon = () =>
    query(h.url, `UPDATE pgboss.job SET keep_until = now() + interval '1 day' WHERE id = $1`, [id]);
  const renewals = new Map<string, number>();
  await expireSoon();
  await syncSchedules(h.boss, h.pool, h.config, silentLog, renewals);
  t.ok((await daysLeft()) > 29, 'renewed for 30 days');
  await expireSoon();
  await syncSchedules(h.boss, h.pool, h.config, silentLog, renewals);
  t.ok((await daysLeft()) < 2, 'the next pass, within the hour, reads nothing');
});

/** A pg-boss instance of its own (as a scheduler process has) whose every connection is taken, until released. */
async function stalledBoss(t: Test, h: Harness) {
  const own = createBoss(loadConfig({ DATABASE_URL: h.url, BOSS_POOL_SIZE: '2' }), h.url, 'cli', silentLog);
  await own.start();
  t.teardown(() => own.stop({ graceful: false, close: true }));
  const holder = new pg.Client({ connectionString: h.url });
  await holder.connect();
  t.teardown(() => holder.end());
  await holder.query(`SELECT pg_advisory_lock(4242)`);
  const stalls = [1, 2].map(() => own.getDb().executeSql(`SELECT pg_advisory_xact_lock_shared(4242)`));
  await lockWaiters(h.url, 2);
  return {
    boss: own,
    release: async () => {
      await holder.query(`SELECT pg_advisory_unlock(4242)`);
      await Promise.all(stalls);
    },
  };
}

t.test(
  'a reconcile pass reads and changes the schedules in its own transaction: it ends while its pg-boss has no free connection',
  async (t) => {
    // A pass that read the pauses on one connection and the schedules on another (pg-boss's) could read them
    // on either side of a pause, and undo it; one that held its lock while waiting for a connection would
    // keep every pause waiting.
    const h = await createHarness(t);
    const task = 'notificar_recorrencias_hold';
    const scheduled = async () => (await h.boss.getSchedules()).some((row) => row.name === task);
    const own = await stalledBoss(t, h);
    const pass = () => syncSchedules(own.boss, h.pool, h.config, silentLog, new Map());
    await insertPause(h.pool, task, 'ana', null);
    await t.resolves(returnsWithin(pass(), 10_000), 'the pass ends');
    t.equal(await scheduled(), false, 'the paused task unscheduled');
    await query(h.url, `DELETE FROM tarefas_pausadas WHERE fila = $1`, [task]);
    await t.resolves(returnsWithin(pass(), 10_000), 'the pass ends');
    t.equal(await scheduled(), true, 'the resumed task scheduled');
    await own.release();
  },
);

/** A pool whose transactions wait at their first read of pg-boss's schedule table until `open()`. */
function poolStalledAtSchedules(pool: DatabasePool) {
  let open = (): void => undefined;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let reached = (): void => undefined;
  const stalled = new Promise<void>((resolve) => (reached = resolve));
  const proxy = new Proxy(pool, {
    get(target, property, receiver) {
      if (property !== 'transaction') return Reflect.get(target, property, receiver) as unknown;
      return (work: (tx: DatabaseTransactionConnection) => Promise<unknown>) =>
        target.transaction((tx) =>
          work(
            new Proxy(tx, {
              get(inner, name, innerReceiver) {
                if (name !== 'query') return Reflect.get(inner, name, innerReceiver) as unknown;
                return async (query: { sql: string }) => {
                  if (query.sql.includes('"pgboss"."schedule"')) {
                    reached();
                    await gate;
                  }
                  return inner.query(query as never);
                };
              },
            }),
          ),
        );
    },
  });
  return { pool: proxy, stalled, open };
}

t.test(
  "a task's pause during a reconcile pass waits for it and is not undone; the charge queue's pause does not wait",
  async (t) => {
    const h = await createHarness(t);
    const task = 'notificar_recorrencias_hold';
    const advisoryWaiters = async () =>
      (
        await query<{ n: number }>(
          h.url,
          `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database
           WHERE d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted`,
        )
      )[0]?.n ?? 0;
    // The pass has read the pauses (none) and stops before it reads the schedules.
    const stalledPool = poolStalledAtSchedules(h.pool);
    const pass = syncSchedules(h.boss, stalledPool.pool, h.config, silentLog, new Map());
    await returnsWithin(stalledPool.stalled, 10_000);
    let taskPaused = false;
    const pausing = pauseQueue(h.deps, testActor('ana'), task, null).then(() => (taskPaused = true));
    await eventually(async () => ((await advisoryWaiters()) > 0 ? true : undefined));
    t.equal(taskPaused, false, "the task's pause waits for the pass's lock");
    const stop = await returnsWithin(pauseQueue(h.deps, testActor('ana'), CHARGE_QUEUE, 'incidente'), 10_000);
    t.equal(stop.changed, true, 'the charge queue pauses meanwhile');
    stalledPool.open();
    await Promise.all([pass, pausing]);
    t.same(
      await query(h.url, `SELECT 1 FROM pgboss.schedule WHERE name = $1`, [task]),
      [],
      'paused after the pass: no schedule',
    );
  },
);
