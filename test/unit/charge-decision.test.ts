// Phase 1's decision for one job, for every branch: what is skipped and why, what is resumed, what is planned.
import t from 'tap';
import type { Recurrence } from '../../src/db/recorrencias.ts';
import {
  moveFromPause,
  pausesStillAhead,
  type Pause,
  type PauseDays,
} from '../../src/domain/recurrence-rules.ts';
import { decideCharge as decide } from '../../src/tasks/charge/charge-decision.ts';

const base: Recurrence = {
  id: 1,
  vendedor_id: 'v',
  cliente_ref: null,
  cartao_token: 'tok',
  bandeira: 'visa',
  valor_centavos: 100,
  moeda: 'BRL',
  descricao: '',
  periodicidade: 'mensal',
  dia_ancora: 31,
  proxima_cobranca: '2031-01-31',
  total_ciclos: null,
  ciclos_cobrados: 0,
  status: 'ativo',
  falhas_consecutivas: 0,
  total_falhas: 0,
  proxima_tentativa: null,
  motivo_hold: null,
  hold_em: null,
  encerrada_em: null,
  referencia_externa: null,
  id_legado: null,
  cobrar_a_partir_de: null,
  pausada_desde: null,
  pausas_anteriores: [],
  hold_avisado_em: null,
  criado_em: new Date(),
  atualizado_em: new Date(),
};
type Args = Parameters<typeof decide>;
/** Phase 1 runs before every job's date here unless a test says otherwise: only the job's date counts. */
const decideCharge = (
  recurrence: Args[0],
  pending: Args[1],
  payload: Args[2],
  backbill: Args[3],
  today = '2030-12-31',
  dueOn?: Args[5],
) => decide(recurrence, pending, payload, backbill, today, dueOn);
const job = (over: object = {}) => ({
  recorrenciaId: 1,
  dataNegocio: '2031-01-31',
  motivo: 'agendada' as const,
  ...over,
});

t.test('skips, each with its reason', async (t) => {
  t.same(decideCharge(null, false, job(), false), { kind: 'skip', reason: 'recurrence_not_found' });
  for (const status of ['hold', 'pausado', 'cancelado', 'concluido'] as const) {
    t.same(decideCharge({ ...base, status }, false, job(), false), {
      kind: 'skip',
      reason: `recurrence_${status}`,
    });
  }
  t.same(
    decideCharge({ ...base, total_ciclos: 3, ciclos_cobrados: 3 }, false, job(), false),
    { kind: 'skip', reason: 'all_cycles_charged' },
    'an active recurrence whose cycles are all charged is not charged again',
  );
  t.same(decideCharge(base, false, job({ dataNegocio: '2031-01-30' }), false), {
    kind: 'skip',
    reason: 'not_due',
  });
  t.same(decideCharge({ ...base, proxima_tentativa: '2031-02-01' }, false, job(), false), {
    kind: 'skip',
    reason: 'waiting_for_retry',
  });
  t.same(decideCharge(base, false, job({ motivo: 'retentativa' }), false), {
    kind: 'skip',
    reason: 'retry_not_due',
  });
  t.same(
    decideCharge({ ...base, proxima_tentativa: '2031-02-01' }, false, job({ motivo: 'retentativa' }), false),
    { kind: 'skip', reason: 'retry_not_due' },
  );
  t.same(decideCharge(base, false, job({ motivo: 'retroativa', ciclo: '2030-12-31' }), true), {
    kind: 'skip',
    reason: 'backbill_cycle_already_handled',
  });
});

t.test('an unresolved attempt is resumed, even when nothing would be due', async (t) => {
  t.same(decideCharge(base, true, job({ dataNegocio: '2031-01-01' }), false), { kind: 'resume' });
  for (const status of ['hold', 'pausado', 'cancelado'] as const) {
    t.same(
      decideCharge({ ...base, status }, true, job(), false),
      { kind: 'resume' },
      `also when the recurrence became ${status} while its charge was in flight`,
    );
  }
});

t.test('a new attempt for the planned cycle; a retry clears its retry date', async (t) => {
  t.same(decideCharge(base, false, job(), false), {
    kind: 'new',
    plan: { cycle: '2031-01-31', skipped: [] },
    clearsRetry: false,
  });
  t.same(
    decideCharge(
      { ...base, proxima_tentativa: '2031-02-01' },
      false,
      job({ motivo: 'retentativa', dataNegocio: '2031-02-01' }),
      false,
    ),
    {
      kind: 'new',
      plan: { cycle: '2031-01-31', skipped: [] },
      clearsRetry: true,
    },
  );
  t.same(
    decideCharge(
      { ...base, proxima_tentativa: '2031-03-02' },
      false,
      job({ motivo: 'retentativa', dataNegocio: '2031-03-02' }),
      false,
    ),
    { kind: 'new', plan: { cycle: '2031-01-31', skipped: [] }, clearsRetry: true },
    'a retry charges the declined cycle, even after the next one fell due',
  );
  t.same(decideCharge(base, false, job({ dataNegocio: '2031-04-02' }), false), {
    kind: 'new',
    plan: { cycle: '2031-03-31', skipped: ['2031-01-31', '2031-02-28'] },
    clearsRetry: false,
  });
});

t.test(
  'a job run after its date charges what is due by the day it runs: the latest cycle, once',
  async (t) => {
    t.same(decideCharge(base, false, job(), false, '2031-04-02'), {
      kind: 'new',
      plan: { cycle: '2031-03-31', skipped: ['2031-01-31', '2031-02-28'] },
      clearsRetry: false,
    });
    t.same(
      decideCharge(base, false, job(), true, '2031-04-02'),
      { kind: 'new', plan: { cycle: '2031-01-31', skipped: [] }, clearsRetry: false },
      'with back-billing, the oldest unpaid cycle (the approval enqueues the next)',
    );
    t.same(
      decideCharge(base, false, job({ dataNegocio: '2031-01-30' }), false, '2031-04-02'),
      { kind: 'skip', reason: 'not_due' },
      'a job charges nothing that was not due by its own date: the run of the day does',
    );
  },
);

t.test(
  'a cycle still before the resume date (owed: phase 1 moved any other) is charged itself',
  async (t) => {
    const owed = { ...base, proxima_cobranca: '2031-01-31', cobrar_a_partir_de: '2031-04-15' };
    for (const backbill of [false, true]) {
      t.match(decideCharge(owed, false, job({ dataNegocio: '2031-04-20' }), backbill), {
        kind: 'new',
        plan: { cycle: '2031-01-31', skipped: [] },
      });
    }
    t.match(
      decideCharge(
        { ...owed, cobrar_a_partir_de: '2031-01-31' },
        false,
        job({ dataNegocio: '2031-04-20' }),
        false,
      ),
      { kind: 'new', plan: { cycle: '2031-03-31', skipped: ['2031-01-31', '2031-02-28'] } },
      'resumed on or before that cycle: the usual catch-up',
    );
  },
);

t.test('where a resumed recurrence moves past its pause (moveFromPause)', async (t) => {
  const monthly = { periodicidade: 'mensal' as const, dia_ancora: 10 };
  const unknownStart = { pausada_desde: null, cobrar_a_partir_de: '2031-05-20', pausas_anteriores: [] };
  const move = (attempted: boolean, until: string, backbill: boolean, pause: Pause = unknownStart) =>
    moveFromPause('2031-03-10', pause, attempted, until, monthly, backbill);
  t.same(
    move(false, '2031-05-21', false),
    { next: '2031-06-10', behind: [], paused: ['2031-03-10', '2031-04-10', '2031-05-10'] },
    'never attempted, pause start unknown: a cycle of the pause',
  );
  t.equal(move(true, '2031-05-21', false), null, 'attempted, nothing after the pause due yet: owed');
  t.equal(move(true, '2031-06-15', true), null, 'attempted, back-billing: owed, then the rest');
  t.same(
    move(true, '2031-06-15', false),
    { next: '2031-06-10', behind: ['2031-03-10'], paused: ['2031-04-10', '2031-05-10'] },
    'attempted, a cycle after the pause due, no back-billing: only the latest is charged',
  );
  const at = (due: string, pause: Pause) => moveFromPause(due, pause, false, '2031-05-21', monthly, false);
  t.equal(at('2031-05-20', unknownStart), null, 'not before the resume');
  t.equal(
    at('2031-03-10', { pausada_desde: null, cobrar_a_partir_de: null, pausas_anteriores: [] }),
    null,
    'never paused',
  );

  // Paused on 04-20: 03-10 and 04-10 fell due before it, never attempted (waiting for a retry, say).
  const known = { pausada_desde: '2031-04-20', cobrar_a_partir_de: '2031-05-20', pausas_anteriores: [] };
  t.same(
    move(false, '2031-05-21', false, known),
    { next: '2031-04-10', behind: ['2031-03-10'], paused: [] },
    'owed, nothing after the pause due: the latest owed cycle is charged',
  );
  t.equal(move(false, '2031-05-21', true, known), null, 'back-billing: the oldest owed first');
  t.same(
    move(false, '2031-06-15', false, known),
    { next: '2031-06-10', behind: ['2031-03-10', '2031-04-10'], paused: ['2031-05-10'] },
    'a cycle after the pause due: only it is charged',
  );
  t.same(
    at('2031-03-10', {
      pausada_desde: '2031-05-20',
      cobrar_a_partir_de: '2031-05-20',
      pausas_anteriores: [],
    }),
    { next: '2031-05-10', behind: ['2031-03-10', '2031-04-10'], paused: [] },
    'a zero-day pause forgives nothing',
  );
  t.same(
    at('2031-04-10', {
      pausada_desde: '2031-04-10',
      cobrar_a_partir_de: '2031-05-20',
      pausas_anteriores: [],
    }),
    { next: '2031-06-10', behind: [], paused: ['2031-04-10', '2031-05-10'] },
    'a cycle due on the day the pause began is one of the pause',
  );
});

t.test(
  'a row phase 1 moved past a pause: due by the job date as locked, the moved cycle by the plan date',
  async (t) => {
    const moved = {
      ...base,
      dia_ancora: 10,
      proxima_cobranca: '2031-06-10',
      cobrar_a_partir_de: '2031-05-20',
    };
    const late = job({ dataNegocio: '2031-06-01' });
    t.match(decideCharge(moved, false, late, false, '2031-06-12', '2031-03-10'), {
      kind: 'new',
      plan: { cycle: '2031-06-10', skipped: [] },
    });
    t.same(
      decideCharge(moved, false, late, false, '2031-06-12', '2031-06-02'),
      { kind: 'skip', reason: 'not_due' },
      'not due by the job date before the move',
    );
    t.same(
      decideCharge(moved, false, late, false, '2031-06-05', '2031-03-10'),
      { kind: 'skip', reason: 'not_due' },
      'moved past the date the job plans on',
    );
  },
);

t.test('the pauses a new pausar keeps: those still with a cycle ahead (pausesStillAhead)', async (t) => {
  const row = (
    proxima: string,
    pausada_desde: string | null,
    cobrar_a_partir_de: string | null,
    earlier: PauseDays[] = [],
  ) => ({
    periodicidade: 'mensal' as const,
    dia_ancora: 10,
    proxima_cobranca: proxima,
    pausada_desde,
    cobrar_a_partir_de,
    pausas_anteriores: earlier,
  });
  t.same(pausesStillAhead(row('2031-03-10', null, null)), [], 'never resumed');
  t.same(pausesStillAhead(row('2031-06-10', '2031-03-12', '2031-05-20')), [], 'settled');
  t.same(
    pausesStillAhead(row('2031-03-10', '2031-03-12', '2031-05-20')),
    [['2031-03-12', '2031-05-20']],
    '03-10 owed, 04-10 and 05-10 of the pause ahead',
  );
  t.same(
    pausesStillAhead(row('2031-03-10', '2031-03-12', '2031-03-13')),
    [],
    'owed, but that pause held no cycle',
  );
  t.same(pausesStillAhead(row('2031-03-10', null, '2031-05-20')), [[null, '2031-05-20']], 'start unknown');
  t.same(
    pausesStillAhead(row('2031-03-10', '2031-08-15', '2031-08-15', [['2031-03-11', '2031-05-20']])),
    [['2031-03-11', '2031-05-20']],
    'a third pause keeps the first, still ahead, and drops the second, which held no cycle',
  );
});

t.test(
  'an earlier pause kept in pausas_anteriores: its cycles skipped, the ones between the pauses owed',
  async (t) => {
    const monthly = { periodicidade: 'mensal' as const, dia_ancora: 10 };
    const pauses: Pause = {
      pausada_desde: '2031-08-15',
      cobrar_a_partir_de: '2031-08-15',
      pausas_anteriores: [['2031-03-11', '2031-05-20']],
    };
    t.equal(
      moveFromPause('2031-03-10', pauses, true, '2031-08-16', monthly, true),
      null,
      'the attempted cycle first',
    );
    t.same(
      moveFromPause('2031-04-10', pauses, false, '2031-08-16', monthly, true),
      { next: '2031-06-10', behind: [], paused: ['2031-04-10', '2031-05-10'] },
      'back-billing: past the earlier pause to the first cycle due between the two',
    );
    t.same(
      moveFromPause('2031-03-10', pauses, true, '2031-08-16', monthly, false),
      {
        next: '2031-08-10',
        behind: ['2031-03-10', '2031-06-10', '2031-07-10'],
        paused: ['2031-04-10', '2031-05-10'],
      },
      'no back-billing: only the latest owed cycle, the first after the last pause not due yet',
    );
  },
);
