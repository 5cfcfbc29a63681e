// An attempt whose idempotency key the gateway holds for another request (409): it is blocked, never looked up
// or sent again, the recurrence waits on hold, and an operator resolves it through the admin API (cobrada or
// nao_cobrada) before it can be reactivated. Real Postgres, real pg-boss jobs, the fake gateway over HTTP.
import t, { type Test } from 'tap';
import { attemptKey } from '../../src/domain/identifiers.ts';
import { enqueueChargeJobs } from '../../src/tasks/charge/charge-jobs.ts';
import { chargeJobs, chargeRecurrence } from '../../src/tasks/charge/charge-recurrence.ts';
import { noteLateAnswers, unmarkAttemptsSending } from '../../src/db/cobrancas.ts';
import { chargeQueueWorker, settlementOf } from '../../src/tasks/charge/charge-worker.ts';
import { CHARGE_QUEUE } from '../../src/queue/task-names.ts';
import { createAdminHarness, operator, type AdminHarness } from '../helpers/admin.ts';
import { capturedLog } from '../helpers/captured-log.ts';
import { query } from '../helpers/database.ts';
import {
  attemptsOf,
  chargeOnce,
  endJob,
  insertRecurrence,
  jobState,
  recurrenceState,
  testActor,
  type RecurrenceOverrides,
} from '../helpers/harness.ts';
import { transitionRecurrence } from '../../src/ops/recurrence-changes.ts';
import { eventually, startService } from '../helpers/processes.ts';

const DAY = '2031-03-10';

const chargeOn = async (h: AdminHarness, id: number, date: string) => (await chargeOnce(h, id, date)).result;

async function envios(h: AdminHarness, id: number): Promise<number[]> {
  const rows = await query<{ envios: number }>(
    h.url,
    'SELECT envios FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1 ORDER BY tentativa',
    [id],
  );
  return rows.map((row) => row.envios);
}

/** Another request (another card: another environment, say) charged under the key of `id`'s first attempt. */
async function chargeElsewhere(h: AdminHarness, id: number, amountCents: number) {
  const response = await fetch(`${h.gateway.url}/v1/charges`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': attemptKey(id, DAY, 1) },
    body: JSON.stringify({
      amount_cents: amountCents,
      currency: 'BRL',
      card_token: 'tok_de_outro_ambiente',
      description: 'outro ambiente',
      metadata: { recorrencia_id: String(id), ciclo: DAY, tentativa: 1 },
    }),
  });
  return (await response.json()) as { status: string; charge_id: string };
}

/**
 * A recurrence of 10.00 due on DAY whose first attempt's key another request already used at the gateway,
 * with another card and `amountCents` (approved there): charged once, the gateway answers 409.
 */
async function blockedByAnotherRequest(t: Test, amountCents = 1000) {
  const h = await createAdminHarness(t);
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, valor_centavos: 1000 });
  const foreign = await chargeElsewhere(h, id, amountCents);
  t.equal(foreign.status, 'approved', 'the other request was approved at the gateway');
  t.match(await chargeOn(h, id, DAY), { status: 'rejected', reason: 'idempotency_key_reused' });
  const [attempt] = await query<{ id: number }>(
    h.url,
    'SELECT id FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1',
    [id],
  );
  if (attempt === undefined) throw new Error('no attempt');
  return { h, id, attemptId: attempt.id, foreignChargeId: foreign.charge_id };
}

const resolve = (h: AdminHarness, id: number, attemptId: number, payload: object) =>
  h.app.inject({
    method: 'POST',
    url: `/recorrencias/${id}/cobrancas/${attemptId}/resolver`,
    headers: operator,
    payload,
  });

const dryRunOf = (h: AdminHarness, date: string) =>
  h.app.inject({
    method: 'POST',
    url: '/tasks/processar_recorrencias_do_dia/run',
    headers: operator,
    payload: { date, dryRun: true, limit: 100 },
  });

const reactivate = (h: AdminHarness, id: number) =>
  h.app.inject({ method: 'POST', url: `/recorrencias/${id}/reativar`, headers: operator });

t.test(
  'a 409 blocks the attempt: resumed, it is neither looked up nor sent, and the recurrence stays on hold',
  async (t) => {
    const { h, id, attemptId } = await blockedByAnotherRequest(t);
    t.match(await recurrenceState(h.url, id), { status: 'hold', ciclos_cobrados: 0 });
    t.match(await attemptsOf(h.url, id), [{ status: 'pendente', codigo_recusa: 'idempotency_key_reused' }]);

    // The next run resumes the pending attempt. A lookup would find the other request's approval, of the same
    // amount and currency, and record this customer's cycle as paid.
    const captured = capturedLog('info');
    h.deps.log = captured.log;
    t.match(await chargeOn(h, id, '2031-03-11'), { status: 'rejected', reason: 'idempotency_key_reused' });
    const errors = captured.entries.filter((entry) => entry.level >= 50).map((entry) => entry.msg);
    t.equal(errors.length, 1, 'one error line');
    t.match(
      errors[0],
      /^attempt blocked on its key until an operator resolves it: not sent, not looked up/,
      'it says nothing was sent this run, not that the gateway rejected a request',
    );
    t.match(await attemptsOf(h.url, id), [{ status: 'pendente', codigo_recusa: 'idempotency_key_reused' }]);
    t.same(await envios(h, id), [1], 'not counted as sent again');
    t.equal(h.gateway.ledger().length, 1, 'nothing ran at the gateway but the other request');
    t.match(await recurrenceState(h.url, id), { status: 'hold', ciclos_cobrados: 0 });

    const metrics = (await h.app.inject({ url: '/metrics', headers: operator })).body;
    t.match(metrics, /^recorrencias_blocked_attempts 1$/m, 'counted as blocked');
    t.match(
      metrics,
      /^recorrencias_oldest_pending_attempt_age_seconds 0$/m,
      'not as an attempt the workers are still resolving',
    );
    const detail = await h.app.inject({ url: `/recorrencias/${id}`, headers: operator });
    t.match(detail.json(), { cobrancas: [{ id: attemptId, status: 'pendente', bloqueada: true }] });
    const refused = await reactivate(h, id);
    t.equal(refused.statusCode, 409, 'reactivating would only hold it again');
    t.match(refused.json(), { message: new RegExp(`cobrancas/${attemptId}/resolver`) });
  },
);

t.test(
  'nao_cobrada: the attempt ends rejeitada and the cycle is charged under a new key after reativar',
  async (t) => {
    const { h, id, attemptId } = await blockedByAnotherRequest(t);
    const missingAmount = await resolve(h, id, attemptId, {
      resultado: 'cobrada',
      gateway_ref: 'ch_1',
      motivo: 'sem valor',
    });
    t.equal(missingAmount.statusCode, 400, 'cobrada needs what the gateway charged');
    t.equal(
      (await resolve(h, id, attemptId + 1000, { resultado: 'nao_cobrada', motivo: 'x' })).statusCode,
      409,
    );
    t.match(await attemptsOf(h.url, id), [{ status: 'pendente' }], 'refused requests changed nothing');

    const resolved = await resolve(h, id, attemptId, {
      resultado: 'nao_cobrada',
      motivo: 'chave usada pelo ambiente de homologação',
    });
    t.equal(resolved.statusCode, 200);
    t.match(resolved.json(), { cobranca_id: attemptId, ciclo: DAY, status: 'rejeitada' });
    t.match(await attemptsOf(h.url, id), [{ status: 'rejeitada', codigo_recusa: 'idempotency_key_reused' }]);
    t.match(
      await query(h.url, `SELECT quem, detalhes FROM auditoria_admin WHERE acao = 'resolve_blocked_attempt'`),
      [{ quem: 'ana', detalhes: { cobranca_id: attemptId, resultado: 'nao_cobrada' } }],
    );
    // A retry after a lost answer gets the first answer; a call saying otherwise is refused with the first one.
    const again = await resolve(h, id, attemptId, { resultado: 'nao_cobrada', motivo: 'de novo' });
    t.equal(again.statusCode, 200, 'a repeated call answers as the first did');
    t.same(again.json(), { ...resolved.json<object>(), mudou: false });
    const contrary = await resolve(h, id, attemptId, {
      resultado: 'cobrada',
      gateway_ref: 'ch_1',
      valor_centavos: 1000,
      moeda: 'BRL',
      motivo: 'engano',
    });
    t.equal(contrary.statusCode, 409, 'resolved once');
    t.match(contrary.json(), { resolucao: { resultado: 'nao_cobrada' }, por: 'ana' });
    t.equal(
      (await query(h.url, `SELECT 1 FROM auditoria_admin WHERE acao = 'resolve_blocked_attempt'`)).length,
      1,
      'neither call changed anything',
    );

    t.equal((await reactivate(h, id)).statusCode, 200);
    t.match(await chargeOn(h, id, '2031-03-12'), { status: 'approved', cycle: DAY, amountCents: 1000 });
    t.match(await attemptsOf(h.url, id), [
      { tentativa: 1, status: 'rejeitada' },
      { tentativa: 2, status: 'aprovada', chave_idempotencia: attemptKey(id, DAY, 2) },
    ]);
    t.match(
      h.gateway.ledger().map((entry) => [entry.key, entry.status]),
      [
        [attemptKey(id, DAY, 1), 'approved'],
        [attemptKey(id, DAY, 2), 'approved'],
      ],
    );
  },
);

t.test(
  'cobrada: the attempt is approved with the gateway reference and the recurrence moves on',
  async (t) => {
    // Before a database restore, this cycle was charged at 12.90 (the price before a change the restore undid).
    const { h, id, attemptId, foreignChargeId } = await blockedByAnotherRequest(t, 1290);
    const resolved = await resolve(h, id, attemptId, {
      resultado: 'cobrada',
      gateway_ref: foreignChargeId,
      valor_centavos: 1290,
      moeda: 'BRL',
      motivo: 'ciclo cobrado antes da restauração do banco',
    });
    t.equal(resolved.statusCode, 200);
    t.match(resolved.json(), { status: 'aprovada', proxima_cobranca: '2031-04-10', mudou: true });
    const again = await resolve(h, id, attemptId, {
      resultado: 'cobrada',
      gateway_ref: foreignChargeId,
      valor_centavos: 1290,
      moeda: 'BRL',
      motivo: 'repetido',
    });
    t.same(
      again.json(),
      { ...resolved.json<object>(), mudou: false },
      'a repeated call answers as the first',
    );
    t.equal((await resolve(h, id, attemptId, { resultado: 'nao_cobrada', motivo: 'x' })).statusCode, 409);
    t.match(await recurrenceState(h.url, id), {
      status: 'hold',
      proxima_cobranca: '2031-04-10',
      ciclos_cobrados: 1,
    });
    const [attempt] = await query(
      h.url,
      `SELECT status, gateway_ref, codigo_recusa, mensagem, valor_centavos::int FROM checkout_recorrencia_cobrancas
       WHERE id = $1`,
      [attemptId],
    );
    t.same(
      attempt,
      {
        status: 'aprovada',
        gateway_ref: foreignChargeId,
        codigo_recusa: null,
        mensagem: 'cobrança confirmada na gateway por um operador',
        valor_centavos: 1290,
      },
      'the amount the gateway charged; the operator note stays in the audit, out of the checkout event',
    );
    t.match(
      await query(h.url, `SELECT detalhes FROM auditoria_admin WHERE acao = 'resolve_blocked_attempt'`),
      [{ detalhes: { motivo: /restauração/, valor_centavos: 1290 } }],
    );
    t.same(
      h.gateway.ledger().map((entry) => entry.amountCents),
      [1290],
      'the database approves what the gateway charged',
    );
    const events = await query<{ tipo: string }>(
      h.url,
      'SELECT tipo FROM eventos_checkout WHERE recorrencia_id = $1 ORDER BY id',
      [id],
    );
    t.same(
      events.map((event) => event.tipo),
      ['recorrencia_em_hold', 'cobranca_aprovada'],
      'the checkout learns the cycle was paid',
    );
    t.equal((await reactivate(h, id)).statusCode, 200);
    t.match(
      await chargeOn(h, id, '2031-03-12'),
      { status: 'skipped' },
      'the paid cycle is not charged again',
    );
    t.equal(h.gateway.ledger().length, 1);
  },
);

t.test(
  'blocked while paused and ended by an operator (nao_cobrada): retomar resumes it, and a new key charges the cycle',
  async (t) => {
    const h = await createAdminHarness(t);
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, valor_centavos: 1000 });
    await chargeElsewhere(h, id, 1000);
    h.gateway.setFaults({ rules: [{ nth: 1, fault: 'hold' }] });
    const charging = chargeOn(h, id, DAY);
    await h.gateway.waitForHeld(1);
    await transitionRecurrence(h.deps, testActor('checkout'), id, 'pausar');
    h.gateway.release();
    t.match(await charging, { status: 'rejected', reason: 'idempotency_key_reused' });
    t.match(await recurrenceState(h.url, id), { status: 'pausado' }, 'blocked; the pause stays');
    const [attempt] = await attemptsOf(h.url, id);
    if (attempt === undefined) throw new Error('no attempt');
    t.equal(
      (await resolve(h, id, attempt.id, { resultado: 'nao_cobrada', motivo: 'outro ambiente' })).statusCode,
      200,
    );
    h.setNow(new Date('2031-05-20T15:00:00Z'));
    t.match((await transitionRecurrence(h.deps, testActor('checkout'), id, 'retomar')).recorrencia, {
      status: 'ativo',
      proxima_cobranca: DAY,
    });
    t.match(await chargeOn(h, id, '2031-05-21'), {
      status: 'approved',
      cycle: DAY,
      key: attemptKey(id, DAY, 2),
    });
  },
);

t.test('an attempt the workers still resolve on their own cannot be resolved by hand', async (t) => {
  const h = await createAdminHarness(t, { GATEWAY_TIMEOUT_MS: '300' });
  h.gateway.setFaults({ rules: [{ nth: 1, fault: 'timeout_after', holdMs: 2_000 }] });
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
  t.match(await chargeOn(h, id, DAY), { status: 'unresolved' });
  const [attempt] = await query<{ id: number }>(
    h.url,
    'SELECT id FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1',
    [id],
  );
  const refused = await resolve(h, id, attempt?.id ?? 0, { resultado: 'nao_cobrada', motivo: 'x' });
  t.equal(refused.statusCode, 409);
  t.match(await attemptsOf(h.url, id), [{ status: 'pendente', codigo_recusa: null }]);
});

/**
 * A charge whose first send ran at the gateway but answered too late; its retry looks the key up, and while
 * that lookup is held `meanwhile` runs (another holder blocks the attempt, an operator resolves it...). The
 * lookup then brings back the gateway's answer: an approval, or a decline for a `tok_recusa_*` card.
 */
async function answerComingBackLate(
  t: Test,
  meanwhile: (h: AdminHarness, id: number) => Promise<void>,
  row: Partial<RecurrenceOverrides> = {},
) {
  const captured = capturedLog('warn');
  const h = await createAdminHarness(t, { GATEWAY_TIMEOUT_MS: '300' });
  // The first send runs at the gateway but answers too late: the attempt stays pending, the job retries.
  h.gateway.setFaults({ rules: [{ nth: 1, fault: 'timeout_after', holdMs: 2_000 }] });
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, ...row });
  await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: DAY, motivo: 'agendada' }]);
  const [job] = await h.fetchChargeJobs();
  if (job === undefined) throw new Error('no charge job to fetch');
  t.match(await chargeRecurrence(h.deps, job), { status: 'unresolved' });
  await h.boss.fail(CHARGE_QUEUE, { id: job.id, retryCount: 0 }, {});
  // Its backoff over.
  await query(h.url, `UPDATE pgboss.job SET start_after = now() WHERE id = $1`, [job.id]);
  const [retry] = await h.fetchChargeJobs();
  if (retry === undefined) throw new Error('no retry to fetch');

  let releaseLookup = () => {};
  const lookupHeld = new Promise<void>((resolve) => {
    releaseLookup = resolve;
  });
  let lookupStarted = false;
  const gateway = {
    charge: h.deps.gateway.charge.bind(h.deps.gateway),
    lookup: async (...args: Parameters<typeof h.deps.gateway.lookup>) => {
      lookupStarted = true;
      await lookupHeld;
      return h.deps.gateway.lookup(...args);
    },
  };
  const resuming = chargeRecurrence({ ...h.deps, log: captured.log, gateway }, retry);
  await eventually(async () => (lookupStarted ? true : undefined));
  await meanwhile(h, id);
  releaseLookup();
  const result = await resuming;
  const [charged] = h.gateway.ledger();
  const [attempt] = await query<{ id: number; status: string; codigo_recusa: string; mensagem: string }>(
    h.url,
    'SELECT id, status, codigo_recusa, mensagem FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1',
    [id],
  );
  return { h, id, retry, result, chargeId: charged?.chargeId as string, attempt, captured };
}

const blockAttemptsOf = (h: AdminHarness, id: number) =>
  query(
    h.url,
    `UPDATE checkout_recorrencia_cobrancas SET codigo_recusa = 'idempotency_key_reused' WHERE recorrencia_id = $1`,
    [id],
  ).then(() => undefined);

t.test(
  'an approval a worker brings back for an attempt blocked meanwhile is not recorded as paid: it is noted for the operator, the job dead-lettered',
  async (t) => {
    // Before the retry's lookup answers, the attempt is blocked (a 409 to another job).
    const { h, id, retry, result, chargeId, attempt } = await answerComingBackLate(t, blockAttemptsOf);
    t.same(result, { status: 'approved_but_blocked', attemptId: attempt?.id, chargeId });
    t.match(
      attempt,
      {
        status: 'pendente',
        codigo_recusa: 'idempotency_key_reused',
        mensagem: `a gateway aprovou esta chave depois do bloqueio: charge_id ${chargeId}`,
      },
      "still blocked, with the gateway's charge id noted for the operator",
    );
    t.match(await recurrenceState(h.url, id), { ciclos_cobrados: 0, proxima_cobranca: DAY });
    t.equal(
      await jobState(h.url, retry.id),
      'active',
      'the job is not completed: its worker dead-letters it',
    );
    const resolved = await resolve(h, id, attempt?.id ?? 0, {
      resultado: 'cobrada',
      gateway_ref: chargeId,
      valor_centavos: 4990,
      moeda: 'BRL',
      motivo: 'a gateway aprovou esta chave',
    });
    t.match(
      resolved.json(),
      { status: 'aprovada', mudou: true },
      'the operator resolves it with the noted id',
    );
  },
);

t.test(
  'a worker dead-letters the job of an approval for an attempt blocked meanwhile; resolved, its redrive completes',
  async (t) => {
    const h = await createAdminHarness(t);
    const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY });
    // Another holder blocks the attempt while this worker's request is at the gateway.
    const gateway = {
      lookup: h.deps.gateway.lookup.bind(h.deps.gateway),
      charge: async (...args: Parameters<typeof h.deps.gateway.charge>) => {
        await query(
          h.url,
          `UPDATE checkout_recorrencia_cobrancas SET codigo_recusa = 'idempotency_key_reused' WHERE recorrencia_id = $1`,
          [id],
        );
        return h.deps.gateway.charge(...args);
      },
    };
    const worker = await chargeQueueWorker(h.boss, { ...h.deps, gateway });
    t.teardown(() => worker.stop());
    await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: DAY, motivo: 'agendada' }]);
    await worker.register();
    const [dead] = await eventually(async () => {
      const rows = await query<{ id: string; data: { recorrenciaId: number } }>(
        h.url,
        'SELECT id, data FROM pgboss.job WHERE name = $1',
        [`${CHARGE_QUEUE}_dlq`],
      );
      return rows.length > 0 ? rows : undefined;
    });
    await h.boss.offWork(CHARGE_QUEUE);
    t.match(dead, { data: { recorrenciaId: id } }, 'in the dead-letter queue, for the alert');
    const [failed] = await query<{ state: string; output: { chargeId: string } }>(
      h.url,
      'SELECT state, output FROM pgboss.job WHERE name = $1',
      [CHARGE_QUEUE],
    );
    t.match(failed, { state: 'failed', output: { status: 'approved_but_blocked', chargeId: /^ch_/ } });

    // The runbook's way out: resolve with the noted charge, then redrive the dead-letter job, which must
    // complete without sending anything, so the queue (and the alert) empties.
    const [attempt] = await query<{ id: number }>(
      h.url,
      'SELECT id FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1',
      [id],
    );
    const resolved = await resolve(h, id, Number(attempt?.id), {
      resultado: 'cobrada',
      gateway_ref: failed?.output.chargeId,
      valor_centavos: 4990,
      moeda: 'BRL',
      motivo: 'aprovada depois do bloqueio',
    });
    t.equal(resolved.statusCode, 200, resolved.body);
    const sentBefore = h.gateway.ledger().length;
    const redriven = await h.app.inject({
      method: 'POST',
      url: `/jobs/${dead?.id}/retry`,
      headers: operator,
    });
    t.match(redriven.json(), { action: 'redriven' });
    await worker.register();
    // A redrive sends a copy, under a new id, back to the charge queue.
    await eventually(async () => {
      const rows = await query(h.url, `SELECT 1 FROM pgboss.job WHERE name = $1 AND state = 'completed'`, [
        CHARGE_QUEUE,
      ]);
      return rows.length === 1 ? rows : undefined;
    });
    t.same(
      await query(h.url, 'SELECT 1 FROM pgboss.job WHERE name = $1', [`${CHARGE_QUEUE}_dlq`]),
      [],
      'the dead-letter queue is empty',
    );
    t.equal(h.gateway.ledger().length, sentBefore, 'the redrive sent nothing');
    t.same(
      await query(
        h.url,
        'SELECT status, gateway_ref FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1',
        [id],
      ),
      [{ status: 'aprovada', gateway_ref: failed?.output.chargeId }],
      'one attempt, approved with the noted charge',
    );
    t.match(await recurrenceState(h.url, id), { ciclos_cobrados: 1, proxima_cobranca: '2031-04-10' });
  },
);

t.test(
  'a decline that comes back for an attempt blocked meanwhile is noted for the operator, not recorded',
  async (t) => {
    const { h, id, result, attempt, captured } = await answerComingBackLate(t, blockAttemptsOf, {
      cartao_token: 'tok_recusa_reversivel',
    });
    t.same(result, { status: 'declined_but_blocked', attemptId: attempt?.id, code: '51' });
    const [declined] = h.gateway.ledger();
    t.match(declined, { status: 'declined' }, 'the gateway declined the first send');
    t.match(
      attempt,
      {
        status: 'pendente',
        codigo_recusa: 'idempotency_key_reused',
        mensagem: new RegExp(
          `a gateway recusou esta chave depois do bloqueio: código 51, charge_id ${declined?.chargeId}$`,
        ),
      },
      'still blocked, with the decline noted: nothing was charged under the key',
    );
    t.match(
      captured.entries.filter((entry) => entry.level === 40),
      [{ msg: /gateway declined an attempt blocked meanwhile/, code: '51' }],
    );
    t.match(await recurrenceState(h.url, id), { falhas_consecutivas: 0 }, 'not counted as a decline');
  },
);

t.test(
  'an approval that comes back after an operator ended the attempt as nao_cobrada is noted, logged and dead-lettered, not lost',
  async (t) => {
    // Blocked, then resolved by an operator as not charged, while the retry's lookup was on its way.
    const { h, id, retry, result, chargeId, attempt, captured } = await answerComingBackLate(
      t,
      async (h, id) => {
        await blockAttemptsOf(h, id);
        const [row] = await query<{ id: number }>(
          h.url,
          'SELECT id::int FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1',
          [id],
        );
        const resolved = await resolve(h, id, row?.id ?? 0, {
          resultado: 'nao_cobrada',
          motivo: 'nada na gateway ainda',
        });
        t.equal(resolved.statusCode, 200, resolved.body);
      },
    );
    t.match(h.gateway.ledger(), [{ status: 'approved' }], 'the gateway did charge the cycle');
    t.same(result, {
      status: 'approved_but_ended',
      attemptId: attempt?.id,
      chargeId,
      attemptStatus: 'rejeitada',
    });
    t.match(
      attempt,
      {
        status: 'rejeitada',
        mensagem: new RegExp(
          `a gateway aprovou esta chave depois de a tentativa terminar como rejeitada: charge_id ${chargeId}$`,
        ),
      },
      "the gateway's charge id is noted on the ended attempt",
    );
    t.match(
      captured.entries.filter((entry) => entry.level >= 50),
      [{ msg: /gateway approved an attempt already ended/, chargeId, attemptStatus: 'rejeitada' }],
      'an error for the operator',
    );
    t.equal(
      await jobState(h.url, retry.id),
      'active',
      'the job is not completed: its worker dead-letters it',
    );
    t.match(await recurrenceState(h.url, id), { ciclos_cobrados: 0 });
    t.equal(
      settlementOf(result),
      'deadletter',
      'and the charge worker dead-letters it, so RecorrenciasDeadLetterNotEmpty shows it',
    );
  },
);

t.test('a late approval is noted once per charge id, one whose id extends another included', async (t) => {
  const { h, attemptId } = await blockedByAnotherRequest(t);
  for (const chargeId of ['ch_12', 'ch_12', 'ch_1'])
    await noteLateAnswers(h.pool, [{ attemptId, verb: 'aprovou', detail: `charge_id ${chargeId}` }]);
  const [row] = await query<{ mensagem: string }>(
    h.url,
    'SELECT mensagem FROM checkout_recorrencia_cobrancas WHERE id = $1',
    [attemptId],
  );
  const mensagem = row?.mensagem ?? '';
  t.equal(mensagem.split(' | ').filter((note) => note.endsWith('charge_id ch_12')).length, 1, 'ch_12 once');
  t.ok(mensagem.endsWith('depois do bloqueio: charge_id ch_1'), 'ch_1 noted too, not taken for ch_12');
});

t.test('a 409 blocks the attempt even when the job claim lapsed meanwhile', async (t) => {
  const h = await createAdminHarness(t);
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, valor_centavos: 1000 });
  t.match(await chargeElsewhere(h, id, 1000), { status: 'approved' });
  // Our send (the first request counted from here) is held; meanwhile pg-boss expires the job's claim.
  h.gateway.setFaults({ rules: [{ nth: 1, fault: 'hold' }] });
  await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: DAY, motivo: 'agendada' }]);
  const [job] = await h.fetchChargeJobs();
  if (job === undefined) throw new Error('no charge job to fetch');
  const charging = chargeRecurrence(h.deps, job);
  await h.gateway.waitForHeld(1);
  await query(h.url, `UPDATE pgboss.job SET state = 'retry' WHERE name = $1`, [CHARGE_QUEUE]);
  h.gateway.release();
  t.match(await charging, { status: 'claim_lost' });
  t.match(
    await attemptsOf(h.url, id),
    [{ status: 'pendente', codigo_recusa: 'idempotency_key_reused' }],
    "blocked all the same: the job's next holder must not look the key up",
  );
});

t.test('the dry run leaves a blocked attempt out of the charges and counts it apart', async (t) => {
  const { h, id } = await blockedByAnotherRequest(t);
  const other = await insertRecurrence(h.pool, { proxima_cobranca: DAY, valor_centavos: 2500 });
  // Active again with its attempt still blocked: what a retomar does when the 409 arrived during a pause.
  await query(h.url, `UPDATE checkout_recorrencias SET status = 'ativo', motivo_hold = NULL WHERE id = $1`, [
    id,
  ]);
  const dryRun = await dryRunOf(h, DAY);
  t.equal(dryRun.statusCode, 200);
  t.match(dryRun.json(), { total: 1, valor_total_centavos: 2500, bloqueadas: 1 });
  t.same(
    dryRun
      .json<{ cobrancas: Array<{ recorrencia_id: number }> }>()
      .cobrancas.map((item) => item.recorrencia_id),
    [other],
    'only the charge that would be made',
  );
  // The command line's list and count come from one snapshot; the CSV, for diffing, has its count on stderr.
  const env = { DATABASE_URL: h.url, LOG_LEVEL: 'warn' };
  const dryRunArgs = ['run', 'processar_recorrencias_do_dia', '--date', DAY, '--dry-run'];
  const json = startService(t, dryRunArgs, env);
  t.equal((await json.exited).code, 0, json.stderr());
  t.match(JSON.parse(json.stdout()), {
    total: 1,
    valor_total_centavos: 2500,
    bloqueadas: 1,
    cobrancas: [{ recorrencia_id: other }],
  });
  const csv = startService(t, [...dryRunArgs, '--csv'], env);
  t.equal((await csv.exited).code, 0, csv.stderr());
  t.equal(csv.stdout().trim().split('\n').length, 2, 'the header and the one charge');
  t.match(
    csv.stderr(),
    /^1 charges listed \(2500 cents\); 1 due recurrences left out: their attempt is blocked/,
  );
  // What the run does with it: nothing sent, the recurrence back on hold.
  t.match(await chargeOn(h, id, '2031-03-11'), { status: 'rejected', reason: 'idempotency_key_reused' });
  t.same(await envios(h, id), [1]);
  t.match(await recurrenceState(h.url, id), { status: 'hold' });
});

/**
 * A recurrence due on DAY whose first attempt was charged at the gateway but whose answer was lost (the
 * attempt stays pending, sent once), then aged past the gateway's key retention by `hours`.
 */
async function chargedAnswerLostLongAgo(t: Test, env: Record<string, string>, hours: number) {
  const h = await createAdminHarness(t, env);
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, valor_centavos: 1000 });
  h.gateway.setFaults({ rules: [{ nth: 1, fault: 'reset_after' }] });
  const first = await chargeOnce(h, id, DAY);
  t.match(first.result, { status: 'unresolved' });
  // Long ago: its job has long ended.
  await endJob(h.url, first.jobId);
  h.gateway.clearFaults();
  await query(
    h.url,
    `UPDATE checkout_recorrencia_cobrancas SET criado_em = criado_em - make_interval(hours => $2)
     WHERE recorrencia_id = $1`,
    [id, hours],
  );
  return { h, id };
}

t.test(
  'an attempt older than the gateway keeps its keys is neither sent nor looked up again: an operator resolves it',
  async (t) => {
    const { h, id } = await chargedAnswerLostLongAgo(t, {}, 25);
    const [charged] = h.gateway.ledger();
    t.match(charged, { status: 'approved' }, 'the lost answer was an approval');
    t.match(
      (await dryRunOf(h, '2031-03-11')).json(),
      { total: 0, bloqueadas: 1, cobrancas: [] },
      'the dry run already counts it as blocked',
    );
    const before = h.gateway.stats();
    // The next day's run resumes the attempt. A gateway that has forgotten the key would answer the lookup
    // with 404 and charge the resend as new: this customer charged twice for the cycle.
    t.match(await chargeOn(h, id, '2031-03-11'), { status: 'rejected', reason: 'idempotency_key_expired' });
    const after = h.gateway.stats();
    t.equal(after.lookups, before.lookups, 'not looked up');
    t.equal(after.charge_requests, before.charge_requests, 'not sent');
    t.same(await envios(h, id), [1], 'not counted as sent again');
    const [attempt] = await attemptsOf(h.url, id);
    t.match(attempt, { status: 'pendente', codigo_recusa: 'idempotency_key_expired' });
    t.match(await recurrenceState(h.url, id), { status: 'hold', ciclos_cobrados: 0 });
    const metrics = (await h.app.inject({ url: '/metrics', headers: operator })).body;
    t.match(metrics, /^recorrencias_blocked_attempts 1$/m, 'counted as blocked, for the alert');

    // The operator finds the charge at the gateway and says so: the cycle is paid once, the next one is due.
    const [row] = await query<{ id: number }>(
      h.url,
      'SELECT id::int FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1',
      [id],
    );
    const resolved = await resolve(h, id, row?.id ?? 0, {
      resultado: 'cobrada',
      gateway_ref: charged?.chargeId,
      valor_centavos: 1000,
      moeda: 'BRL',
      motivo: 'cobrança encontrada no painel da gateway',
    });
    t.equal(resolved.statusCode, 200, resolved.body);
    t.match(resolved.json(), { status: 'aprovada', proxima_cobranca: '2031-04-10' });
    t.equal(h.gateway.ledger().length, 1, 'one charge at the gateway');
  },
);

t.test(
  'a blocked attempt is answered without a gateway slot or time, and keeps its count of sends',
  async (t) => {
    const { h, id } = await chargedAnswerLostLongAgo(
      t,
      { GATEWAY_MAX_CONCURRENCY: '1', CHARGE_TIME_LIMIT_SECONDS: '12', GATEWAY_TIMEOUT_MS: '1000' },
      25,
    );
    // Right after an outage the slots are contested: here a dead worker still holds the only one.
    await query(
      h.url,
      `UPDATE vagas_gateway SET job_id = gen_random_uuid(), ate = now() + interval '60 seconds'`,
    );
    const before = h.gateway.stats();
    t.match(
      await chargeOn(h, id, '2031-03-11'),
      { status: 'rejected', reason: 'idempotency_key_expired' },
      'blocked and put on hold, not given up as gateway_busy',
    );
    t.same(h.gateway.stats(), before, 'the gateway was not contacted');
    // The hand-back to the old system lists only attempts with envios > 0, and an operator reads it to choose
    // between cobrada and nao_cobrada: the send whose answer was lost must still count.
    t.same(await envios(h, id), [1], 'the earlier send still counts');
    t.match(await recurrenceState(h.url, id), { status: 'hold' });

    // A batch whose time ran out in phase 1 answers it the same way.
    await query(h.url, `UPDATE checkout_recorrencias SET status = 'ativo' WHERE id = $1`, [id]);
    await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: '2031-03-12', motivo: 'agendada' }]);
    const jobs = await h.fetchChargeJobs();
    const claimedAt = Date.now() - h.config.charges.hardLimitSeconds * 1000;
    t.match(await chargeJobs(h.deps, jobs, claimedAt), [
      { status: 'rejected', reason: 'idempotency_key_expired' },
    ]);
    t.same(await envios(h, id), [1], 'still counted after a batch given up at its deadline');

    // And the take-back itself never lowers a blocked attempt's count.
    const [attempt] = await query<{ id: number }>(
      h.url,
      'SELECT id::int FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1',
      [id],
    );
    await unmarkAttemptsSending(h.pool, [attempt?.id ?? 0]);
    t.same(await envios(h, id), [1], 'unmarkAttemptsSending leaves a blocked attempt alone');
  },
);

t.test('a young attempt, one never sent, or no retention limit: resumed as before', async (t) => {
  // 23 hours: within the gateway's 24, looked up and found.
  const young = await chargedAnswerLostLongAgo(t, {}, 23);
  t.match((await dryRunOf(young.h, '2031-03-11')).json(), {
    total: 1,
    bloqueadas: 0,
    cobrancas: [{ recorrencia_id: young.id, retomada: true }],
  });
  t.match(await chargeOn(young.h, young.id, '2031-03-11'), { status: 'approved' });
  t.equal(young.h.gateway.ledger().length, 1, 'found by the lookup, not charged again');
  // GATEWAY_KEY_RETENTION_HOURS=0: the gateway keeps keys for ever.
  const forever = await chargedAnswerLostLongAgo(t, { GATEWAY_KEY_RETENTION_HOURS: '0' }, 24 * 400);
  t.match(await chargeOn(forever.h, forever.id, '2031-03-11'), { status: 'approved' });
  t.equal(forever.h.gateway.ledger().length, 1);
  // An attempt never sent (its worker stopped after phase 1) has no key at the gateway to forget.
  const h = await createAdminHarness(t);
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, valor_centavos: 1000 });
  await query(
    h.url,
    `INSERT INTO checkout_recorrencia_cobrancas (recorrencia_id, ciclo, tentativa, chave_idempotencia, valor_centavos,
       moeda, cartao_token, data_negocio, criado_em)
     SELECT id, $2, 1, $3, valor_centavos, moeda, cartao_token, $2, now() - interval '30 days'
     FROM checkout_recorrencias WHERE id = $1`,
    [id, DAY, attemptKey(id, DAY, 1)],
  );
  t.match(await chargeOn(h, id, '2031-03-11'), { status: 'approved', cycle: DAY });
  t.equal(h.gateway.ledger().length, 1);
});
