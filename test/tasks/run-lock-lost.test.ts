// A periodic task run whose lock connection ends mid-run (pg_terminate_backend or a silent network cut,
// directly or behind a transaction-mode PgBouncer): the lock went with the connection, so the run stops, is
// recorded as failed and a new run takes over alone. A connection that ends after the run's work leaves the
// run's success standing. A job's retry that finds its date's run still locked fails, to retry later. A run
// that fails before it has its record is logged; one stopped before it began records nothing. While the lock is held, its connection holds no snapshot.
import { randomUUID } from 'node:crypto';
import { sql } from 'slonik';
import t, { type Test } from 'tap';
import { tryLockTaskRun } from '../../src/db/task-runs.ts';
import { runPeriodicTask } from '../../src/tasks/periodic-runner.ts';
import type { TaskDeps } from '../../src/tasks/task.ts';
import { capturedLog } from '../helpers/captured-log.ts';
import { advisoryLocks, createMigratedDatabase, query } from '../helpers/database.ts';
import { gatedTask, returnsWithin, runnerDeps, runOn } from '../helpers/gated-task.ts';
import { cutSilently, silentCutUnavailable } from '../helpers/network-cut.ts';
import { clientPortOf, startPgBouncer } from '../helpers/pgbouncer.ts';
import { eventually } from '../helpers/processes.ts';

const DATE = '2031-06-02';

/** Ends the server connection holding the run's advisory lock, as an operator or a failover would. */
async function terminateLockHolder(url: string): Promise<void> {
  const [holder, ...others] = await advisoryLocks(url);
  if (holder === undefined || others.length > 0)
    throw new Error(`expected one lock holder, found ${others.length + (holder ? 1 : 0)}`);
  const [ended] = await query<{ ended: boolean }>(url, `SELECT pg_terminate_backend($1) AS ended`, [
    holder.pid,
  ]);
  if (ended?.ended !== true) throw new Error(`could not end the lock holder ${holder.pid}`);
}

/** Starts a gated run and, once it is inside, ends the server connection holding its lock. */
async function runThenEndItsLock(t: Test, deps: TaskDeps, url: string) {
  const gated = gatedTask();
  t.teardown(() => gated.release());
  const first = runOn(gated.task, deps, DATE);
  first.catch(() => {}); // its outcome is asserted by the caller; meanwhile it must not count as unhandled
  await gated.firstEntered;
  await terminateLockHolder(url);
  return { gated, first };
}

/** Takes the run lock of (task, DATE) on a connection of its own and inserts no run record, until released. */
async function holdLockWithoutRecord(t: Test, deps: TaskDeps, task: string) {
  let release = (): void => undefined;
  const released = new Promise<void>((resolve) => (release = resolve));
  let locked = (): void => undefined;
  const lockTaken = new Promise<void>((resolve) => (locked = resolve));
  const holding = deps.pool.connect(async (session) => {
    t.ok(await tryLockTaskRun(session, task, DATE), 'the lock taken');
    locked();
    await released;
    await session.query(sql.unsafe`COMMIT`);
  });
  t.teardown(() => release());
  await lockTaken;
  return {
    release: async () => {
      release();
      await holding;
    },
  };
}

async function runStatuses(url: string) {
  return query<{ status: string; erro: string | null }>(
    url,
    `SELECT status, erro FROM execucoes_tarefas WHERE data_negocio = $1 ORDER BY id`,
    [DATE],
  );
}

for (const via of ['directly', 'through a transaction-mode PgBouncer'] as const) {
  t.test(`a run whose lock connection ends stops, and the next run takes over (${via})`, async (t) => {
    const url = await createMigratedDatabase(t);
    const target =
      via === 'directly' ? url : await startPgBouncer(t, url, { poolMode: 'transaction', poolSize: 2 });
    const { log, entries } = capturedLog('error');
    const deps: TaskDeps = await runnerDeps(t, target, { TASK_LOCK_CHECK_SECONDS: '1' }, log);
    const { gated, first } = await runThenEndItsLock(t, deps, url);
    await t.rejects(
      returnsWithin(first, 10_000),
      { name: 'RunLockLostError', message: /lost the run lock/ },
      'the run stops within a couple of checks',
    );
    const [failed] = await runStatuses(url);
    t.equal(failed?.status, 'falha');
    t.match(failed?.erro, /lost the run lock/, 'the run record says why');
    t.match(
      entries.find((line) => /connection holding the run lock failed/.test(line.msg)),
      { task: 'limpar_recorrencias_antigas', err: { message: /terminat/i } },
      'the log names the task and the connection error that ended the lock',
    );

    gated.release();
    t.match(await runOn(gated.task, deps, DATE), { status: 'succeeded' }, 'not skipped: it redoes the run');
    t.equal(gated.state.peakInside, 1, 'never two runs at once');
    t.same(
      (await runStatuses(url)).map((row) => row.status),
      ['falha', 'sucesso'],
    );
    t.same(await advisoryLocks(url), [], 'no lock left');
  });
}

t.test(
  'the connection holding a run lock holds no snapshot, so a long run does not hold back vacuum',
  async (t) => {
    const url = await createMigratedDatabase(t);
    // Checks far apart: what is seen is the lock as taken, not as a later check leaves it.
    const deps = await runnerDeps(t, url, { TASK_LOCK_CHECK_SECONDS: '300' });
    const gated = gatedTask();
    t.teardown(() => gated.release());
    const run = runOn(gated.task, deps, DATE);
    await gated.firstEntered;
    const [holder] = await advisoryLocks(url);
    const [activity] = await query<{ state: string; xmin: string | null }>(
      url,
      `SELECT state, backend_xmin::text AS xmin FROM pg_stat_activity WHERE pid = $1`,
      [holder?.pid],
    );
    t.same(activity, { state: 'idle in transaction', xmin: null });
    gated.release();
    t.match(await run, { status: 'succeeded' });
  },
);

t.test(
  'a lock connection that ends after the run finished its work leaves the success standing',
  async (t) => {
    const url = await createMigratedDatabase(t);
    // Checks far apart: the connection ends between two of them, and only the unlock meets the ended connection.
    const deps = await runnerDeps(t, url, { TASK_LOCK_CHECK_SECONDS: '300' });
    const { gated, first } = await runThenEndItsLock(t, deps, url);
    gated.release();
    t.match(await first, { status: 'succeeded', counts: { feitas: 1 } });
    t.same(await runStatuses(url), [{ status: 'sucesso', erro: null }]);
    t.match(await runOn(gated.task, deps, DATE), { status: 'skipped', reason: 'already_succeeded' });
  },
);

t.test(
  "a job's retry that finds its date's run locked fails, to retry later; a first attempt skips",
  async (t) => {
    const url = await createMigratedDatabase(t);
    const deps = await runnerDeps(t, url);
    const gated = gatedTask();
    t.teardown(() => gated.release());
    const first = runOn(gated.task, deps, DATE, false, 1);
    await gated.firstEntered;

    t.match(
      await runOn(gated.task, deps, DATE, false, 1),
      { status: 'skipped', reason: 'run_in_progress' },
      'a duplicate first attempt (a manual run beside the scheduled one) has nothing to do',
    );
    await t.rejects(
      runOn(gated.task, deps, DATE, false, 2),
      { name: 'RunLockHeldError', message: /holds its lock while this job retries \(attempt 2\)/ },
      'a retry does not count the date as handled by a run it cannot see',
    );
    t.same(
      (await runStatuses(url)).map((row) => row.status),
      ['executando'],
      'neither records a run',
    );
    gated.release();
    t.match(await first, { status: 'succeeded' });
    t.match(await runOn(gated.task, deps, DATE, false, 3), {
      status: 'skipped',
      reason: 'already_succeeded',
    });
    t.equal(gated.state.peakInside, 1);
  },
);

t.test(
  "a job's first attempt beside a command-line run retries after it instead of counting the date as done",
  async (t) => {
    const url = await createMigratedDatabase(t);
    const deps = await runnerDeps(t, url);
    const gated = gatedTask();
    t.teardown(() => gated.release());
    const command = runOn(gated.task, deps, DATE); // jobId null: the command line, which has no retry
    await gated.firstEntered;
    await t.rejects(runOn(gated.task, deps, DATE, false, 1, randomUUID()), {
      name: 'RunLockHeldError',
      message: /a command-line run of .* holds its lock, and has no retry of its own/,
    });
    gated.release();
    t.match(await command, { status: 'succeeded' });

    // Beside another job's run (which has retries of its own), a first attempt still has nothing to do.
    const other = gatedTask();
    t.teardown(() => other.release());
    const jobRun = runOn(other.task, deps, DATE, true, 1, randomUUID());
    await other.firstEntered;
    t.match(await runOn(other.task, deps, DATE, true, 1, randomUUID()), {
      status: 'skipped',
      reason: 'run_in_progress',
    });
    other.release();
    t.match(await jobRun, { status: 'succeeded' });
  },
);

t.test(
  "a job's first attempt that finds the lock taken by a run not yet recorded retries instead of skipping",
  async (t) => {
    const url = await createMigratedDatabase(t);
    const deps = await runnerDeps(t, url);
    const gated = gatedTask();
    // A command-line run between taking the lock and inserting its row (and staying there past the job's
    // wait for it): the lock, and no row.
    const holder = await holdLockWithoutRecord(t, deps, gated.task.name);
    await t.rejects(
      runOn(gated.task, deps, DATE, false, 1, randomUUID()),
      { name: 'RunLockHeldError', message: /has no record yet/ },
      'the date is not counted as handled by a run that may have no retry',
    );
    await holder.release();
    gated.release();
    t.match(await runOn(gated.task, deps, DATE, false, 2, randomUUID()), { status: 'succeeded' });
  },
);

t.test(
  "a job's first attempt beside a holder with no record that lets go within a second decides after it, without a retry",
  async (t) => {
    const url = await createMigratedDatabase(t);
    let announce = (): void => undefined;
    const waiting = new Promise<'waiting'>((resolve) => (announce = () => resolve('waiting')));
    const { log } = capturedLog('debug', (entry) => {
      if (/has no record yet: waiting/.test(entry.msg)) announce();
    });
    const deps = await runnerDeps(t, url, {}, log);
    const gated = gatedTask();
    gated.release();
    t.match(await runOn(gated.task, deps, DATE), { status: 'succeeded' }, 'the date is done');
    // A run that found the date done (or has just recorded its success) and is letting go: the lock, no row.
    const holder = await holdLockWithoutRecord(t, deps, gated.task.name);
    const job = runOn(gated.task, deps, DATE, false, 1, randomUUID());
    const settled = job.then(
      () => 'settled' as const,
      () => 'settled' as const,
    );
    t.equal(await Promise.race([waiting, settled]), 'waiting', 'the job waits for the holder');
    await holder.release();
    t.match(
      await job,
      { status: 'skipped', reason: 'already_succeeded' },
      'once the holder lets go, the job finds the date done: no retry, no failed job',
    );
  },
);

t.test('a run stopped before it began (its signal aborted) records nothing and leaves no lock', async (t) => {
  const url = await createMigratedDatabase(t);
  const deps = await runnerDeps(t, url);
  const gated = gatedTask();
  const stop = new AbortController();
  stop.abort(new Error('stopped by SIGTERM'));
  await t.rejects(
    // Within a deadline: a gated task that did start would wait for a release that never comes.
    returnsWithin(
      runPeriodicTask(gated.task, deps, {
        date: DATE,
        force: false,
        jobId: null,
        attempt: 1,
        signal: stop.signal,
      }),
      10_000,
    ),
    { message: 'stopped by SIGTERM' },
  );
  t.equal(gated.state.peakInside, 0, 'the task never ran');
  t.same(await runStatuses(url), [], 'no run recorded');
  t.same(await advisoryLocks(url), [], 'no lock left');
});

t.test('a run that fails before it has its record is logged with the task and date', async (t) => {
  const url = await createMigratedDatabase(t);
  const { log, entries } = capturedLog('error');
  const deps = await runnerDeps(t, url, {}, log);
  // The run's record cannot be read: the failure is before any row in execucoes_tarefas could say so.
  await query(url, `ALTER TABLE execucoes_tarefas RENAME TO execucoes_tarefas_fora`);
  t.teardown(() => query(url, `ALTER TABLE execucoes_tarefas_fora RENAME TO execucoes_tarefas`));
  const gated = gatedTask();
  await t.rejects(runOn(gated.task, deps, DATE), /execucoes_tarefas/);
  t.match(
    entries.find((line) => line.msg === 'task run could not start'),
    { task: gated.task.name, businessDate: DATE, err: { message: /execucoes_tarefas/ } },
  );
  t.equal(gated.state.peakInside, 0, 'the task never ran');
});

// Needs root and iptables (README's set-up); skipped without them (a skip fails the run in CI).
const cutUnavailable = await silentCutUnavailable();

for (const via of ['directly', 'through a transaction-mode PgBouncer'] as const) {
  t.test(
    `a run cut off without a word stops; the lock's connection is dropped and a retry redoes it (${via})`,
    { skip: cutUnavailable ?? false },
    async (t) => {
      const url = await createMigratedDatabase(t);
      const target =
        via === 'directly' ? url : await startPgBouncer(t, url, { poolMode: 'transaction', poolSize: 4 });
      const deps = await runnerDeps(t, target, { TASK_LOCK_CHECK_SECONDS: '1' });
      const gated = gatedTask();
      t.teardown(() => gated.release());
      const first = runOn(gated.task, deps, DATE, false, 1);
      first.catch(() => {}); // asserted below
      await gated.firstEntered;
      const [holder] = await advisoryLocks(url);
      if (holder?.port === undefined || holder.port === null) throw new Error('no lock holder over TCP');
      // Through PgBouncer the cut is between the service and PgBouncer, whose server connection stays healthy.
      const cut = await cutSilently(
        t,
        via === 'directly' ? holder.port : await clientPortOf(target, holder.pid),
      );
      const cutAt = Date.now();

      await t.rejects(
        returnsWithin(first, 30_000),
        { name: 'RunLockLostError', message: /no answer within 10000 ms/ },
        'the run stops when its lock check gets no answer',
      );
      // A check every second, 10 s for its answer, then up to 5 s for slonik to give up closing the connection.
      t.ok(Date.now() - cutAt < 20_000, `stopped ${Date.now() - cutAt} ms after the cut`);
      await t.rejects(
        runOn(gated.task, deps, DATE, false, 2),
        { name: 'RunLockHeldError' },
        'meanwhile the cut-off connection still holds the lock: the retry fails, to retry later',
      );
      // Dropped by the lock transaction's TCP settings, or through PgBouncer by pgbouncer/pgbouncer.ini's; on the
      // operating system's keepalive defaults either would hold it for about two hours.
      await eventually(async () => ((await advisoryLocks(url)).length === 0 ? true : undefined), 60_000, 500);
      t.ok(Date.now() - cutAt < 45_000, `the lock went ${Date.now() - cutAt} ms after the cut`);
      await cut.restore();

      gated.release();
      t.match(
        await runOn(gated.task, deps, DATE, false, 3),
        { status: 'succeeded' },
        'the next retry redoes the run',
      );
      t.same(
        (await runStatuses(url)).map((row) => row.status),
        ['falha', 'sucesso'],
      );
      t.equal(gated.state.peakInside, 1, 'never two runs at once');
    },
  );
}

t.test(
  'a lock connection the watch gave up on, but which lives on, is closed: it leaves no lock behind',
  { skip: cutUnavailable ?? false },
  async (t) => {
    const url = await createMigratedDatabase(t);
    const { log, entries } = capturedLog('error');
    const deps = await runnerDeps(t, url, { TASK_LOCK_CHECK_SECONDS: '1' }, log);
    // A run that does not stop at the abort: it ends normally after its lock check has given up.
    const gated = gatedTask({ ignoreSignal: true });
    t.teardown(() => gated.release());
    const first = runOn(gated.task, deps, DATE, false, 1);
    await gated.firstEntered;
    const [holder] = await advisoryLocks(url);
    if (holder?.port === undefined || holder.port === null) throw new Error('no lock holder over TCP');
    const cut = await cutSilently(t, holder.port);
    await eventually(async () => entries.find((line) => /lost the run lock/.test(line.msg)), 20_000, 100);
    // The connection comes back, the server never having noticed anything: its transaction and lock are live,
    // and the check that went unanswered is answered once TCP resends it.
    const [restoredAt] = await query<{ at: Date }>(url, `SELECT clock_timestamp() AS at`);
    await cut.restore();
    await eventually(
      async () =>
        (
          await query(
            url,
            `SELECT 1 FROM pg_stat_activity
             WHERE pid = $1 AND state = 'idle in transaction' AND query_start > $2`,
            [holder.pid, restoredAt?.at],
          )
        ).length === 1
          ? true
          : undefined,
      30_000,
      100,
    );
    t.same(
      (await advisoryLocks(url)).map((lock) => lock.pid),
      [holder.pid],
      'the lock is still held by the same connection',
    );
    gated.release();
    t.match(await first, { status: 'succeeded' }, "the run's own outcome stands");
    await eventually(async () => ((await advisoryLocks(url)).length === 0 ? true : undefined), 10_000, 100);
    t.pass('the lock connection was closed rather than put back in the pool with its transaction open');
    t.match(
      await returnsWithin(runOn(gated.task, deps, DATE, true), 10_000),
      { status: 'succeeded' },
      'a forced rerun takes the lock at once',
    );
  },
);
