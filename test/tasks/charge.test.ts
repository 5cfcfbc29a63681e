// The charge protocol against real Postgres, real pg-boss jobs and the fake gateway over HTTP: outcomes,
// retries and holds, ambiguous outcomes resolved with the same key, the completion fence, the calendar.
import pg from 'pg';
import t, { type Test } from 'tap';
import { enqueueChargeJobs } from '../../src/tasks/charge/charge-jobs.ts';
import { chargeJobs, chargeRecurrence, type ChargeResult } from '../../src/tasks/charge/charge-recurrence.ts';
import {
  changeRecurrence,
  reactivateRecurrence,
  transitionRecurrence,
} from '../../src/ops/recurrence-changes.ts';
import { outcomeRecordingReserveMs } from '../../src/config.ts';
import { listChangeHistory } from '../../src/db/recorrencias-gestao.ts';
import { previewDueCharges } from '../../src/ops/charge-preview.ts';
import { recurrenceStats } from '../../src/db/stats.ts';
import { CHARGE_QUEUE } from '../../src/queue/task-names.ts';
import { lockWaiters, query } from '../helpers/database.ts';
import {
  assertLedgerAgrees,
  attemptsOf,
  chargeOnce,
  createHarness,
  endJob,
  insertRecurrence,
  jobState,
  recurrenceState,
  skippedCyclesOf,
  type Harness,
  type RecurrenceOverrides,
  testActor,
} from '../helpers/harness.ts';
import { capturedLog } from '../helpers/captured-log.ts';
import { eventually } from '../helpers/processes.ts';

const DAY = '2031-03-10';
const TOO_LONG_TOKEN = `tok_${'x'.repeat(600)}`;
/** Why a cycle is recorded as skipped: it fell in a pause, or a later one was charged (back-billing off). */
const PAUSED = 'recorrencia pausada: ciclo não cobrado';
const BEHIND = 'ciclos atrasados: cobrado apenas o ciclo atual';

/**
 * A recurrence due on DAY charged once through a gateway that executes the charge but answers after the
 * client's 300 ms timeout: its attempt stays pending, the outcome unknown (what each caller asserts).
 */
async function chargedWithUnknownOutcome(t: Test, row: Partial<RecurrenceOverrides> = {}, backbill = false) {
  const h = await createHarness(t, {
    env: { GATEWAY_TIMEOUT_MS: '300', ...(backbill ? { BACKBILL_MISSED_CYCLES: 'true' } : {}) },
  });
  h.gateway.setFaults({ rules: [{ nth: 1, fault: 'timeout_after', holdMs: 2_000 }] });
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, ...row });
  const { result, jobId } = await chargeOnce(h, id, DAY);
  return { h, id, jobId, result };
}

/** Claims the job again after pg-boss's retry (as the next worker would) and runs the protocol. */
async function retryJob(h: Harness, jobId: string): Promise<ChargeResult> {
  await query(h.url, `UPDATE pgboss.job SET start_after = now() WHERE id = $1`, [jobId]);
  const [job] = await h.fetchChargeJobs();
  if (job?.id !== jobId) throw new Error(`expected to claim ${jobId} again, got ${job?.id}`);
  return chargeRecurrence(h.deps, job);
}

t.test(
  'approved: the cycle is charged, the next one computed from the anchor, the job completed',
  async (t) => {
    const h = await createHarness(t);
    const id = await insertRecurrence(h.pool, {
      proxima_cobranca: '2031-01-31',
      dia_ancora: 31,
      valor_centavos: 12345,
    });
    const { result, jobId } = await chargeOnce(h, id, '2031-01-31');
    t.match(result, {
      status: 'approved',
      cycle: '2031-01-31',
      amountCents: 12345,
      key: `rec-${id}-2031-01-31-t1`,
    });
    t.match(await recurrenceState(h.url, id), {
      proxima_cobranca: '2031-02-28',
      ciclos_cobrados: 1,
      falhas_consecutivas: 0,
    });
    t.equal(await jobState(h.url, jobId), 'completed');
    const second = await chargeOnce(h, id, '2031-02-28');
    t.equal(second.result.status, 'approved');
    t.equal(
      (await recurrenceState(h.url, id)).proxima_cobranca,
      '2031-03-31',
      'back to the 31st after February',
    );
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test('a rerun of the same job finds nothing due and charges nothing', async (t) => {
  const h = await createHarness(t);
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
  await chargeOnce(h, id, DAY);
  const again = await enqueueChargeJobs(h.boss, [
    { recorrenciaId: id, dataNegocio: DAY, motivo: 'agendada' },
  ]);
  t.equal(again, 0, 'the same (recurrence, date, reason) job is not enqueued twice');
  await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: '2031-03-11', motivo: 'agendada' }]);
  const [job] = await h.fetchChargeJobs();
  t.same(await chargeRecurrence(h.deps, job as never), { status: 'skipped', reason: 'not_due' });
  t.equal(h.gateway.ledger().length, 1);
});

t.test('reversible declines back off 1, 3, 7 days and the fourth puts the recurrence on hold', async (t) => {
  const h = await createHarness(t);
  const id = await insertRecurrence(h.pool, {
    proxima_cobranca: DAY,
    cartao_token: 'tok_recusa_reversivel_1',
  });
  const first = await chargeOnce(h, id, DAY);
  t.match(first.result, { status: 'declined', code: '51', decision: 'retry' });
  t.match(await recurrenceState(h.url, id), {
    status: 'ativo',
    proxima_tentativa: '2031-03-11',
    falhas_consecutivas: 1,
  });
  t.equal(
    await jobState(h.url, first.jobId),
    'completed',
    'a decline is a business outcome: the job completes',
  );

  // processar does not pick up a recurrence waiting for its retry.
  await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: '2031-03-11', motivo: 'agendada' }]);
  const [daily] = await h.fetchChargeJobs();
  t.same(await chargeRecurrence(h.deps, daily as never), { status: 'skipped', reason: 'waiting_for_retry' });

  const expected: Array<[string, string]> = [
    ['2031-03-11', '2031-03-14'],
    ['2031-03-14', '2031-03-21'],
  ];
  for (const [date, next] of expected) {
    const retry = await chargeOnce(h, id, date, 'retentativa');
    t.match(retry.result, { status: 'declined', decision: 'retry' });
    t.equal((await recurrenceState(h.url, id)).proxima_tentativa, next);
  }
  const last = await chargeOnce(h, id, '2031-03-21', 'retentativa');
  t.match(last.result, { status: 'declined', decision: 'hold' });
  const state = await recurrenceState(h.url, id);
  t.match(state, { status: 'hold', proxima_tentativa: null, falhas_consecutivas: 4 });
  t.match(state.motivo_hold, /4 recusas seguidas/);
  t.same(
    (await attemptsOf(h.url, id)).map((a) => a.chave_idempotencia),
    [1, 2, 3, 4].map((n) => `rec-${id}-${DAY}-t${n}`),
    'each retry is a new attempt with a new key, all for the same cycle',
  );
  await assertLedgerAgrees(t, h.url, h.gateway);
});

/** Pauses without a cycle of their own, around a weekly retry: none, one, or two. */
const PAUSES_WITHOUT_CYCLES = {
  '': [],
  ' (a pause begun and ended meanwhile forgives neither)': ['2031-03-12'],
  ' (nor two such pauses)': ['2031-03-05', '2031-03-12'],
} as const;

for (const [title, pauses] of Object.entries(PAUSES_WITHOUT_CYCLES)) {
  t.test(
    `a retry that falls after the next cycle charges the declined cycle, then the next one${title}`,
    async (t) => {
      const h = await createHarness(t);
      const id = await insertRecurrence(h.pool, {
        proxima_cobranca: '2031-03-03',
        periodicidade: 'semanal',
        cartao_token: 'tok_recusa_reversivel_1',
      });
      /** Paused and resumed on `day`, before `retryOn`: the pause holds no cycle. */
      const pauseOn = async (day: string, retryOn: string) => {
        if (!(pauses as readonly string[]).includes(day)) return;
        h.setNow(new Date(`${day}T15:00:00Z`));
        await transitionRecurrence(h.deps, testActor('checkout'), id, 'pausar');
        await transitionRecurrence(h.deps, testActor('checkout'), id, 'retomar');
        t.match(await recurrenceState(h.url, id), { status: 'ativo', proxima_tentativa: retryOn });
      };
      t.match((await chargeOnce(h, id, '2031-03-03')).result, { status: 'declined', decision: 'retry' });
      t.match((await chargeOnce(h, id, '2031-03-04', 'retentativa')).result, { decision: 'retry' });
      await pauseOn('2031-03-05', '2031-03-07');
      t.match((await chargeOnce(h, id, '2031-03-07', 'retentativa')).result, { decision: 'retry' });
      // The third backoff (7 days) ends after the next weekly cycle (03-10); the card is replaced meanwhile.
      t.match(await recurrenceState(h.url, id), {
        proxima_cobranca: '2031-03-03',
        proxima_tentativa: '2031-03-14',
      });
      await pauseOn('2031-03-12', '2031-03-14');
      await query(h.url, `UPDATE checkout_recorrencias SET cartao_token = 'tok_aprova_2' WHERE id = $1`, [
        id,
      ]);
      t.match((await chargeOnce(h, id, '2031-03-14', 'retentativa')).result, {
        status: 'approved',
        cycle: '2031-03-03',
        key: `rec-${id}-2031-03-03-t4`,
      });
      t.match((await chargeOnce(h, id, '2031-03-15')).result, { status: 'approved', cycle: '2031-03-10' });
      t.match(await recurrenceState(h.url, id), { proxima_cobranca: '2031-03-17', falhas_consecutivas: 0 });
      t.same(
        await query(
          h.url,
          'SELECT ciclo FROM checkout_recorrencia_ciclos_pulados WHERE recorrencia_id = $1',
          [id],
        ),
        [],
        'no cycle written off',
      );
      await assertLedgerAgrees(t, h.url, h.gateway);
    },
  );
}

t.test(
  'an irreversible decline puts the recurrence on hold at once, and nothing is sent for it afterwards',
  async (t) => {
    const h = await createHarness(t);
    const id = await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      cartao_token: 'tok_recusa_irreversivel_1',
    });
    const { result } = await chargeOnce(h, id, DAY);
    t.match(result, { status: 'declined', code: '14', decision: 'hold' });
    t.match(await recurrenceState(h.url, id), { status: 'hold', proxima_tentativa: null });
    const later = await chargeOnce(h, id, '2031-03-12', 'retentativa');
    t.same(later.result, { status: 'skipped', reason: 'recurrence_hold' });
    t.equal(h.gateway.ledger().length, 1, 'no request for a recurrence on hold');
  },
);

t.test('an approval after declines resets the failure counter', async (t) => {
  const h = await createHarness(t);
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, cartao_token: 'tok_x_1' });
  h.gateway.setFaults({ rules: [{ nth: 1, fault: 'decline_reversible' }] });
  t.match((await chargeOnce(h, id, DAY)).result, { status: 'declined' });
  t.match((await chargeOnce(h, id, '2031-03-11', 'retentativa')).result, { status: 'approved', cycle: DAY });
  t.match(await recurrenceState(h.url, id), {
    falhas_consecutivas: 0,
    proxima_tentativa: null,
    proxima_cobranca: '2031-04-10',
  });
  await assertLedgerAgrees(t, h.url, h.gateway);
});

for (const fault of [
  'timeout_before',
  'timeout_after',
  'reset_before',
  'reset_after',
  'error_500_before',
  'error_500_after',
  'rate_limited',
] as const) {
  t.test(
    `ambiguous outcome (${fault}): attempt stays pending, the retry resolves it with the same key`,
    async (t) => {
      const h = await createHarness(t, { env: { GATEWAY_TIMEOUT_MS: '300' } });
      h.gateway.setFaults({ rules: [{ nth: 1, fault, holdMs: 2_000 }] });
      const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
      const { result, jobId } = await chargeOnce(h, id, DAY);
      t.match(result, { status: 'unresolved', key: `rec-${id}-${DAY}-t1` });
      t.same(
        (await attemptsOf(h.url, id)).map((a) => a.status),
        ['pendente'],
        'never recorded as a decline',
      );
      t.equal((await recurrenceState(h.url, id)).proxima_cobranca, DAY);
      await h.boss.fail(CHARGE_QUEUE, { id: jobId, retryCount: 0 }, { error: 'unknown outcome' });

      const retried = await retryJob(h, jobId);
      t.match(retried, { status: 'approved', key: `rec-${id}-${DAY}-t1` }, 'resolved under the same key');
      t.same(
        (await attemptsOf(h.url, id)).map((a) => a.status),
        ['aprovada'],
      );
      t.equal(h.gateway.ledger().length, 1, 'charged exactly once at the gateway');
      await assertLedgerAgrees(t, h.url, h.gateway);
    },
  );
}

t.test(
  'a pending attempt whose job was dead-lettered is resumed by the next day run, never given a fresh key',
  async (t) => {
    const { h, id, result, jobId } = await chargedWithUnknownOutcome(t);
    t.match(result, { status: 'unresolved' });
    // Its retries ran out: pg-boss failed it for good (and copied it to the dead-letter queue).
    await endJob(h.url, jobId);
    // The next day's daily job for the same recurrence finds the pending attempt and resumes it.
    const next = await chargeOnce(h, id, '2031-03-11');
    t.match(next.result, { status: 'approved', key: `rec-${id}-${DAY}-t1`, cycle: DAY });
    t.equal(h.gateway.stats().lookups, 1, 'looked the key up before sending again');
    t.equal(h.gateway.ledger().length, 1);
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test('the completion fence: a worker whose claim lapsed cannot commit its outcome', async (t) => {
  const h = await createHarness(t);
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
  await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: DAY, motivo: 'agendada' }]);
  const [stale] = await h.fetchChargeJobs();
  if (stale === undefined) throw new Error('no job');
  // The claim lapses (expiry or lost heartbeat) and another worker takes the job over.
  await h.boss.fail(CHARGE_QUEUE, { id: stale.id, retryCount: stale.retryCount }, { error: 'expired' });
  await query(h.url, `UPDATE pgboss.job SET start_after = now() WHERE id = $1`, [stale.id]);
  const [fresh] = await h.fetchChargeJobs();
  t.equal(fresh?.id, stale.id);

  const late = await chargeRecurrence(h.deps, stale);
  t.match(late, { status: 'claim_lost' }, 'the stale worker reached its commit and was refused');
  t.same(
    (await attemptsOf(h.url, id)).map((a) => a.status),
    ['pendente'],
    'its transaction rolled back',
  );
  t.equal((await recurrenceState(h.url, id)).ciclos_cobrados, 0);

  const current = await chargeRecurrence(h.deps, fresh as never);
  t.match(current, { status: 'approved', key: `rec-${id}-${DAY}-t1` });
  t.equal(h.gateway.ledger().length, 1, 'the gateway replayed the first execution');
  await assertLedgerAgrees(t, h.url, h.gateway);
});

t.test(
  'declines of a batch: each job completed with its decision, none for a claim that lapsed',
  async (t) => {
    const h = await createHarness(t);
    const ids = [
      await insertRecurrence(h.pool, { proxima_cobranca: DAY, cartao_token: 'tok_recusa_reversivel_1' }),
      await insertRecurrence(h.pool, { proxima_cobranca: DAY, cartao_token: 'tok_recusa_reversivel_2' }),
      await insertRecurrence(h.pool, { proxima_cobranca: DAY, cartao_token: 'tok_recusa_irreversivel_3' }),
      await insertRecurrence(h.pool, { proxima_cobranca: DAY, cartao_token: 'tok_recusa_reversivel_4' }),
    ];
    await enqueueChargeJobs(
      h.boss,
      ids.map((id) => ({ recorrenciaId: id, dataNegocio: DAY, motivo: 'agendada' as const })),
    );
    const jobs = await h.fetchChargeJobs(10);
    t.equal(jobs.length, 4);
    const jobOf = (id: number) => jobs.find((job) => job.data.recorrenciaId === id);
    // The last one's claim lapses while it is charging: its decline must not be recorded by this worker.
    const stale = jobOf(ids[3] as number);
    if (stale === undefined) throw new Error('no job');
    await h.boss.fail(CHARGE_QUEUE, { id: stale.id, retryCount: stale.retryCount }, { error: 'expired' });
    const results = await chargeJobs(h.deps, jobs);
    const byId = (id: number) => results[jobs.findIndex((job) => job.data.recorrenciaId === id)];
    t.match(byId(ids[0] as number), { status: 'declined', decision: 'retry' });
    t.match(byId(ids[1] as number), { status: 'declined', decision: 'retry' });
    t.match(byId(ids[2] as number), { status: 'declined', decision: 'hold' });
    t.match(byId(ids[3] as number), { status: 'claim_lost' });

    const outputs = await query<{ recorrencia: number; state: string; output: unknown }>(
      h.url,
      `SELECT (data->>'recorrenciaId')::int AS recorrencia, state::text, output FROM pgboss.job
     WHERE name = $1 ORDER BY 1`,
      [CHARGE_QUEUE],
    );
    t.same(
      outputs.slice(0, 3).map(({ state, output }) => ({ state, output })),
      [
        {
          state: 'completed',
          output: { status: 'declined', code: '51', decision: 'retry', retryOn: '2031-03-11' },
        },
        {
          state: 'completed',
          output: { status: 'declined', code: '51', decision: 'retry', retryOn: '2031-03-11' },
        },
        {
          state: 'completed',
          output: {
            status: 'declined',
            code: '14',
            decision: 'hold',
            reason: 'recusa irreversível (código 14): não será retentada',
          },
        },
      ],
    );
    t.not(outputs[3]?.state, 'completed', 'the lapsed claim was not completed here');
    t.same(
      (await attemptsOf(h.url, ids[3] as number)).map((a) => a.status),
      ['pendente'],
      'nor its decline recorded: its next holder resolves the attempt through the same key',
    );
    t.match(await recurrenceState(h.url, ids[3] as number), {
      falhas_consecutivas: 0,
      proxima_tentativa: null,
    });
    t.match(await recurrenceState(h.url, ids[2] as number), { status: 'hold' });
  },
);

t.test(
  'a failure while recording a batch rolls it back and records each outcome alone: only the refused one retries',
  async (t) => {
    const h = await createHarness(t);
    const approvedId = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
    const declinedId = await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      cartao_token: 'tok_recusa_reversivel_c',
    });
    await enqueueChargeJobs(
      h.boss,
      [approvedId, declinedId].map((id) => ({
        recorrenciaId: id,
        dataNegocio: DAY,
        motivo: 'agendada' as const,
      })),
    );
    const jobs = await h.fetchChargeJobs(10);
    t.equal(jobs.length, 2);
    const jobOf = (id: number) => jobs.find((job) => job.data.recorrenciaId === id) as (typeof jobs)[number];
    // Recording the decline fails inside Postgres, after the approval's statements have run.
    await query(
      h.url,
      `CREATE FUNCTION test_refuse_decline() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'decline refused by test'; END $$;
       CREATE TRIGGER test_refuse_decline BEFORE UPDATE ON checkout_recorrencia_cobrancas
       FOR EACH ROW WHEN (NEW.status = 'recusada') EXECUTE FUNCTION test_refuse_decline()`,
    );
    const results = await chargeJobs(h.deps, jobs);
    const statusOf = (statuses: ChargeResult[], id: number) =>
      statuses[jobs.findIndex((job) => job.data.recorrenciaId === id)]?.status;
    t.equal(statusOf(results, approvedId), 'approved', 'the approval, recorded alone, is kept');
    t.equal(statusOf(results, declinedId), 'failed', 'the decline fails (and retries)');
    t.same(
      (await attemptsOf(h.url, declinedId)).map((a) => a.status),
      ['pendente'],
      'the refused one leaves its attempt pending',
    );
    t.match(await recurrenceState(h.url, declinedId), { proxima_cobranca: DAY, falhas_consecutivas: 0 });
    t.equal(await jobState(h.url, jobOf(approvedId).id), 'completed');
    t.equal(await jobState(h.url, jobOf(declinedId).id), 'active', 'the failed job is not completed');

    await query(h.url, 'DROP TRIGGER test_refuse_decline ON checkout_recorrencia_cobrancas');
    await h.boss.fail(
      CHARGE_QUEUE,
      { id: jobOf(declinedId).id, retryCount: jobOf(declinedId).retryCount },
      {},
    );
    t.equal(await retryJob(h, jobOf(declinedId).id).then((result) => result.status), 'declined');
    t.match(
      h.gateway.stats(),
      { charge_requests: 2, charges_executed: 2, lookups: 1 },
      'each attempt charged once: the retry resumed its attempt by looking its key up',
    );
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

/** The first attempt of recurrence $1's next cycle, pending, as a phase 1 creates it; $2: blocked by this code. */
const PENDING_FIRST_ATTEMPT = `INSERT INTO checkout_recorrencia_cobrancas
    (recorrencia_id, ciclo, tentativa, chave_idempotencia, valor_centavos, moeda, cartao_token, data_negocio,
     envios, enviada_em, codigo_recusa)
  SELECT id, proxima_cobranca, 1, 'rec-' || id || '-' || proxima_cobranca || '-t1', valor_centavos, moeda,
    cartao_token, proxima_cobranca, 1, now(), $2
  FROM checkout_recorrencias WHERE id = $1`;

/**
 * Another transaction holding recurrence `id`'s lock, having run `meanwhile` under it: runs `charge` until it
 * waits on that lock, then the other transaction commits.
 */
async function whileLockedBy<T>(
  t: Test,
  h: Harness,
  id: number,
  meanwhile: (other: pg.Client) => Promise<unknown>,
  charge: () => Promise<T>,
): Promise<T> {
  const other = new pg.Client({ connectionString: h.url });
  await other.connect();
  t.teardown(() => other.end());
  await other.query('BEGIN');
  await other.query('SELECT id FROM checkout_recorrencias WHERE id = $1 FOR UPDATE', [id]);
  await meanwhile(other);
  const charging = charge();
  await lockWaiters(h.url);
  await other.query('COMMIT');
  return charging;
}

/**
 * Another worker's phase 1 for recurrence `id` (a retry job racing the daily one), holding its lock with a
 * pending attempt for its next cycle not yet committed: runs `charge` until it waits on that lock,
 * then the other phase 1 commits.
 */
function afterAnotherPhase1<T>(t: Test, h: Harness, id: number, charge: () => Promise<T>): Promise<T> {
  return whileLockedBy(t, h, id, (other) => other.query(PENDING_FIRST_ATTEMPT, [id, null]), charge);
}

/** A recurrence due on DAY, resumed from a pause on `date` (its cycles before it are the pause's). */
async function resumedOn(h: Harness, date: string): Promise<number> {
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
  await query(h.url, 'UPDATE checkout_recorrencias SET cobrar_a_partir_de = $2 WHERE id = $1', [id, date]);
  return id;
}

async function fetchedChargeJob(h: Harness, id: number, date: string) {
  await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: date, motivo: 'agendada' }]);
  const [job] = await h.fetchChargeJobs();
  if (job === undefined) throw new Error('no charge job to fetch');
  return job;
}

t.test(
  'a charge that waited on another phase 1 for its recurrence resumes the attempt made meanwhile',
  async (t) => {
    const h = await createHarness(t);
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
    const job = await fetchedChargeJob(h, id, DAY);
    t.match(
      await afterAnotherPhase1(t, h, id, () => chargeRecurrence(h.deps, job)),
      { status: 'approved', key: `rec-${id}-${DAY}-t1` },
      'the attempt committed while it waited is resumed under its key',
    );
    t.same(
      (await attemptsOf(h.url, id)).map((a) => a.status),
      ['aprovada'],
      'no second attempt',
    );
    t.match(h.gateway.stats(), { charges_executed: 1 });
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test(
  'a charge that waited on another phase 1 does not move the recurrence past a pause under its pending attempt',
  async (t) => {
    const h = await createHarness(t);
    // Resumed on 03-20 while the 03-10 cycle was in flight, declined: its retry job is the other phase 1.
    const id = await resumedOn(h, '2031-03-20');
    const job = await fetchedChargeJob(h, id, DAY);
    t.match(await afterAnotherPhase1(t, h, id, () => chargeRecurrence(h.deps, job)), {
      status: 'approved',
      cycle: DAY,
      key: `rec-${id}-${DAY}-t1`,
    });
    t.same(
      await query(h.url, 'SELECT ciclo FROM checkout_recorrencia_ciclos_pulados WHERE recorrencia_id = $1', [
        id,
      ]),
      [],
      'the cycle of the pending attempt is not also recorded as skipped',
    );
    t.match(await recurrenceState(h.url, id), { proxima_cobranca: '2031-04-10', ciclos_cobrados: 1 });
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test('several cycles behind: charge the current cycle once and record the skipped ones', async (t) => {
  const h = await createHarness(t);
  const id = await insertRecurrence(h.pool, { proxima_cobranca: '2031-01-01', periodicidade: 'semanal' });
  const { result } = await chargeOnce(h, id, '2031-01-29');
  t.match(result, { status: 'approved', cycle: '2031-01-29' });
  const skipped = await query<{ ciclo: string; cobrado_no_ciclo: string }>(
    h.url,
    'SELECT ciclo::text, cobrado_no_ciclo::text FROM checkout_recorrencia_ciclos_pulados WHERE recorrencia_id = $1 ORDER BY ciclo',
    [id],
  );
  t.same(
    skipped.map((row) => row.ciclo),
    ['2031-01-01', '2031-01-08', '2031-01-15', '2031-01-22'],
  );
  t.equal((await recurrenceState(h.url, id)).proxima_cobranca, '2031-02-05');
  t.equal(h.gateway.ledger().length, 1, 'charged once');
});

t.test('one cycle behind (the service was down yesterday) is charged for that cycle', async (t) => {
  const h = await createHarness(t);
  const id = await insertRecurrence(h.pool, { proxima_cobranca: '2031-03-09' });
  t.match((await chargeOnce(h, id, DAY)).result, { status: 'approved', cycle: '2031-03-09' });
  t.equal((await recurrenceState(h.url, id)).proxima_cobranca, '2031-04-09');
});

t.test('with back-billing on, every missed cycle is charged, each by its own job', async (t) => {
  const h = await createHarness(t, { env: { BACKBILL_MISSED_CYCLES: 'true' } });
  const id = await insertRecurrence(h.pool, { proxima_cobranca: '2031-01-31', dia_ancora: 31 });
  t.match((await chargeOnce(h, id, '2031-03-31')).result, { status: 'approved', cycle: '2031-01-31' });
  for (const cycle of ['2031-02-28', '2031-03-31']) {
    const [job] = await h.fetchChargeJobs();
    t.equal(job?.data.motivo, 'retroativa', 'the next missed cycle was enqueued with the approval');
    t.match(await chargeRecurrence(h.deps, job as never), { status: 'approved', cycle });
  }
  t.same(await h.fetchChargeJobs(), [], 'nothing more once caught up');
  t.equal((await recurrenceState(h.url, id)).proxima_cobranca, '2031-04-30');
  await assertLedgerAgrees(t, h.url, h.gateway);
});

t.test(
  "back-billing charges up to each job's own date, not a later date of another job in its batch",
  async (t) => {
    const h = await createHarness(t, { env: { BACKBILL_MISSED_CYCLES: 'true' } });
    const early = await insertRecurrence(h.pool, { proxima_cobranca: '2031-01-31', dia_ancora: 31 });
    const late = await insertRecurrence(h.pool, { proxima_cobranca: '2031-03-31', dia_ancora: 31 });
    await enqueueChargeJobs(h.boss, [
      { recorrenciaId: early, dataNegocio: '2031-01-31', motivo: 'agendada' },
      { recorrenciaId: late, dataNegocio: '2031-03-31', motivo: 'agendada' },
    ]);
    const jobs = await h.fetchChargeJobs(2);
    t.equal(jobs.length, 2, 'one batch');
    t.match(await chargeJobs(h.deps, jobs), [{ status: 'approved' }, { status: 'approved' }]);
    // The early one's next cycle (02-28) falls after its job's date: not missed, not charged now.
    t.same(await h.fetchChargeJobs(), [], 'no back-billing job');
    t.equal((await recurrenceState(h.url, early)).proxima_cobranca, '2031-02-28');
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test('the last approved cycle of a fixed-length recurrence makes it concluido', async (t) => {
  const h = await createHarness(t);
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, total_ciclos: 3, ciclos_cobrados: 2 });
  t.match((await chargeOnce(h, id, DAY)).result, { status: 'approved' });
  t.match(await recurrenceState(h.url, id), { status: 'concluido', ciclos_cobrados: 3 });
  const [ended] = await query<{ encerrada: boolean }>(
    h.url,
    'SELECT encerrada_em IS NOT NULL AS encerrada FROM checkout_recorrencias WHERE id = $1',
    [id],
  );
  t.equal(ended?.encerrada, true);
});

t.test(
  'a recurrence cancelled while its charge is in flight keeps the charge and stops the next',
  async (t) => {
    const h = await createHarness(t);
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
    h.gateway.setFaults({ rules: [{ nth: 1, fault: 'hold' }] });
    const charging = chargeOnce(h, id, DAY);
    await h.gateway.waitForHeld(1);
    await query(
      h.url,
      `UPDATE checkout_recorrencias SET status = 'cancelado', encerrada_em = now() WHERE id = $1`,
      [id],
    );
    h.gateway.release();
    t.match((await charging).result, { status: 'approved' }, 'the money moved: the approval is recorded');
    t.match(await recurrenceState(h.url, id), { status: 'cancelado', proxima_cobranca: '2031-04-10' });
    t.match((await chargeOnce(h, id, '2031-04-10')).result, {
      status: 'skipped',
      reason: 'recurrence_cancelado',
    });
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

/**
 * A recurrence due on DAY with `cardToken`, whose charge the checkout pauses while it is at the gateway (and then
 * does `meanwhile`, the request still there); returns its id and the charge's result once the gateway answers.
 */
async function chargedWhilePausing(
  h: Harness,
  cardToken: string,
  meanwhile: (id: number) => Promise<unknown> = async () => {},
) {
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, cartao_token: cardToken });
  h.gateway.setFaults({ rules: [{ nth: 1, fault: 'hold' }] });
  const charging = chargeOnce(h, id, DAY);
  await h.gateway.waitForHeld(1);
  await transitionRecurrence(h.deps, testActor('checkout'), id, 'pausar');
  await meanwhile(id);
  h.gateway.release();
  return { id, result: (await charging).result };
}

t.test(
  'a card irreversibly declined while the recurrence was paused is not charged again: retomar puts it on hold',
  async (t) => {
    const h = await createHarness(t);
    /** A recurrence whose card is declined irreversibly (14) while the checkout pauses it. */
    const declinedDuringPause = async () => {
      const { id, result } = await chargedWhilePausing(h, 'tok_recusa_irreversivel');
      t.match(result, { status: 'declined', code: '14' });
      t.match(await recurrenceState(h.url, id), { status: 'pausado' }, 'the pause stays while paused');
      return id;
    };
    const id = await declinedDuringPause();

    // Resumed two months later: the declined cycle is owed from before the pause, so the next charge stays.
    h.setNow(new Date('2031-05-20T15:00:00Z'));
    const resumed = await transitionRecurrence(h.deps, testActor('checkout'), id, 'retomar');
    t.match(resumed, {
      mudou: true,
      recorrencia: {
        status: 'hold',
        proxima_cobranca: DAY,
        motivo_hold: /irreversível \(código 14\) durante a pausa/,
      },
    });
    t.same(
      (await listChangeHistory(h.pool, id)).map((row) => [row.campo, row.valor_novo]),
      [
        ['status', 'pausado'],
        ['status', 'hold'],
      ],
    );
    t.match(
      await transitionRecurrence(h.deps, testActor('checkout'), id, 'retomar'),
      { mudou: false, recorrencia: { status: 'hold' } },
      'a retried retomar gets the same answer',
    );
    t.same(
      await query(
        h.url,
        `SELECT tipo FROM eventos_checkout WHERE recorrencia_id = $1 AND tipo = 'recorrencia_em_hold'`,
        [id],
      ),
      [{ tipo: 'recorrencia_em_hold' }],
      'the checkout is told of the hold, once',
    );
    t.match((await chargeOnce(h, id, '2031-06-10')).result, { status: 'skipped', reason: 'recurrence_hold' });
    await t.rejects(
      reactivateRecurrence(h.deps, testActor('operador'), id),
      { code: 'CONFLICT' },
      'same card: refused',
    );
    await changeRecurrence(h.deps, testActor('checkout'), id, { cartao_token: 'tok_cartao_novo' });
    await reactivateRecurrence(h.deps, testActor('operador'), id);
    // Reactivated once a cycle after the pause is due: without back-billing only that one is charged.
    t.match((await chargeOnce(h, id, '2031-06-11')).result, { status: 'approved', cycle: '2031-06-10' });
    t.same(await skippedCyclesOf(h.url, id), [
      { ciclo: DAY, motivo: BEHIND },
      { ciclo: '2031-04-10', motivo: PAUSED },
      { ciclo: '2031-05-10', motivo: PAUSED },
    ]);
    t.same(
      await query(
        h.url,
        `SELECT status, cartao_token FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1 ORDER BY tentativa`,
        [id],
      ),
      [
        { status: 'recusada', cartao_token: 'tok_recusa_irreversivel' },
        { status: 'aprovada', cartao_token: 'tok_cartao_novo' },
      ],
      'the declined card was sent once',
    );
    await assertLedgerAgrees(t, h.url, h.gateway);

    // A new card given during the pause: resumed as usual.
    const other = await declinedDuringPause();
    await changeRecurrence(h.deps, testActor('checkout'), other, { cartao_token: 'tok_cartao_novo' });
    t.match((await transitionRecurrence(h.deps, testActor('checkout'), other, 'retomar')).recorrencia, {
      status: 'ativo',
    });

    // Only the date changed during the pause: the same card would be sent again.
    h.setNow(new Date(`${DAY}T15:00:00Z`));
    const moved = await declinedDuringPause();
    await changeRecurrence(h.deps, testActor('checkout'), moved, { proxima_cobranca: '2031-06-10' });
    t.match((await transitionRecurrence(h.deps, testActor('checkout'), moved, 'retomar')).recorrencia, {
      status: 'hold',
      motivo_hold: /irreversível \(código 14\) durante a pausa/,
    });
  },
);

t.test(
  'a card declined reversibly while the recurrence was paused keeps the retry: the cycle is charged after retomar',
  async (t) => {
    const h = await createHarness(t);
    const { id, result } = await chargedWhilePausing(h, 'tok_recusa_reversivel');
    t.match(result, { status: 'declined', code: '51', decision: 'retry' });
    t.match(
      await recurrenceState(h.url, id),
      { status: 'pausado', proxima_tentativa: '2031-03-11', falhas_consecutivas: 1 },
      'paused, with the retry the result announces',
    );

    // Resumed two months later: the declined cycle is owed from before the pause, not forgiven.
    h.setNow(new Date('2031-05-20T15:00:00Z'));
    await transitionRecurrence(h.deps, testActor('checkout'), id, 'retomar');
    t.match(await recurrenceState(h.url, id), {
      status: 'ativo',
      proxima_cobranca: DAY,
      proxima_tentativa: '2031-03-11',
    });
    await changeRecurrence(h.deps, testActor('checkout'), id, { cartao_token: 'tok_aprova_2' });
    t.match((await chargeOnce(h, id, '2031-05-20', 'retentativa')).result, {
      status: 'approved',
      cycle: DAY,
    });
    t.match(await recurrenceState(h.url, id), { proxima_cobranca: '2031-06-10', proxima_tentativa: null });
    t.same(
      await skippedCyclesOf(h.url, id),
      [
        { ciclo: '2031-04-10', motivo: PAUSED },
        { ciclo: '2031-05-10', motivo: PAUSED },
      ],
      'only the cycles of the pause are skipped',
    );
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test(
  'after an irreversible decline a card changed and changed back is the declined card, and a new amount lifts the refusal only for code 13',
  async (t) => {
    const h = await createHarness(t);
    const id = await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      cartao_token: 'tok_recusa_irreversivel',
    });
    t.match((await chargeOnce(h, id, DAY)).result, { status: 'declined', code: '14' });
    await changeRecurrence(h.deps, testActor('checkout'), id, { cartao_token: 'tok_outro_cartao' });
    await changeRecurrence(h.deps, testActor('checkout'), id, { cartao_token: 'tok_recusa_irreversivel' });
    await t.rejects(
      reactivateRecurrence(h.deps, testActor('operador'), id),
      { code: 'CONFLICT' },
      'the declined card',
    );
    await changeRecurrence(h.deps, testActor('checkout'), id, { valor_centavos: 5_990 });
    await t.rejects(
      reactivateRecurrence(h.deps, testActor('operador'), id),
      { code: 'CONFLICT' },
      '14 is not about it',
    );
    // Had the issuer answered 13 (invalid amount), the new amount is what the code was about.
    await query(
      h.url,
      `UPDATE checkout_recorrencia_cobrancas SET codigo_recusa = '13' WHERE recorrencia_id = $1`,
      [id],
    );
    await reactivateRecurrence(h.deps, testActor('operador'), id);
    t.match(await recurrenceState(h.url, id), { status: 'ativo' });
  },
);

for (const status of ['cancelado', 'pausado', 'hold'] as const) {
  t.test(
    `a charge whose outcome was unknown when the recurrence became ${status} is resolved by its retry`,
    async (t) => {
      const { h, id, jobId, result } = await chargedWithUnknownOutcome(t);
      t.match(result, { status: 'unresolved' });
      await query(
        h.url,
        `UPDATE checkout_recorrencias SET status = $2,
           motivo_hold = CASE WHEN $2 = 'hold' THEN 'teste' END, hold_em = CASE WHEN $2 = 'hold' THEN now() END,
           encerrada_em = CASE WHEN $2 = 'cancelado' THEN now() END
         WHERE id = $1`,
        [id, status],
      );
      await h.boss.fail(CHARGE_QUEUE, { id: jobId, retryCount: 0 }, {});
      t.match(
        await retryJob(h, jobId),
        { status: 'approved' },
        'the retry looks the key up and records what the gateway did',
      );
      t.same(
        (await attemptsOf(h.url, id)).map((a) => a.status),
        ['aprovada'],
      );
      t.match(await recurrenceState(h.url, id), { status, ciclos_cobrados: 1 });
      await assertLedgerAgrees(t, h.url, h.gateway);
    },
  );
}

for (const backbill of [false, true]) {
  t.test(
    `an unknown outcome resolved after a pause and retomar: the cycles of the pause are skipped, not charged (back-billing ${backbill ? 'on' : 'off'})`,
    async (t) => {
      const { h, id, jobId, result } = await chargedWithUnknownOutcome(t, {}, backbill);
      t.match(result, { status: 'unresolved' });
      h.setNow(new Date('2031-03-11T15:00:00Z'));
      await transitionRecurrence(h.deps, testActor('checkout'), id, 'pausar');
      // Resumed on 2031-05-20, the charge of 03-10 still unresolved: 04-10 and 05-10 fell in the pause.
      h.setNow(new Date('2031-05-20T15:00:00Z'));
      t.match(await transitionRecurrence(h.deps, testActor('checkout'), id, 'retomar'), {
        recorrencia: { status: 'ativo' },
        cobranca_em_andamento: { ciclo: DAY },
      });
      await h.boss.fail(CHARGE_QUEUE, { id: jobId, retryCount: 0 }, {});
      t.match(await retryJob(h, jobId), { status: 'approved', cycle: DAY });
      t.match(await recurrenceState(h.url, id), {
        status: 'ativo',
        proxima_cobranca: '2031-06-10',
        ciclos_cobrados: 1,
      });
      t.same(await skippedCyclesOf(h.url, id), [
        { ciclo: '2031-04-10', motivo: PAUSED },
        { ciclo: '2031-05-10', motivo: PAUSED },
      ]);
      t.same(await h.fetchChargeJobs(), [], 'no back-billing job for a cycle of the pause');
      t.match((await chargeOnce(h, id, '2031-05-21')).result, { status: 'skipped' });
      t.equal(h.gateway.ledger().length, 1, 'only the charge made before the pause');
      await assertLedgerAgrees(t, h.url, h.gateway);
    },
  );
}

t.test(
  'a charge in flight at retomar then declined: after reativar the next run charges that cycle, not the ones of the pause',
  async (t) => {
    const { h, id, jobId } = await chargedWithUnknownOutcome(t, {
      cartao_token: 'tok_recusa_irreversivel_1',
    });
    h.setNow(new Date('2031-03-11T15:00:00Z'));
    await transitionRecurrence(h.deps, testActor('checkout'), id, 'pausar');
    h.setNow(new Date('2031-05-20T15:00:00Z'));
    await transitionRecurrence(h.deps, testActor('checkout'), id, 'retomar');
    await h.boss.fail(CHARGE_QUEUE, { id: jobId, retryCount: 0 }, {});
    t.match(await retryJob(h, jobId), { status: 'declined', decision: 'hold' });
    await query(h.url, `UPDATE checkout_recorrencias SET cartao_token = 'tok_aprova_3' WHERE id = $1`, [id]);
    await reactivateRecurrence(h.deps, testActor('operador'), id);
    t.match(
      await recurrenceState(h.url, id),
      { status: 'ativo', proxima_cobranca: DAY },
      'the cycle declined is owed from before the pause: reativar leaves it',
    );
    h.setNow(new Date('2031-05-26T15:00:00Z'));
    t.match((await chargeOnce(h, id, '2031-05-26')).result, { status: 'approved', cycle: DAY });
    t.match(await recurrenceState(h.url, id), { status: 'ativo', proxima_cobranca: '2031-06-10' });
    t.same(await skippedCyclesOf(h.url, id), [
      { ciclo: '2031-04-10', motivo: PAUSED },
      { ciclo: '2031-05-10', motivo: PAUSED },
    ]);
    t.match((await chargeOnce(h, id, '2031-06-10')).result, { status: 'approved', cycle: '2031-06-10' });
    t.same(
      h.gateway.ledger().map((entry) => [entry.ciclo, entry.status]),
      [
        [DAY, 'declined'],
        [DAY, 'approved'],
        ['2031-06-10', 'approved'],
      ],
      'the decline whose answer was lost, then one charge per cycle',
    );
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

/**
 * A recurrence declined on DAY (retry planned), paused the next day and resumed on 05-20 keeping its retry, whose
 * retry is declined into hold (the decline limit); then the checkout gives a new card and an operator
 * reactivates it on `reactivatedOn`. Returns its id.
 */
async function heldAfterResuming(t: Test, h: Harness, reactivatedOn: string) {
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, cartao_token: 'tok_recusa_reversivel' });
  t.match((await chargeOnce(h, id, DAY)).result, { status: 'declined', decision: 'retry' });
  h.setNow(new Date('2031-03-11T15:00:00Z'));
  await transitionRecurrence(h.deps, testActor('checkout'), id, 'pausar');
  h.setNow(new Date('2031-05-20T15:00:00Z'));
  await transitionRecurrence(h.deps, testActor('checkout'), id, 'retomar');
  t.match((await chargeOnce(h, id, '2031-05-20', 'retentativa')).result, {
    status: 'declined',
    decision: 'hold',
  });
  await changeRecurrence(h.deps, testActor('checkout'), id, { cartao_token: 'tok_aprova_4' });
  h.setNow(new Date(`${reactivatedOn}T15:00:00Z`));
  await reactivateRecurrence(h.deps, testActor('operador'), id);
  t.match(await recurrenceState(h.url, id), { status: 'ativo', proxima_cobranca: DAY });
  return id;
}

t.test(
  'a cycle declined before a pause, then held after retomar: reativar and the next run charge that cycle',
  async (t) => {
    const h = await createHarness(t, { env: { MAX_DECLINES_BEFORE_HOLD: '2' } });
    const id = await heldAfterResuming(t, h, '2031-05-21');
    t.match(
      (await previewDueCharges(h.deps, '2031-05-21', { limit: 10 })).cobrancas,
      [{ recorrencia_id: id, ciclo: DAY, ciclos_pulados: 0 }],
      'the dry run says what the job then charges',
    );
    t.match((await chargeOnce(h, id, '2031-05-21')).result, { status: 'approved', cycle: DAY });
    t.match(await recurrenceState(h.url, id), { proxima_cobranca: '2031-06-10', ciclos_cobrados: 1 });
    t.same(await skippedCyclesOf(h.url, id), [
      { ciclo: '2031-04-10', motivo: PAUSED },
      { ciclo: '2031-05-10', motivo: PAUSED },
    ]);
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

for (const backbill of [false, true]) {
  t.test(
    `that cycle reactivated once a cycle after the pause is due: back-billing ${backbill ? 'on charges both' : 'off charges the latest'}`,
    async (t) => {
      const h = await createHarness(t, {
        env: { MAX_DECLINES_BEFORE_HOLD: '2', BACKBILL_MISSED_CYCLES: String(backbill) },
      });
      const id = await heldAfterResuming(t, h, '2031-06-15');
      t.match(
        (await previewDueCharges(h.deps, '2031-06-15', { limit: 10 })).cobrancas,
        [
          backbill
            ? { recorrencia_id: id, ciclo: DAY, ciclos_pulados: 0 }
            : { recorrencia_id: id, ciclo: '2031-06-10', ciclos_pulados: 3 },
        ],
        'the dry run says what the job then charges',
      );
      const first = await chargeOnce(h, id, '2031-06-15');
      if (backbill) {
        t.match(first.result, { status: 'approved', cycle: DAY });
        const [job] = await h.fetchChargeJobs();
        t.match(await chargeRecurrence(h.deps, job as never), { status: 'approved', cycle: '2031-06-10' });
      } else {
        t.match(first.result, { status: 'approved', cycle: '2031-06-10' });
      }
      t.same(await h.fetchChargeJobs(), [], 'nothing more to charge');
      t.match(await recurrenceState(h.url, id), { proxima_cobranca: '2031-07-10' });
      t.same(await skippedCyclesOf(h.url, id), [
        ...(backbill ? [] : [{ ciclo: DAY, motivo: BEHIND }]),
        { ciclo: '2031-04-10', motivo: PAUSED },
        { ciclo: '2031-05-10', motivo: PAUSED },
      ]);
      await assertLedgerAgrees(t, h.url, h.gateway);
    },
  );
}

t.test(
  'a late job (a run for a date before the cycle after the pause) charges what the run of the day would, once',
  async (t) => {
    const h = await createHarness(t, { env: { MAX_DECLINES_BEFORE_HOLD: '2' } });
    const id = await heldAfterResuming(t, h, '2031-06-12');
    t.match(
      (await previewDueCharges(h.deps, '2031-06-01', { limit: 10 })).cobrancas,
      [{ recorrencia_id: id, ciclo: '2031-06-10', ciclos_pulados: 3 }],
      'the dry run of that date run today says what the job then charges',
    );
    t.match((await chargeOnce(h, id, '2031-06-01')).result, { status: 'approved', cycle: '2031-06-10' });
    t.match((await chargeOnce(h, id, '2031-06-12')).result, { status: 'skipped', reason: 'not_due' });
    t.same(
      h.gateway
        .ledger()
        .filter((entry) => entry.status === 'approved')
        .map((entry) => entry.ciclo),
      ['2031-06-10'],
      'one charge, for the latest cycle: back-billing is off',
    );
    t.same(await skippedCyclesOf(h.url, id), [
      { ciclo: DAY, motivo: BEHIND },
      { ciclo: '2031-04-10', motivo: PAUSED },
      { ciclo: '2031-05-10', motivo: PAUSED },
    ]);
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test(
  'a decline while paused that reaches the decline limit holds the recurrence at retomar, unless the card changed',
  async (t) => {
    const h = await createHarness(t, { env: { MAX_DECLINES_BEFORE_HOLD: '1' } });
    const declinedDuringPause = async () => {
      const { id, result } = await chargedWhilePausing(h, 'tok_recusa_reversivel');
      t.match(result, { status: 'declined', code: '51', decision: 'hold' });
      t.match(
        await recurrenceState(h.url, id),
        { status: 'pausado', falhas_consecutivas: 1, proxima_tentativa: null },
        'counted; the pause stays',
      );
      return id;
    };
    const id = await declinedDuringPause();
    h.setNow(new Date('2031-05-20T15:00:00Z'));
    t.match((await transitionRecurrence(h.deps, testActor('checkout'), id, 'retomar')).recorrencia, {
      status: 'hold',
      proxima_cobranca: DAY,
      motivo_hold: /recusa \(código 51\) durante a pausa sem retentativa restante/,
    });
    t.same(await skippedCyclesOf(h.url, id), [], 'the cycle is owed, not skipped');
    t.same(
      await query(
        h.url,
        `SELECT tipo FROM eventos_checkout WHERE recorrencia_id = $1 AND tipo = 'recorrencia_em_hold'`,
        [id],
      ),
      [{ tipo: 'recorrencia_em_hold' }],
    );

    // A new card given during the pause: resumed active, and the next run charges the cycle owed.
    h.setNow(new Date(`${DAY}T15:00:00Z`));
    const other = await declinedDuringPause();
    await changeRecurrence(h.deps, testActor('checkout'), other, { cartao_token: 'tok_aprova_5' });
    h.setNow(new Date('2031-05-20T15:00:00Z'));
    t.match((await transitionRecurrence(h.deps, testActor('checkout'), other, 'retomar')).recorrencia, {
      status: 'ativo',
      proxima_cobranca: DAY,
      falhas_consecutivas: 0,
    });
    t.match((await chargeOnce(h, other, '2031-05-21')).result, { status: 'approved', cycle: DAY });

    // The same, the card changed as it paused while the request was still at the gateway.
    h.setNow(new Date(`${DAY}T15:00:00Z`));
    const { id: third } = await chargedWhilePausing(h, 'tok_recusa_reversivel', (paused) =>
      changeRecurrence(h.deps, testActor('checkout'), paused, { cartao_token: 'tok_aprova_7' }),
    );
    h.setNow(new Date('2031-05-20T15:00:00Z'));
    t.match((await transitionRecurrence(h.deps, testActor('checkout'), third, 'retomar')).recorrencia, {
      status: 'ativo',
      falhas_consecutivas: 0,
    });
    t.match(await recurrenceState(h.url, other), { proxima_cobranca: '2031-06-10' });
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test(
  'cycles that fell due before a pause began are owed: with back-billing each is charged after the resume',
  async (t) => {
    const h = await createHarness(t, { env: { BACKBILL_MISSED_CYCLES: 'true' } });
    const id = await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      cartao_token: 'tok_recusa_irreversivel',
    });
    t.match((await chargeOnce(h, id, DAY)).result, { status: 'declined', decision: 'hold' });
    // Reactivated three months later with a new card, then paused and resumed on the same day.
    h.setNow(new Date('2031-06-15T15:00:00Z'));
    await changeRecurrence(h.deps, testActor('checkout'), id, { cartao_token: 'tok_aprova_8' });
    await reactivateRecurrence(h.deps, testActor('operador'), id);
    await transitionRecurrence(h.deps, testActor('checkout'), id, 'pausar');
    await transitionRecurrence(h.deps, testActor('checkout'), id, 'retomar');
    t.match(await recurrenceState(h.url, id), {
      status: 'ativo',
      proxima_cobranca: DAY,
      pausada_desde: '2031-06-15',
    });
    t.match((await chargeOnce(h, id, '2031-06-16')).result, { status: 'approved', cycle: DAY });
    for (const cycle of ['2031-04-10', '2031-05-10', '2031-06-10']) {
      const [job] = await h.fetchChargeJobs();
      t.match(await chargeRecurrence(h.deps, job as never), { status: 'approved', cycle });
    }
    t.same(await h.fetchChargeJobs(), [], 'caught up');
    t.same(await skippedCyclesOf(h.url, id), [], 'nothing written off');
    t.match(await recurrenceState(h.url, id), { proxima_cobranca: '2031-07-10' });
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test(
  'an owed cycle whose attempt another transaction ended while phase 1 waited: decided past the pause all the same',
  async (t) => {
    const h = await createHarness(t);
    h.setNow(new Date('2031-06-12T15:00:00Z'));
    // Resumed on 05-20 while its attempt for 03-10 was blocked: active, that cycle owed.
    const id = await resumedOn(h, '2031-05-20');
    await query(h.url, PENDING_FIRST_ATTEMPT, [id, 'idempotency_key_reused']);
    // An operator's nao_cobrada, under the recurrence's lock, while a job for 06-12 waits for that lock.
    const charging = whileLockedBy(
      t,
      h,
      id,
      (other) =>
        other.query(
          `UPDATE checkout_recorrencia_cobrancas SET status = 'rejeitada', resolvida_em = now() WHERE recorrencia_id = $1`,
          [id],
        ),
      () => chargeOnce(h, id, '2031-06-12'),
    );
    t.match((await charging).result, { status: 'approved', cycle: '2031-06-10' });
    t.same(
      await skippedCyclesOf(h.url, id),
      [
        { ciclo: DAY, motivo: BEHIND },
        { ciclo: '2031-04-10', motivo: PAUSED },
        { ciclo: '2031-05-10', motivo: PAUSED },
      ],
      'as the job would have decided without the wait: only the latest cycle, back-billing off',
    );
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test(
  "later pauses keep the first one's cycles its own: back-billing charges the cycles due between them",
  async (t) => {
    const h = await createHarness(t, {
      env: { MAX_DECLINES_BEFORE_HOLD: '2', BACKBILL_MISSED_CYCLES: 'true' },
    });
    // Paused 03-11 to 05-20 (04-10 and 05-10), held until 08-15, then paused and resumed on 08-15.
    const id = await heldAfterResuming(t, h, '2031-08-15');
    await transitionRecurrence(h.deps, testActor('checkout'), id, 'pausar');
    await transitionRecurrence(h.deps, testActor('checkout'), id, 'retomar');
    // A third, 08-20 to 08-25, holding no cycle: the first is still ahead and stays.
    h.setNow(new Date('2031-08-20T15:00:00Z'));
    await transitionRecurrence(h.deps, testActor('checkout'), id, 'pausar');
    h.setNow(new Date('2031-08-25T15:00:00Z'));
    await transitionRecurrence(h.deps, testActor('checkout'), id, 'retomar');
    t.match((await chargeOnce(h, id, '2031-08-25')).result, { status: 'approved', cycle: DAY });
    for (const cycle of ['2031-06-10', '2031-07-10', '2031-08-10']) {
      const [job] = await h.fetchChargeJobs();
      t.match(await chargeRecurrence(h.deps, job as never), { status: 'approved', cycle });
    }
    t.same(await h.fetchChargeJobs(), [], 'caught up');
    t.same(await skippedCyclesOf(h.url, id), [
      { ciclo: '2031-04-10', motivo: PAUSED },
      { ciclo: '2031-05-10', motivo: PAUSED },
    ]);
    t.match(await recurrenceState(h.url, id), { proxima_cobranca: '2031-09-10' });
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test(
  'two late jobs of one batch for a recurrence moved past its pause: each is judged on the row as locked',
  async (t) => {
    const h = await createHarness(t);
    h.setNow(new Date('2031-06-12T15:00:00Z'));
    // Paused 03-11 to 05-20: 03-10 owed; without back-billing the 06-12 plan charges 06-10 instead.
    const id = await resumedOn(h, '2031-05-20');
    await query(h.url, `UPDATE checkout_recorrencias SET pausada_desde = '2031-03-11' WHERE id = $1`, [id]);
    await enqueueChargeJobs(h.boss, [
      { recorrenciaId: id, dataNegocio: '2031-03-01', motivo: 'agendada' },
      { recorrenciaId: id, dataNegocio: '2031-06-01', motivo: 'agendada' },
    ]);
    const jobs = (await h.fetchChargeJobs(2)).sort((a, b) =>
      a.data.dataNegocio.localeCompare(b.data.dataNegocio),
    );
    t.equal(jobs.length, 2, 'one batch');
    t.match(await chargeJobs(h.deps, jobs), [
      { status: 'skipped', reason: 'not_due' },
      { status: 'approved', cycle: '2031-06-10' },
    ]);
    t.same(
      (await previewDueCharges(h.deps, '2031-06-01', { limit: 10 })).cobrancas,
      [],
      'nothing left for that date',
    );
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test(
  'phase 1 never charges a cycle before the resume date, however the recurrence got there',
  async (t) => {
    const h = await createHarness(t);
    const id = await resumedOn(h, '2031-05-20');
    t.match((await chargeOnce(h, id, '2031-05-26')).result, { status: 'skipped', reason: 'not_due' });
    t.match(await recurrenceState(h.url, id), { proxima_cobranca: '2031-06-10' });
    t.equal(h.gateway.ledger().length, 0);
  },
);

t.test(
  'a recurrence paused while its last cycle is charged ends (concluido): resuming it charges nothing more',
  async (t) => {
    const h = await createHarness(t);
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, total_ciclos: 2, ciclos_cobrados: 1 });
    h.gateway.setFaults({ rules: [{ nth: 1, fault: 'hold' }] });
    const charging = chargeOnce(h, id, DAY);
    await h.gateway.waitForHeld(1);
    await query(h.url, `UPDATE checkout_recorrencias SET status = 'pausado' WHERE id = $1`, [id]);
    h.gateway.release();
    t.match((await charging).result, { status: 'approved' });
    t.match(await recurrenceState(h.url, id), { status: 'concluido', ciclos_cobrados: 2 });
    const [event] = await query<{ tipo: string }>(
      h.url,
      `SELECT tipo FROM eventos_checkout WHERE recorrencia_id = $1 AND tipo = 'recorrencia_concluida'`,
      [id],
    );
    t.equal(event?.tipo, 'recorrencia_concluida', 'the checkout is told it ended');
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test(
  'a job that waited for the recurrence while another resolved its attempt sees the retry planned meanwhile',
  async (t) => {
    const { h, id, result } = await chargedWithUnknownOutcome(t);
    t.match(result, { status: 'unresolved' });
    // Another transaction holds the recurrence while it records a reversible decline of that attempt and plans
    // its retry, as a phase 3 does; meanwhile a job for another business date locks the recurrence and waits.
    const other = new pg.Client({ connectionString: h.url });
    await other.connect();
    t.teardown(() => other.end());
    await other.query('BEGIN');
    await other.query('SELECT 1 FROM checkout_recorrencias WHERE id = $1 FOR UPDATE', [id]);
    await other.query(
      `UPDATE checkout_recorrencia_cobrancas SET status = 'recusada', resolvida_em = now(), codigo_recusa = '51',
         recusa_reversivel = true WHERE recorrencia_id = $1`,
      [id],
    );
    await other.query(
      `UPDATE checkout_recorrencias SET proxima_tentativa = '2031-03-12', falhas_consecutivas = 1 WHERE id = $1`,
      [id],
    );
    const waiting = chargeOnce(h, id, '2031-03-11');
    await eventually(async () => {
      const [row] = await query<{ n: number }>(
        h.url,
        `SELECT count(*)::int AS n FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%tem_pendente%'`,
      );
      return row?.n === 1 ? true : undefined;
    });
    await other.query('COMMIT');
    t.match(
      (await waiting).result,
      { status: 'skipped', reason: 'waiting_for_retry' },
      'no new attempt before the retry date',
    );
    t.same(
      (await attemptsOf(h.url, id)).map((a) => a.status),
      ['recusada'],
    );
  },
);

t.test('the amount of a charge in flight is kept when the recurrence changes meanwhile', async (t) => {
  const { h, id, jobId } = await chargedWithUnknownOutcome(t, { valor_centavos: 1000 });
  await query(
    h.url,
    `UPDATE checkout_recorrencias SET valor_centavos = 2000, cartao_token = 'tok_novo' WHERE id = $1`,
    [id],
  );
  await h.boss.fail(CHARGE_QUEUE, { id: jobId, retryCount: 0 }, {});
  t.match(await retryJob(h, jobId), { status: 'approved', amountCents: 1000 });
  await assertLedgerAgrees(t, h.url, h.gateway);
});

t.test(
  'a request the gateway rejects (not a decline) holds the recurrence and dead-letters the job',
  async (t) => {
    const h = await createHarness(t);
    // The gateway refuses card tokens over 512 characters: 400 invalid_request.
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, cartao_token: TOO_LONG_TOKEN });
    const { result } = await chargeOnce(h, id, DAY);
    t.match(result, { status: 'rejected' });
    const state = await recurrenceState(h.url, id);
    t.equal(state.status, 'hold');
    t.match(state.motivo_hold, /gateway rejeitou/);
    t.equal(state.falhas_consecutivas, 0, 'not counted as a decline');
    const attempts = () =>
      query<{ status: string; codigo_recusa: string | null; mensagem: string | null; cartao_token: string }>(
        h.url,
        `SELECT status, codigo_recusa, mensagem, cartao_token FROM checkout_recorrencia_cobrancas
         WHERE recorrencia_id = $1 ORDER BY tentativa`,
        [id],
      );
    const [refused] = await attempts();
    t.match(
      refused,
      { status: 'rejeitada', codigo_recusa: 'invalid_request', mensagem: /card_token/ },
      'the refused attempt ends, not as a decline: resumed, it would be refused again for ever',
    );
    t.match(
      (await recurrenceStats(h.pool, DAY)).tentativas_na_data,
      { recusada: { quantidade: 0 }, rejeitada: { quantidade: 1 } },
      'not among the declines of the day',
    );

    // Not a decline, so reactivating needs no change first; the same request is refused again, nothing charged.
    await reactivateRecurrence(h.deps, testActor('operador'), id);
    t.match((await chargeOnce(h, id, '2031-03-11')).result, { status: 'rejected' });
    t.match(await recurrenceState(h.url, id), { status: 'hold' });
    // With the card fixed, the cycle is charged.
    await changeRecurrence(h.deps, testActor('operador'), id, { cartao_token: 'tok_novo_cartao' });
    await reactivateRecurrence(h.deps, testActor('operador'), id);
    t.match((await chargeOnce(h, id, '2031-03-12')).result, { status: 'approved', cycle: DAY });
    t.match(await attempts(), [
      { status: 'rejeitada' },
      { status: 'rejeitada' },
      { status: 'aprovada', cartao_token: 'tok_novo_cartao' },
    ]);
    t.equal(h.gateway.ledger().length, 1, 'only the fixed request ran');
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

/** What happens to a charge job, or its attempt, while its gateway call is in flight. */
const MEANWHILE = {
  // pg-boss expired the claim: the job is back to retry, under the same retry count.
  'its claim expired': `UPDATE pgboss.job SET state = 'retry' WHERE name = '${CHARGE_QUEUE}'`,
  // Another worker claimed it again: active, one retry more.
  'another worker claimed the job': `UPDATE pgboss.job SET retry_count = retry_count + 1 WHERE name = '${CHARGE_QUEUE}'`,
  'another sender resolved the attempt': `UPDATE checkout_recorrencia_cobrancas
     SET status = 'aprovada', gateway_ref = 'ch_outro', resolvida_em = now()`,
};

t.test(
  'a request refused while the recurrence was paused holds it at retomar, unless what it carried changed',
  async (t) => {
    const h = await createHarness(t);
    const { id, result } = await chargedWhilePausing(h, TOO_LONG_TOKEN);
    t.match(result, { status: 'rejected' });
    t.same(
      (await attemptsOf(h.url, id)).map((a) => a.status),
      ['rejeitada'],
    );
    h.setNow(new Date('2031-05-20T15:00:00Z'));
    t.match((await transitionRecurrence(h.deps, testActor('checkout'), id, 'retomar')).recorrencia, {
      status: 'hold',
      proxima_cobranca: DAY,
      motivo_hold: /gateway rejeitou a requisição da tentativa .* durante a pausa/,
    });
    t.same(await skippedCyclesOf(h.url, id), [], 'the cycle is owed, not skipped');

    // The checkout fixed the card as it paused, the request still at the gateway: resumed active, the next run
    // sends the new request.
    h.setNow(new Date(`${DAY}T15:00:00Z`));
    const { id: fixed } = await chargedWhilePausing(h, TOO_LONG_TOKEN, (paused) =>
      changeRecurrence(h.deps, testActor('checkout'), paused, { cartao_token: 'tok_aprova_6' }),
    );
    h.setNow(new Date('2031-05-20T15:00:00Z'));
    t.match((await transitionRecurrence(h.deps, testActor('checkout'), fixed, 'retomar')).recorrencia, {
      status: 'ativo',
    });
    t.match((await chargeOnce(h, fixed, '2031-05-21')).result, { status: 'approved', cycle: DAY });
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

for (const [meanwhile, statement] of Object.entries(MEANWHILE)) {
  const expected = meanwhile.includes('attempt') ? 'resolved_elsewhere' : 'claim_lost';
  t.test(`a rejection that arrives after ${meanwhile} writes nothing`, async (t) => {
    const h = await createHarness(t);
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, cartao_token: TOO_LONG_TOKEN });
    h.gateway.setFaults({ rules: [{ nth: 1, fault: 'hold' }] });
    const charging = chargeOnce(h, id, DAY);
    await h.gateway.waitForHeld(1);
    await query(h.url, statement);
    h.gateway.release();
    t.match((await charging).result, { status: expected });
    t.match(await recurrenceState(h.url, id), { status: 'ativo', motivo_hold: null });
    t.same(
      (await attemptsOf(h.url, id)).map((a) => a.status),
      [expected === 'claim_lost' ? 'pendente' : 'aprovada'],
      'the attempt is left to whoever holds it',
    );
    t.same(await query(h.url, 'SELECT tipo FROM eventos_checkout WHERE recorrencia_id = $1', [id]), []);
  });
}

t.test(
  'credentials the gateway refuses (401) leave the outcome unknown: no recurrence goes on hold',
  async (t) => {
    const h = await createHarness(t, { gateway: { apiKey: 'the-real-key-0123456789' } });
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
    t.match((await chargeOnce(h, id, DAY)).result, { status: 'unresolved' });
    t.match(await recurrenceState(h.url, id), { status: 'ativo', motivo_hold: null, falhas_consecutivas: 0 });
    t.same(
      (await attemptsOf(h.url, id)).map((a) => a.status),
      ['pendente'],
      'resumed under its key once the key is fixed',
    );
    t.equal(h.gateway.ledger().length, 0);
  },
);

t.test('inactive or missing recurrences are skipped without calling the gateway', async (t) => {
  const h = await createHarness(t);
  for (const status of ['pausado', 'cancelado', 'concluido'] as const) {
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, status, encerrada_em: new Date() });
    t.same((await chargeOnce(h, id, DAY)).result, { status: 'skipped', reason: `recurrence_${status}` });
  }
  t.same((await chargeOnce(h, 999_999, DAY)).result, { status: 'skipped', reason: 'recurrence_not_found' });
  const future = await insertRecurrence(h.pool, { proxima_cobranca: '2031-03-11' });
  t.same((await chargeOnce(h, future, DAY)).result, { status: 'skipped', reason: 'not_due' });
  t.equal(h.gateway.stats().requests, 0);
});

t.test('brand limits over 30 days hold a recurrence whose card keeps declining', async (t) => {
  const h = await createHarness(t, {
    env: { BRAND_RETRY_LIMITS_30D: 'elo:2', MAX_DECLINES_BEFORE_HOLD: '10' },
  });
  const id = await insertRecurrence(h.pool, {
    proxima_cobranca: DAY,
    bandeira: 'elo',
    cartao_token: 'tok_recusa_reversivel_9',
  });
  t.match((await chargeOnce(h, id, DAY)).result, { decision: 'retry' });
  t.match((await chargeOnce(h, id, '2031-03-11', 'retentativa')).result, { decision: 'hold' });
  t.match((await recurrenceState(h.url, id)).motivo_hold, /bandeira elo/);
});

t.test(
  'a call still running at the batch deadline is given up as unknown, leaving time to record the batch; the retry resolves it',
  async (t) => {
    const h = await createHarness(t);
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
    h.gateway.setFaults({ rules: [{ nth: 1, fault: 'hold' }] });
    await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: DAY, motivo: 'agendada' }]);
    const jobs = await h.fetchChargeJobs();
    // Claimed so long ago that 300 ms are left before the time kept for recording outcomes (the gateway
    // timeout is 1 s: an unknown outcome for any other reason would not say 'batch_deadline').
    const limitSeconds = h.config.charges.hardLimitSeconds;
    const claimedAt = Date.now() - (limitSeconds * 1000 - outcomeRecordingReserveMs(limitSeconds) - 300);
    t.match(await chargeJobs(h.deps, jobs, claimedAt), [{ status: 'unresolved', reason: 'batch_deadline' }]);
    t.same(
      (await attemptsOf(h.url, id)).map((a) => a.status),
      ['pendente'],
    );
    h.gateway.release();
    const jobId = jobs[0]?.id ?? '';
    await h.boss.fail(CHARGE_QUEUE, { id: jobId, retryCount: 0 }, {});
    t.match(await retryJob(h, jobId), { status: 'approved' }, 'the same key, looked up or sent again');
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test('a batch whose deadline passed during phase 1 sends nothing', async (t) => {
  // No gateway slots: the call would go out right after phase 1.
  const h = await createHarness(t, { env: { GATEWAY_MAX_CONCURRENCY: '0' } });
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
  await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: DAY, motivo: 'agendada' }]);
  const jobs = await h.fetchChargeJobs();
  const claimedAt = Date.now() - h.config.charges.hardLimitSeconds * 1000;
  t.match(await chargeJobs(h.deps, jobs, claimedAt), [{ status: 'unresolved', reason: 'batch_deadline' }]);
  t.equal(h.gateway.stats().requests, 0, 'given up before any request');
});

t.test(
  'gateway slots: a charge waits for a free slot, and a dead holder slot frees when its lease ends',
  async (t) => {
    const h = await createHarness(t, {
      env: { GATEWAY_MAX_CONCURRENCY: '1', CHARGE_TIME_LIMIT_SECONDS: '12', GATEWAY_TIMEOUT_MS: '1000' },
    });
    // A worker died holding the only slot, with a lease that has not ended yet.
    await query(
      h.url,
      `UPDATE vagas_gateway SET job_id = gen_random_uuid(), ate = now() + interval '60 seconds'`,
    );
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
    const busy = await chargeOnce(h, id, DAY);
    t.match(
      busy.result,
      { status: 'unresolved', reason: 'gateway_busy' },
      'gives up after waiting, attempt left pending',
    );
    t.equal(h.gateway.stats().requests, 0, 'nothing was sent without a slot');
    t.same(
      await query(h.url, 'SELECT envios FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1', [id]),
      [{ envios: 0 }],
      'and the attempt does not count as sent (brand caps, key retention)',
    );
    await query(h.url, `UPDATE vagas_gateway SET ate = now() - interval '1 second'`);
    await h.boss.fail(CHARGE_QUEUE, { id: busy.jobId, retryCount: 0 }, {});
    t.match(await retryJob(h, busy.jobId), { status: 'approved' }, 'the expired lease was reclaimed');
    t.same(
      await query(h.url, 'SELECT job_id FROM vagas_gateway'),
      [{ job_id: null }],
      'and the slot was freed after the call',
    );
  },
);

t.test(
  'a job does not send an attempt another live job is sending: it retries later and finds it resolved',
  async (t) => {
    const h = await createHarness(t);
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
    // The first job's request is at the gateway, its answer held.
    h.gateway.setFaults({ rules: [{ nth: 1, fault: 'hold' }] });
    await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: DAY, motivo: 'agendada' }]);
    const [first] = await h.fetchChargeJobs();
    if (first === undefined) throw new Error('no charge job to fetch');
    const sending = chargeRecurrence(h.deps, first);
    await h.gateway.waitForHeld(1);
    // A second job for the same recurrence meanwhile (a dead-letter redrive beside the next day's run, say).
    await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: '2031-03-11', motivo: 'agendada' }]);
    const [second] = await h.fetchChargeJobs();
    if (second === undefined) throw new Error('no second charge job to fetch');
    const before = h.gateway.stats();
    const captured = capturedLog('warn');
    t.match(await chargeRecurrence({ ...h.deps, log: captured.log }, second), {
      status: 'unresolved',
      reason: 'in_flight_elsewhere',
    });
    const after = h.gateway.stats();
    t.equal(after.lookups, before.lookups, 'no lookup beside the request in flight');
    t.equal(after.charge_requests, before.charge_requests, 'and no second request under the key');
    t.match(captured.entries, [{ msg: /being sent by another live job/, heldBy: first.id }]);
    t.same(
      await query(h.url, 'SELECT envios FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1', [id]),
      [{ envios: 1 }],
      'counted once: the waiting job sent nothing',
    );

    h.gateway.release();
    t.match(await sending, { status: 'approved' }, 'the first job records the approval');
    await h.boss.fail(CHARGE_QUEUE, { id: second.id, retryCount: 0 }, {});
    t.match(
      await retryJob(h, second.id),
      { status: 'skipped' },
      'the retry finds the cycle paid and nothing due',
    );
    t.equal(h.gateway.ledger().length, 1);
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test('in one batch, a job leaves the attempt to the job that sent it, whatever their order', async (t) => {
  // R sent the attempt and its answer was lost; it retries beside the next day's job D for the recurrence.
  const { h, id, jobId } = await chargedWithUnknownOutcome(t);
  await h.boss.fail(CHARGE_QUEUE, { id: jobId, retryCount: 0 }, {});
  await query(h.url, `UPDATE pgboss.job SET start_after = now() WHERE id = $1`, [jobId]);
  await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: '2031-03-11', motivo: 'agendada' }]);
  const fetched = await h.fetchChargeJobs(10);
  const owner = fetched.find((job) => job.id === jobId);
  const other = fetched.find((job) => job.id !== jobId);
  if (owner === undefined || other === undefined) throw new Error('expected both jobs in one batch');
  const results = await chargeJobs(h.deps, [other, owner]);
  t.match(results, [
    { status: 'skipped', reason: 'resumed_by_its_job_in_batch' },
    { status: 'approved', key: `rec-${id}-${DAY}-t1`, cycle: DAY },
  ]);
  t.equal(h.gateway.stats().lookups, 1, 'the owner looked its key up, once');
  t.equal(h.gateway.ledger().length, 1);
  await assertLedgerAgrees(t, h.url, h.gateway);
});

/** A batch of charge jobs for `count` recurrences due on DAY, claimed as a worker would. */
async function claimedBatch(h: Harness, count: number) {
  const ids: number[] = [];
  for (let i = 0; i < count; i++) ids.push(await insertRecurrence(h.pool, { proxima_cobranca: DAY }));
  await enqueueChargeJobs(
    h.boss,
    ids.map((id) => ({ recorrenciaId: id, dataNegocio: DAY, motivo: 'agendada' as const })),
  );
  const jobs = await h.fetchChargeJobs(10);
  if (jobs.length !== count) throw new Error(`claimed ${jobs.length} jobs, not ${count}`);
  return { ids, jobs };
}

const takenSlots = async (h: Harness) =>
  (await query<{ n: number }>(h.url, 'SELECT count(job_id)::int AS n FROM vagas_gateway'))[0]?.n;

t.test("a batch's slow call does not keep the slots of its finished neighbours taken", async (t) => {
  const h = await createHarness(t, { env: { GATEWAY_MAX_CONCURRENCY: '3' } });
  const { ids, jobs } = await claimedBatch(h, 3);
  const slow = ids[0] as number;
  let answerSlow = () => {};
  const slowHeld = new Promise<void>((resolve) => {
    answerSlow = resolve;
  });
  const charging = chargeJobs(
    {
      ...h.deps,
      gateway: {
        ...h.deps.gateway,
        charge: async (request, signal) => {
          if (request.metadata.recorrenciaId === slow) await slowHeld;
          return h.deps.gateway.charge(request, signal);
        },
      },
    },
    jobs,
  );
  t.equal(
    await eventually(async () => ((await takenSlots(h)) === 1 ? 1 : undefined), 10_000, 20),
    1,
    'while the slow call runs, only its own slot stays taken',
  );
  answerSlow();
  t.same(
    (await charging).map((result) => result.status),
    ['approved', 'approved', 'approved'],
  );
  t.equal(await takenSlots(h), 0, 'and its slot is freed when it ends');
  await assertLedgerAgrees(t, h.url, h.gateway);
});

/** Makes every update of a gateway slot (or those matching `when`) fail with `message`. */
async function refuseSlotTakes(url: string, message: string, when = 'true'): Promise<void> {
  await query(
    url,
    `CREATE FUNCTION test_refuse_take() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN RAISE EXCEPTION '${message}'; END $$;
     CREATE TRIGGER test_refuse_take BEFORE UPDATE ON vagas_gateway
     FOR EACH ROW WHEN (${when}) EXECUTE FUNCTION test_refuse_take()`,
  );
}

t.test('a batch that cannot take its slots sends nothing and counts nothing as sent', async (t) => {
  const h = await createHarness(t);
  const { jobs } = await claimedBatch(h, 2);
  await refuseSlotTakes(h.url, 'slots refused by test');
  const captured = capturedLog('warn');
  const results = await chargeJobs({ ...h.deps, log: captured.log }, jobs);
  t.match(results, [
    { status: 'unresolved', reason: 'slot_error' },
    { status: 'unresolved', reason: 'slot_error' },
  ]);
  t.match(
    captured.entries.filter((entry) => entry.level >= 50),
    [{ msg: /could not take the batch's gateway slots/, err: { message: /slots refused/ } }],
  );
  t.same(
    await query(h.url, 'SELECT status, envios FROM checkout_recorrencia_cobrancas ORDER BY id'),
    [
      { status: 'pendente', envios: 0 },
      { status: 'pendente', envios: 0 },
    ],
    'both attempts wait, never counted as sent',
  );
  t.equal(h.gateway.stats().requests, 0, 'nothing reached the gateway');
  await assertLedgerAgrees(t, h.url, h.gateway);
});

t.test('a charge that cannot take a slot gives up alone, unsent: its neighbours are recorded', async (t) => {
  const h = await createHarness(t, { env: { GATEWAY_MAX_CONCURRENCY: '1' } });
  const { jobs } = await claimedBatch(h, 2);
  // The batch's one slot goes to its first job; the second waits, and taking the slot then fails.
  await refuseSlotTakes(h.url, 'slot refused by test', `NEW.job_id = '${jobs[1]?.id}'::uuid`);
  const captured = capturedLog('warn');
  const results = await chargeJobs({ ...h.deps, log: captured.log }, jobs);
  t.match(results, [{ status: 'approved' }, { status: 'unresolved', reason: 'slot_error' }]);
  t.match(
    captured.entries.filter((entry) => entry.level >= 50),
    [{ msg: /could not take a gateway slot/, jobId: jobs[1]?.id, err: { message: /slot refused/ } }],
  );
  t.same(
    await query(h.url, 'SELECT envios FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1', [
      jobs[1]?.data.recorrenciaId,
    ]),
    [{ envios: 0 }],
    'never sent',
  );
  t.equal(h.gateway.stats().requests, 1);
  await assertLedgerAgrees(t, h.url, h.gateway);
});

t.test('a slot that cannot be freed is logged and left to its lease: the outcomes are kept', async (t) => {
  const h = await createHarness(t, { env: { GATEWAY_MAX_CONCURRENCY: '2' } });
  const { ids, jobs } = await claimedBatch(h, 2);
  await query(
    h.url,
    `CREATE FUNCTION test_refuse_free() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN RAISE EXCEPTION 'free refused by test'; END $$;
     CREATE TRIGGER test_refuse_free BEFORE UPDATE ON vagas_gateway
     FOR EACH ROW WHEN (NEW.job_id IS NULL) EXECUTE FUNCTION test_refuse_free()`,
  );
  const captured = capturedLog('warn');
  const results = await chargeJobs({ ...h.deps, log: captured.log }, jobs);
  t.same(
    results.map((result) => result.status),
    ['approved', 'approved'],
  );
  for (const id of ids) t.match(await recurrenceState(h.url, id), { ciclos_cobrados: 1 });
  t.match(
    captured.entries.filter((entry) => entry.level >= 50),
    [{ msg: /could not free gateway slots/, err: { message: /free refused by test/ } }],
  );
  t.equal(await takenSlots(h), 2, 'the slots stay taken until their lease ends');
  await assertLedgerAgrees(t, h.url, h.gateway);
});

t.test(
  'a batch settles each job on its own: approvals together, a decline, an unknown, a skip, a duplicate, a lost claim',
  async (t) => {
    const h = await createHarness(t, { env: { GATEWAY_TIMEOUT_MS: '300' } });
    const approve = [
      await insertRecurrence(h.pool, { proxima_cobranca: DAY }),
      await insertRecurrence(h.pool, { proxima_cobranca: DAY, total_ciclos: 1 }),
    ];
    const declined = await insertRecurrence(h.pool, {
      proxima_cobranca: DAY,
      cartao_token: 'tok_recusa_reversivel_b',
    });
    const unknown = await insertRecurrence(h.pool, { proxima_cobranca: DAY, cartao_token: 'tok_timeout_b' });
    const notDue = await insertRecurrence(h.pool, { proxima_cobranca: '2031-03-20' });
    const stolen = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
    const ids = [...approve, declined, unknown, notDue, stolen];
    await enqueueChargeJobs(
      h.boss,
      ids.map((id) => ({ recorrenciaId: id, dataNegocio: DAY, motivo: 'agendada' as const })),
    );
    // A second job for the first recurrence in the same batch (a retry run racing the daily one).
    await query(h.url, `UPDATE checkout_recorrencias SET proxima_tentativa = NULL WHERE id = $1`, [
      approve[0],
    ]);
    await h.boss.send(CHARGE_QUEUE, {
      recorrenciaId: approve[0],
      dataNegocio: DAY,
      motivo: 'agendada',
      ciclo: DAY,
    });
    const jobs = await h.fetchChargeJobs(10);
    t.equal(jobs.length, 7);
    const byRecurrence = (id: number) => jobs.findIndex((job) => job.data.recorrenciaId === id);
    // The gateway answers the unknown one's request late, and one job's claim lapses while it is charging.
    h.gateway.setFaults({ rules: [] });
    const stolenJob = jobs[byRecurrence(stolen)];
    const results = await chargeJobs(
      {
        ...h.deps,
        gateway: {
          ...h.deps.gateway,
          charge: async (request, signal) => {
            if (request.metadata.recorrenciaId === unknown) return { kind: 'unknown', reason: 'timeout' };
            if (request.metadata.recorrenciaId === stolen && stolenJob !== undefined) {
              await h.boss.fail(
                CHARGE_QUEUE,
                { id: stolenJob.id, retryCount: stolenJob.retryCount },
                { error: 'expired' },
              );
            }
            return h.deps.gateway.charge(request, signal);
          },
        },
      },
      jobs,
    );
    const statusOf = (id: number) => results[byRecurrence(id)]?.status;
    t.equal(statusOf(approve[0] as number), 'approved');
    t.equal(statusOf(approve[1] as number), 'approved');
    t.equal(statusOf(declined), 'declined');
    t.equal(statusOf(unknown), 'unresolved');
    t.same(results[byRecurrence(notDue)], { status: 'skipped', reason: 'not_due' });
    t.equal(statusOf(stolen), 'claim_lost', 'the lost claim is refused on its own');
    const duplicate = results.findIndex(
      (result, i) => i !== byRecurrence(approve[0] as number) && jobs[i]?.data.recorrenciaId === approve[0],
    );
    t.same(results[duplicate], { status: 'skipped', reason: 'charged_by_another_job_in_batch' });
    t.match(
      await recurrenceState(h.url, approve[1] as number),
      { status: 'concluido' },
      'the last cycle concluded it',
    );
    t.same(
      (await attemptsOf(h.url, stolen)).map((a) => a.status),
      ['pendente'],
      'nothing written for the stolen job',
    );
    t.same(
      (await attemptsOf(h.url, unknown)).map((a) => a.status),
      ['pendente'],
    );
    t.equal(await jobState(h.url, jobs[byRecurrence(approve[0] as number)]?.id as string), 'completed');
    t.equal(
      await jobState(h.url, stolenJob?.id as string),
      'retry',
      'the stolen job is left to its new holder',
    );
    t.match(
      await retryJob(h, stolenJob?.id as string),
      { status: 'approved' },
      'which records the approval under the same key',
    );
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test(
  "an outcome the database cannot store fails its own job alone: the batch's other outcomes are recorded",
  async (t) => {
    const h = await createHarness(t);
    const ids = [
      await insertRecurrence(h.pool, { proxima_cobranca: DAY }),
      await insertRecurrence(h.pool, { proxima_cobranca: DAY }),
      await insertRecurrence(h.pool, { proxima_cobranca: DAY, cartao_token: 'tok_recusa_reversivel_c' }),
    ];
    const poisoned = ids[0] as number;
    await enqueueChargeJobs(
      h.boss,
      ids.map((id) => ({ recorrenciaId: id, dataNegocio: DAY, motivo: 'agendada' as const })),
    );
    const jobs = await h.fetchChargeJobs(10);
    t.equal(jobs.length, 3);
    const captured = capturedLog('warn');
    // The charge runs at the gateway; its answer reaches phase 3 with a value Postgres refuses (a NUL in text).
    const results = await chargeJobs(
      {
        ...h.deps,
        log: captured.log,
        gateway: {
          ...h.deps.gateway,
          charge: async (request, signal) => {
            const outcome = await h.deps.gateway.charge(request, signal);
            return request.metadata.recorrenciaId === poisoned && outcome.kind === 'approved'
              ? { ...outcome, chargeId: `${outcome.chargeId}\u0000` }
              : outcome;
          },
        },
      },
      jobs,
    );
    const resultOf = (id: number) => results[jobs.findIndex((job) => job.data.recorrenciaId === id)];
    t.match(resultOf(poisoned), { status: 'failed', reason: /0x00|null character|invalid byte/i });
    t.match(resultOf(ids[1] as number), { status: 'approved' }, "the neighbour's approval is recorded");
    t.match(resultOf(ids[2] as number), { status: 'declined' }, "and so is the neighbour's decline");
    t.same(
      (await attemptsOf(h.url, poisoned)).map((a) => a.status),
      ['pendente'],
      'the failed one keeps its attempt pending, to resume under the same key',
    );
    t.match(
      captured.entries.filter((entry) => entry.level >= 50).map((entry) => entry.jobs),
      [[jobs.find((job) => job.data.recorrenciaId === poisoned)?.id]],
      'one error, naming the job that failed',
    );
    const poisonedJob = jobs.find((job) => job.data.recorrenciaId === poisoned)?.id as string;
    await h.boss.fail(CHARGE_QUEUE, poisonedJob, { error: 'test' });
    t.match(
      await retryJob(h, poisonedJob),
      { status: 'approved' },
      'its retry finds the charge under the same key and records it',
    );
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test(
  'a job run days after its date (a redrive, a queue paused for weeks) charges once, for the latest cycle',
  async (t) => {
    const h = await createHarness(t);
    // Weekly, due Monday 2031-03-03; its job runs on 03-24 (redriven from the dead-letter queue, say).
    const id = await insertRecurrence(h.pool, {
      proxima_cobranca: '2031-03-03',
      periodicidade: 'semanal',
      dia_ancora: null,
    });
    h.setNow(new Date('2031-03-24T15:00:00Z'));
    t.match(
      (await previewDueCharges(h.deps, '2031-03-03', { limit: 10 })).cobrancas,
      [{ recorrencia_id: id, ciclo: '2031-03-24', ciclos_pulados: 3 }],
      'the dry run of that date run today says what the job then charges',
    );
    t.match((await chargeOnce(h, id, '2031-03-03')).result, { status: 'approved', cycle: '2031-03-24' });
    t.same(
      (await skippedCyclesOf(h.url, id)).map((row) => row.ciclo),
      ['2031-03-03', '2031-03-10', '2031-03-17'],
      'the cycles in between are recorded as skipped',
    );
    // The run of the day then has nothing left to charge.
    t.match((await chargeOnce(h, id, '2031-03-24')).result, { status: 'skipped', reason: 'not_due' });
    t.equal(h.gateway.ledger().length, 1);
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);

t.test(
  'a job of the batch with nothing to charge does not make the next one for its recurrence skip',
  async (t) => {
    const h = await createHarness(t);
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
    await enqueueChargeJobs(h.boss, [
      { recorrenciaId: id, dataNegocio: '2031-03-09', motivo: 'agendada' },
      { recorrenciaId: id, dataNegocio: DAY, motivo: 'agendada' },
    ]);
    const jobs = (await h.fetchChargeJobs(10)).sort((a, b) =>
      a.data.dataNegocio.localeCompare(b.data.dataNegocio),
    );
    t.equal(jobs.length, 2);
    t.match(await chargeJobs(h.deps, jobs), [
      { status: 'skipped', reason: 'not_due' },
      { status: 'approved', cycle: DAY },
    ]);
    await assertLedgerAgrees(t, h.url, h.gateway);
  },
);
