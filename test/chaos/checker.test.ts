// The fault suite's checker must be able to fail: a consistent end state passes, and each doctored copy of
// it (a second charge, a mismatched amount, a pending attempt, a date not advanced, ...) is reported.
import t from 'tap';
import {
  check,
  type Snapshot,
  type StopWindow,
  type TermsChange,
  type ViolationKind,
} from './lib/checker.ts';
import type { LedgerEntry } from './lib/gateway-client.ts';

const at = (ms: number) => new Date(Date.parse('2031-03-10T12:00:00Z') + ms).toISOString();

function entry(id: number, ciclo: string, tentativa: number, extra: Partial<LedgerEntry> = {}): LedgerEntry {
  return {
    seq: id * 10 + tentativa,
    key: `rec-${id}-${ciclo}-t${tentativa}`,
    recorrenciaId: String(id),
    ciclo,
    tentativa,
    amountCents: 1000 + id,
    currency: 'BRL',
    status: 'approved',
    chargeId: `ch_${id}_${tentativa}`,
    at: at(id * 1000),
    fingerprint: 'f',
    ...extra,
  };
}

/** Three recurrences due 2031-03-10: 1 approved, 2 declined (retry scheduled), 3 on hold after an irreversible decline. */
function consistent(): Snapshot {
  return {
    ledger: [
      entry(1, '2031-03-10', 1),
      entry(2, '2031-03-10', 1, { status: 'declined', code: '51', reversible: true }),
      entry(3, '2031-03-10', 1, { status: 'declined', code: '14', reversible: false }),
    ],
    seeded: [1, 2, 3, 4].map((id) => ({
      id,
      proxima_cobranca: '2031-03-10',
      status: id === 4 ? 'hold' : 'ativo',
      ciclos_cobrados: 0,
    })),
    recurrences: [
      {
        id: 1,
        status: 'ativo',
        periodicidade: 'mensal',
        dia_ancora: 10,
        proxima_cobranca: '2031-04-10',
        proxima_tentativa: null,
        ciclos_cobrados: 1,
        falhas_consecutivas: 0,
        motivo_hold: null,
        hold_em: null,
      },
      {
        id: 2,
        status: 'ativo',
        periodicidade: 'mensal',
        dia_ancora: 10,
        proxima_cobranca: '2031-03-10',
        proxima_tentativa: '2031-03-11',
        ciclos_cobrados: 0,
        falhas_consecutivas: 1,
        motivo_hold: null,
        hold_em: null,
      },
      {
        id: 3,
        status: 'hold',
        periodicidade: 'semanal',
        dia_ancora: null,
        proxima_cobranca: '2031-03-10',
        proxima_tentativa: null,
        ciclos_cobrados: 0,
        falhas_consecutivas: 1,
        motivo_hold: 'recusa irreversível',
        hold_em: Date.parse(at(3_500)),
      },
      {
        id: 4,
        status: 'hold',
        periodicidade: 'mensal',
        dia_ancora: 10,
        proxima_cobranca: '2031-03-10',
        proxima_tentativa: null,
        ciclos_cobrados: 0,
        falhas_consecutivas: 0,
        motivo_hold: 'x',
        hold_em: Date.parse(at(-3_600_000)),
      },
    ],
    attempts: [
      {
        id: 1,
        recorrencia_id: 1,
        ciclo: '2031-03-10',
        tentativa: 1,
        chave_idempotencia: 'rec-1-2031-03-10-t1',
        status: 'aprovada',
        valor_centavos: 1001,
        codigo_recusa: null,
        recusa_reversivel: null,
        cartao_token: 'tok_1',
        criado_em: Date.parse(at(500)),
      },
      {
        id: 2,
        recorrencia_id: 2,
        ciclo: '2031-03-10',
        tentativa: 1,
        chave_idempotencia: 'rec-2-2031-03-10-t1',
        status: 'recusada',
        valor_centavos: 1002,
        codigo_recusa: '51',
        recusa_reversivel: true,
        cartao_token: 'tok_2',
        criado_em: Date.parse(at(1_500)),
      },
      {
        id: 3,
        recorrencia_id: 3,
        ciclo: '2031-03-10',
        tentativa: 1,
        chave_idempotencia: 'rec-3-2031-03-10-t1',
        status: 'recusada',
        valor_centavos: 1003,
        codigo_recusa: '14',
        recusa_reversivel: false,
        cartao_token: 'tok_3',
        criado_em: Date.parse(at(2_500)),
      },
    ],
    jobs: [{ id: 'j1', name: 'cobrar_recorrencia', state: 'completed', retry_count: 2 }],
    exits: [],
    logs: [{ slot: 'worker1', incarnation: 0, stderr: '', fatal: [], started: true }],
    lastBusinessDate: '2031-03-10',
    stops: [],
    termsChanges: [],
    limits: { chargeRetryLimit: 8, maxDeclinesBeforeHold: 4 },
  };
}

/** Recurrence 2 (its attempt created at 1.5 s) stopped from `from` ms until `until` ms (null: to the end). */
function stopOf2(status: StopWindow['status'], from: number, until: number | null): StopWindow {
  return {
    recorrenciaId: 2,
    status,
    from: Date.parse(at(from)),
    until: until === null ? null : Date.parse(at(until)),
  };
}

/** Recurrence 2 given `cents` and `token` at `at` ms. */
function termsOf2(atMs: number, cents: number, token: string): TermsChange {
  return { recorrenciaId: 2, at: Date.parse(at(atMs)), valor_centavos: cents, cartao_token: token };
}

function kinds(snapshot: Snapshot): ViolationKind[] {
  return [...new Set(check(snapshot).violations.map((v) => v.kind))].sort();
}

t.test('a consistent end state passes, with its figures', async (t) => {
  const verdict = check(consistent());
  t.same(verdict.violations, []);
  t.match(verdict.figures, {
    recurrences: 4,
    attempts: 3,
    charges: 1,
    duplicates: 0,
    lost: 0,
    mismatches: 0,
    nonTerminalJobs: 0,
  });
});

t.test('each doctored end state is reported', async (t) => {
  const cases: Array<[string, (s: Snapshot) => void, ViolationKind[]]> = [
    [
      'a second approved gateway charge for the cycle under a fresh key (the database saw only one)',
      (s) => s.ledger.push(entry(1, '2031-03-10', 2)),
      ['gateway_duplicate_by_cycle', 'ledger_mismatch', 'total_mismatch'],
    ],
    [
      'the same key executed twice at the gateway',
      (s) =>
        s.ledger.push(
          entry(2, '2031-03-10', 1, { status: 'declined', code: '51', reversible: true, seq: 99 }),
        ),
      ['gateway_duplicate_by_key'],
    ],
    [
      'two approvals recorded for one cycle in the database (and charged twice)',
      (s) => {
        s.ledger.push(entry(1, '2031-03-10', 2));
        s.attempts.push({
          id: 9,
          recorrencia_id: 1,
          ciclo: '2031-03-10',
          tentativa: 2,
          chave_idempotencia: 'rec-1-2031-03-10-t2',
          status: 'aprovada',
          valor_centavos: 1001,
          codigo_recusa: null,
          recusa_reversivel: null,
          cartao_token: 'tok_1',
          criado_em: Date.parse(at(9_000)),
        });
      },
      ['db_duplicate_approval', 'gateway_duplicate_by_cycle'],
    ],
    [
      'an amount that differs between the ledger and the database',
      (s) => void ((s.ledger[0] as LedgerEntry).amountCents = 999),
      ['ledger_mismatch', 'total_mismatch'],
    ],
    [
      'a charge the gateway approved and the database recorded as declined',
      (s) => void Object.assign(s.attempts[0] ?? {}, { status: 'recusada', codigo_recusa: 'MUTANT' }),
      ['ledger_mismatch', 'proxima_cobranca', 'total_mismatch'],
    ],
    [
      'a declined charge the database recorded as a rejected request (which runs nothing)',
      (s) => void Object.assign(s.attempts[1] ?? {}, { status: 'rejeitada' }),
      ['cycle_lost', 'ledger_mismatch'],
    ],
    [
      'an approved charge the database never recorded',
      (s) => s.ledger.push(entry(9, '2031-03-10', 1)),
      ['ledger_mismatch', 'total_mismatch'],
    ],
    [
      'an attempt left pending once quiet',
      (s) => void Object.assign(s.attempts[1] ?? {}, { status: 'pendente' }),
      ['cycle_lost', 'pending_left'],
    ],
    [
      'proxima_cobranca not advanced after the approval',
      (s) => void Object.assign(s.recurrences[0] ?? {}, { proxima_cobranca: '2031-03-10' }),
      ['cycle_lost', 'proxima_cobranca'],
    ],
    [
      'a due recurrence left without a charge, a retry or a hold',
      (s) => void Object.assign(s.recurrences[1] ?? {}, { proxima_tentativa: null }),
      ['cycle_lost'],
    ],
    [
      'a charge sent after the recurrence went on hold',
      (s) => s.ledger.push(entry(3, '2031-03-17', 2, { at: at(9_000) })),
      ['ledger_mismatch', 'sent_while_on_hold', 'total_mismatch'],
    ],
    [
      'a charge for a recurrence on hold from the start',
      (s) => s.ledger.push(entry(4, '2031-03-10', 1)),
      ['ledger_mismatch', 'sent_while_on_hold', 'total_mismatch'],
    ],
    [
      'a job left active',
      (s) => s.jobs.push({ id: 'j2', name: 'cobrar_recorrencia', state: 'active', retry_count: 0 }),
      ['non_terminal_job'],
    ],
    [
      'a charge job retried past its limit',
      (s) => void Object.assign(s.jobs[0] ?? {}, { retry_count: 9 }),
      ['retry_limit'],
    ],
    [
      'an unhandled rejection in a log',
      (s) =>
        void Object.assign(s.logs[0] ?? {}, {
          stderr:
            'node:internal/process/promises:394\n    triggerUncaughtException(err, true /* fromPromise */);\n',
        }),
      ['process_error'],
    ],
    [
      'a role that died after starting',
      (s) =>
        s.exits.push({
          slot: 'worker1',
          incarnation: 0,
          pid: 1,
          code: 1,
          signal: null,
          at: 0,
          cause: 'unexpected',
        }),
      ['unexpected_exit'],
    ],
    [
      'an attempt created while its recurrence was paused',
      (s) => s.stops.push(stopOf2('pausado', 1_000, 2_000)),
      ['sent_while_paused'],
    ],
    [
      'an attempt created while its recurrence was left paused',
      (s) => s.stops.push(stopOf2('pausado', 1_000, null)),
      ['sent_while_paused'],
    ],
    [
      'an attempt created after its recurrence was cancelled',
      (s) => s.stops.push(stopOf2('cancelado', 1_000, null)),
      ['sent_after_cancel'],
    ],
    [
      'an attempt created after a change of amount, with the old amount',
      (s) => s.termsChanges.push(termsOf2(1_000, 5_000, 'tok_2')),
      ['stale_terms'],
    ],
    [
      'an attempt created after a change of card, with the old card',
      (s) => s.termsChanges.push(termsOf2(1_000, 1002, 'tok_2_trocado')),
      ['stale_terms'],
    ],
    [
      'a recurrence resumed and never charged (paused at the end, as if retomar were lost)',
      (s) => {
        Object.assign(s.recurrences[1] ?? {}, { status: 'pausado', proxima_tentativa: null });
        s.stops.push(stopOf2('pausado', 1_600, 2_000));
      },
      ['cycle_lost'],
    ],
    [
      'a recurrence cancelled by the checkout, found paused',
      (s) => {
        Object.assign(s.recurrences[1] ?? {}, { status: 'pausado', proxima_tentativa: null });
        s.stops.push(stopOf2('cancelado', 1_600, null));
      },
      ['cycle_lost'],
    ],
    [
      'a recurrence paused by no one the harness knows of',
      (s) => void Object.assign(s.recurrences[1] ?? {}, { status: 'pausado', proxima_tentativa: null }),
      ['cycle_lost'],
    ],
    [
      "a key that is not the attempt's own",
      (s) => void Object.assign(s.attempts[1] ?? {}, { chave_idempotencia: 'rec-2-2031-03-10-t7' }),
      ['key_mismatch', 'ledger_mismatch'],
    ],
  ];
  for (const [name, doctor, expected] of cases) {
    const snapshot = consistent();
    doctor(snapshot);
    t.same(kinds(snapshot), expected, name);
  }
});

t.test('a change by the checkout is no violation when what it allows happened', async (t) => {
  const inFlight = consistent();
  // Recurrence 2's attempt was created (at 1.5 s) before the pause: a charge in flight finishes.
  inFlight.stops.push(stopOf2('pausado', 1_600, 2_000));
  t.same(check(inFlight).violations, [], 'a charge in flight at the pause');
  const leftPaused = consistent();
  Object.assign(leftPaused.recurrences[1] ?? {}, { status: 'pausado', proxima_tentativa: null });
  leftPaused.stops.push(stopOf2('pausado', 1_600, null));
  t.same(check(leftPaused).violations, [], 'a recurrence left paused is settled');
  const cancelled = consistent();
  Object.assign(cancelled.recurrences[1] ?? {}, { status: 'cancelado', proxima_tentativa: null });
  cancelled.stops.push(stopOf2('cancelado', 1_600, null));
  t.same(check(cancelled).violations, [], 'a recurrence cancelled after its charge is settled');
  const changedAfter = consistent();
  changedAfter.termsChanges.push(termsOf2(1_600, 5_000, 'tok_2_trocado'));
  t.same(
    check(changedAfter).violations,
    [],
    'a change after the attempt was created (in flight keeps its own)',
  );
  const changedBefore = consistent();
  changedBefore.termsChanges.push(termsOf2(1_000, 1002, 'tok_2'));
  t.same(check(changedBefore).violations, [], 'an attempt created after a change, with the new terms');
  const resumedAfter = consistent();
  resumedAfter.stops.push(stopOf2('pausado', 500, 1_000));
  t.same(check(resumedAfter).violations, [], 'an attempt created after retomar');
});

t.test('proxima_cobranca follows the anchor day: Jan 31 -> Feb 28, never 31 days later', async (t) => {
  const snapshot = consistent();
  const cycle = '2031-01-31';
  snapshot.lastBusinessDate = cycle;
  snapshot.ledger = [entry(1, cycle, 1)];
  snapshot.seeded = [{ id: 1, proxima_cobranca: cycle, status: 'ativo', ciclos_cobrados: 0 }];
  snapshot.attempts = [
    {
      id: 1,
      recorrencia_id: 1,
      ciclo: cycle,
      tentativa: 1,
      chave_idempotencia: `rec-1-${cycle}-t1`,
      status: 'aprovada',
      valor_centavos: 1001,
      codigo_recusa: null,
      recusa_reversivel: null,
      cartao_token: 'tok_1',
      criado_em: Date.parse(at(500)),
    },
  ];
  const recurrence = snapshot.recurrences[0];
  if (recurrence === undefined) throw new Error('fixture');
  Object.assign(recurrence, { dia_ancora: 31, proxima_cobranca: '2031-02-28' });
  snapshot.recurrences = [recurrence];
  t.same(check(snapshot).violations, [], 'Feb 28 after Jan 31 (anchor 31)');
  recurrence.proxima_cobranca = '2031-03-03';
  t.same(kinds(snapshot), ['proxima_cobranca'], 'a drifted date is reported');
});

t.test('a role that gave up during start-up is a finding, not a violation', async (t) => {
  const snapshot = consistent();
  snapshot.logs.push({
    slot: 'worker2',
    incarnation: 0,
    stderr: '',
    fatal: ['command failed: Client is pending destroy.'],
    started: false,
  });
  snapshot.exits.push({
    slot: 'worker2',
    incarnation: 0,
    pid: 2,
    code: 1,
    signal: null,
    at: 0,
    cause: 'unexpected',
  });
  const verdict = check(snapshot);
  t.same(verdict.violations, []);
  t.same(
    verdict.findings,
    ['worker2#0 (pid 2) exited with code 1 during start-up (command failed: Client is pending destroy.)'],
    'reported with the reason it gave',
  );
});
