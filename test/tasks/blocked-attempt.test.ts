// An attempt whose idempotency key the gateway holds for another request (409): it is blocked, never looked up
// or sent again, the recurrence waits on hold, and an operator resolves it through the admin API (cobrada or
// nao_cobrada) before it can be reactivated. Real Postgres, real pg-boss jobs, the fake gateway over HTTP.
import t, { type Test } from 'tap';
import { attemptKey } from '../../src/domain/identifiers.ts';
import { enqueueChargeJobs } from '../../src/tasks/charge/charge-jobs.ts';
import { chargeRecurrence, type ChargeResult } from '../../src/tasks/charge/charge-recurrence.ts';
import { createAdminHarness, operator, type AdminHarness } from '../helpers/admin.ts';
import { query } from '../helpers/database.ts';
import { attemptsOf, insertRecurrence, recurrenceState } from '../helpers/harness.ts';

const DAY = '2031-03-10';

async function chargeOn(h: AdminHarness, id: number, date: string): Promise<ChargeResult> {
  await enqueueChargeJobs(h.boss, [{ recorrenciaId: id, dataNegocio: date, motivo: 'agendada' }]);
  const [job] = await h.fetchChargeJobs();
  if (job === undefined) throw new Error('no charge job to fetch');
  return chargeRecurrence(h.deps, job);
}

async function envios(h: AdminHarness, id: number): Promise<number[]> {
  const rows = await query<{ envios: number }>(
    h.url,
    'SELECT envios FROM checkout_recorrencia_cobrancas WHERE recorrencia_id = $1 ORDER BY tentativa',
    [id],
  );
  return rows.map((row) => row.envios);
}

/**
 * A recurrence due on DAY whose first attempt's key another environment already used at the gateway, with
 * another card and the same amount (approved there): charged once, the gateway answers 409.
 */
async function blockedByAnotherRequest(t: Test) {
  const h = await createAdminHarness(t);
  const id = await insertRecurrence(h.pool, { proxima_cobranca: DAY, valor_centavos: 1000 });
  const response = await fetch(`${h.gateway.url}/v1/charges`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': attemptKey(id, DAY, 1) },
    body: JSON.stringify({
      amount_cents: 1000,
      currency: 'BRL',
      card_token: 'tok_de_outro_ambiente',
      description: 'outro ambiente',
      metadata: { recorrencia_id: String(id), ciclo: DAY, tentativa: 1 },
    }),
  });
  const foreign = (await response.json()) as { status: string; charge_id: string };
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
    url: `/recorrencias/${id}/tentativas/${attemptId}/resolver`,
    headers: operator,
    payload,
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
    t.match(await chargeOn(h, id, '2031-03-11'), { status: 'rejected', reason: 'idempotency_key_reused' });
    t.match(await attemptsOf(h.url, id), [{ status: 'pendente', codigo_recusa: 'idempotency_key_reused' }]);
    t.same(await envios(h, id), [1], 'not counted as sent again');
    t.equal(h.gateway.ledger().length, 1, 'nothing ran at the gateway but the other request');
    t.match(await recurrenceState(h.url, id), { status: 'hold', ciclos_cobrados: 0 });

    const detail = await h.app.inject({ url: `/recorrencias/${id}`, headers: operator });
    t.match(detail.json(), { cobrancas: [{ id: attemptId, status: 'pendente', bloqueada: true }] });
    const refused = await reactivate(h, id);
    t.equal(refused.statusCode, 409, 'reactivating would only hold it again');
    t.match(refused.json(), { message: new RegExp(`tentativas/${attemptId}/resolver`) });
  },
);

t.test(
  'nao_cobrada: the attempt ends rejeitada and the cycle is charged under a new key after reativar',
  async (t) => {
    const { h, id, attemptId } = await blockedByAnotherRequest(t);
    const missingRef = await resolve(h, id, attemptId, { resultado: 'cobrada', motivo: 'sem referência' });
    t.equal(missingRef.statusCode, 400, 'cobrada needs the gateway charge id');
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
    t.match(resolved.json(), { tentativa: attemptId, ciclo: DAY, status: 'rejeitada' });
    t.match(await attemptsOf(h.url, id), [{ status: 'rejeitada', codigo_recusa: 'idempotency_key_reused' }]);
    t.match(
      await query(h.url, `SELECT quem, detalhes FROM auditoria_admin WHERE acao = 'resolve_blocked_attempt'`),
      [{ quem: 'ana', detalhes: { tentativa: attemptId, resultado: 'nao_cobrada' } }],
    );
    t.equal(
      (await resolve(h, id, attemptId, { resultado: 'nao_cobrada', motivo: 'de novo' })).statusCode,
      409,
      'resolved once',
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
    const { h, id, attemptId, foreignChargeId } = await blockedByAnotherRequest(t);
    const resolved = await resolve(h, id, attemptId, {
      resultado: 'cobrada',
      gateway_ref: foreignChargeId,
      motivo: 'ciclo cobrado antes da restauração do banco',
    });
    t.equal(resolved.statusCode, 200);
    t.match(resolved.json(), { status: 'aprovada', proxima_cobranca: '2031-04-10' });
    t.match(await recurrenceState(h.url, id), {
      status: 'hold',
      proxima_cobranca: '2031-04-10',
      ciclos_cobrados: 1,
    });
    const [attempt] = await query<{
      status: string;
      gateway_ref: string;
      codigo_recusa: null;
      mensagem: string;
    }>(
      h.url,
      'SELECT status, gateway_ref, codigo_recusa, mensagem FROM checkout_recorrencia_cobrancas WHERE id = $1',
      [attemptId],
    );
    t.match(attempt, {
      status: 'aprovada',
      gateway_ref: foreignChargeId,
      codigo_recusa: null,
      mensagem: /resolvida por ana: ciclo cobrado/,
    });
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
