// The emergency stop across the cluster: pausing the charge queue through the admin API stops two running
// worker processes from taking charge jobs (a worker started while paused never takes them), and resuming
// lets the waiting charge through, exactly once. A task's pause and the removal of its schedule are one change.
import t from 'tap';
import { CHARGE_QUEUE } from '../../src/queue/task-names.ts';
import { enqueueChargeJobs } from '../../src/tasks/charge/charge-jobs.ts';
import { createAdminHarness, operator } from '../helpers/admin.ts';
import { query } from '../helpers/database.ts';
import { assertLedgerAgrees, attemptsOf, insertRecurrence } from '../helpers/harness.ts';
import { eventually, logMessage, startService, type LogLine } from '../helpers/processes.ts';

const pausedCharges = (line: LogLine) =>
  line.msg === 'queue paused: no longer taking its jobs' && line.queue === CHARGE_QUEUE;
const resumedCharges = (line: LogLine) => line.msg === 'taking jobs' && line.queue === CHARGE_QUEUE;

t.test('pausing cobrar_recorrencia stops every worker from charging until it is resumed', async (t) => {
  const h = await createAdminHarness(t);
  const env = { DATABASE_URL: h.url, GATEWAY_URL: h.gateway.url };
  const workers = [startService(t, ['worker'], env), startService(t, ['worker'], env)];
  await Promise.all(workers.map((worker) => worker.waitForLog(logMessage('worker started'))));

  const paused = await h.app.inject({
    method: 'POST',
    url: `/tasks/${CHARGE_QUEUE}/pause`,
    headers: operator,
    payload: { reason: 'adquirente instável' },
  });
  t.equal(paused.statusCode, 200);
  await Promise.all(workers.map((worker) => worker.waitForLog(pausedCharges, 10_000)));

  const late = startService(t, ['worker'], env);
  const started = await late.waitForLog(logMessage('worker started'));
  t.notOk(
    (started.queues as string[]).includes(CHARGE_QUEUE),
    'a worker started while paused does not take charge jobs',
  );

  const id = await insertRecurrence(h.pool, { proxima_cobranca: '2031-03-10' });
  await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: '2031-03-10', motivo: 'agendada' }]);
  // A job on a queue that is not paused, enqueued after the charge: once it is done, the workers have been
  // polling with the charge job available to them.
  const marker = await h.boss.send('limpar_recorrencias_antigas', { date: '2031-03-10' });
  await eventually(async () => {
    const [row] = await query<{ state: string }>(h.url, 'SELECT state FROM pgboss.job WHERE id = $1', [
      marker,
    ]);
    return row?.state === 'completed' ? true : undefined;
  });
  t.same(
    await query(h.url, `SELECT state FROM pgboss.job WHERE name = $1`, [CHARGE_QUEUE]),
    [{ state: 'created' }],
    'the charge waits',
  );
  t.equal(h.gateway.stats().requests, 0, 'nothing reached the gateway');

  t.equal(
    (await h.app.inject({ method: 'POST', url: `/tasks/${CHARGE_QUEUE}/resume`, headers: operator }))
      .statusCode,
    200,
  );
  await Promise.all([...workers, late].map((worker) => worker.waitForLog(resumedCharges, 10_000)));
  await eventually(async () =>
    (await attemptsOf(h.url, id)).some((a) => a.status === 'aprovada') ? true : undefined,
  );
  t.equal(h.gateway.ledger().length, 1, 'charged once after the resume');
  for (const worker of [...workers, late]) t.equal((await worker.stop()).code, 0);
  await assertLedgerAgrees(t, h.url, h.gateway);
});

t.test('a pause whose unschedule fails changes nothing, and a retry completes it', async (t) => {
  const h = await createAdminHarness(t);
  const unschedule = h.boss.unschedule.bind(h.boss);
  let failing = true;
  // A database hiccup on the schedule's removal, for the first call only.
  h.boss.unschedule = async (...args: Parameters<typeof unschedule>) => {
    if (failing) throw new Error('connection reset');
    return unschedule(...args);
  };
  const pause = () =>
    h.app.inject({
      method: 'POST',
      url: '/tasks/processar_recorrencias_do_dia/pause',
      headers: operator,
      payload: { reason: 'virada' },
    });
  const audit = () =>
    query(h.url, `SELECT quem, detalhes FROM auditoria_admin WHERE acao = 'pause' ORDER BY id`);
  const schedule = () =>
    query(h.url, `SELECT 1 AS present FROM pgboss.schedule WHERE name = 'processar_recorrencias_do_dia'`);
  t.same(await schedule(), [{ present: 1 }], 'scheduled before');
  t.equal((await pause()).statusCode, 500, 'the operator is told it failed');
  // All or nothing: a pause row whose task still ticks would say paused while its jobs pile up.
  t.same(await query(h.url, 'SELECT fila FROM tarefas_pausadas'), [], 'not paused');
  t.same(await audit(), [], 'nothing to audit');
  t.same(await schedule(), [{ present: 1 }], 'still scheduled');
  failing = false;
  t.equal((await pause()).statusCode, 200, 'a retry pauses');
  t.same(await query(h.url, 'SELECT fila FROM tarefas_pausadas'), [
    { fila: 'processar_recorrencias_do_dia' },
  ]);
  t.same(await schedule(), [], 'unscheduled');
  t.same(await audit(), [{ quem: 'ana', detalhes: { reason: 'virada', changed: true } }], 'who paused');
});
