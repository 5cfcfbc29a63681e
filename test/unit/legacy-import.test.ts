// Mapping one row of the old system's export: exact money, statuses and periodicities, the anchor, the
// cutover, and every problem named with its column.
import t from 'tap';
import { mapLegacyRow, type LegacyRow } from '../../src/domain/legacy-import.ts';
import { parseReaisToCents } from '../../src/domain/money.ts';
import { decideTransition, firstCycleOnOrAfter, scheduleProblem } from '../../src/domain/recurrence-rules.ts';

const ROW: LegacyRow = {
  id: '42',
  vendedor_id: 'loja',
  token_cartao: 'tok_1',
  bandeira: 'Visa',
  valor: '49.90',
  periodicidade: 'mensal',
  dia_cobranca: '31',
  proxima_cobranca: '2031-02-28',
  status: 'ativa',
};

t.test('reais to cents, exactly', async (t) => {
  t.equal(parseReaisToCents('49.90'), 4990);
  t.equal(parseReaisToCents('49.9'), 4990);
  t.equal(parseReaisToCents('0.29'), 29, 'no floating-point 28.999...');
  t.equal(parseReaisToCents('1234567.05'), 123456705);
  t.equal(parseReaisToCents('7'), 700);
  for (const bad of ['49.999', '49,90', '-1.00', '1e3', '', '.5', '49.'])
    t.equal(parseReaisToCents(bad), null, bad);
});

t.test('a valid row maps to our columns', async (t) => {
  const mapped = mapLegacyRow(ROW, null);
  t.match(mapped, {
    ok: true,
    value: {
      id_legado: '42',
      bandeira: 'visa',
      valor_centavos: 4990,
      dia_ancora: 31,
      proxima_cobranca: '2031-02-28',
      status: 'ativo',
      moeda: 'BRL',
      total_ciclos: null,
      ciclos_cobrados: 0,
    },
  });
  t.match(mapLegacyRow({ ...ROW, status: 'Inadimplente' }, null), {
    value: { status: 'hold', motivo_hold: /Inadimplente/ },
  });
  t.match(mapLegacyRow({ ...ROW, periodicidade: 'weekly', dia_cobranca: '3' }, null), {
    value: { periodicidade: 'semanal', dia_ancora: null },
  });
  t.match(
    mapLegacyRow({ ...ROW, periodicidade: 'weekly', dia_cobranca: '0' }, null),
    { ok: true, value: { periodicidade: 'semanal', dia_ancora: null } },
    'a weekday 0 (Monday) on a weekly row is ignored too',
  );
  t.match(
    mapLegacyRow({ ...ROW, descricao: 'a\u0000b' }, null),
    { ok: false, problems: [{ coluna: 'descricao', motivo: 'contém o caractere NUL' }] },
    'a NUL is refused on its line, not by the database for the whole import',
  );
  t.match(
    mapLegacyRow({ ...ROW, dia_cobranca: '\\N', proxima_cobranca: '2031-03-15' }, null),
    { value: { dia_ancora: 15 } },
    'anchor from the date',
  );
  t.match(mapLegacyRow({ ...ROW, created_at: '2030-05-06 07:08:09.123' }, null), {
    value: { criado_em: '2030-05-06T07:08:09.123Z' },
  });
  t.match(mapLegacyRow({ ...ROW, total_parcelas: '0' }, null), { value: { total_ciclos: null } });
});

t.test('the cutover moves an open recurrence to its first cycle on or after it', async (t) => {
  t.match(mapLegacyRow(ROW, '2031-03-10'), { value: { proxima_cobranca: '2031-03-31' } });
  t.match(mapLegacyRow({ ...ROW, proxima_cobranca: '2031-01-31' }, '2031-03-31'), {
    value: { proxima_cobranca: '2031-03-31' },
  });
  t.match(mapLegacyRow({ ...ROW, status: 'pausada' }, '2031-03-10'), {
    value: { proxima_cobranca: '2031-03-31' },
  });
  t.match(
    mapLegacyRow({ ...ROW, status: 'cancelada' }, '2031-03-10'),
    { value: { proxima_cobranca: '2031-02-28' } },
    'ended ones stay',
  );
  t.match(mapLegacyRow({ ...ROW, proxima_cobranca: '2031-04-30' }, '2031-03-10'), {
    value: { proxima_cobranca: '2031-04-30' },
  });
  t.equal(
    firstCycleOnOrAfter('2031-01-05', '2031-03-05', { periodicidade: 'trimestral', dia_ancora: 5 }),
    '2031-04-05',
  );
  t.equal(
    firstCycleOnOrAfter('2031-03-03', '2031-03-10', { periodicidade: 'semanal', dia_ancora: null }),
    '2031-03-10',
  );
});

t.test('every problem is named with its column', async (t) => {
  const problems = (row: LegacyRow) => {
    const mapped = mapLegacyRow(row, null);
    return mapped.ok ? [] : mapped.problems.map((p) => p.coluna);
  };
  t.same(problems({ ...ROW, valor: '49.999' }), ['valor']);
  t.same(problems({ ...ROW, valor: '0.00' }), ['valor']);
  t.same(problems({ ...ROW, dia_cobranca: '30' }), [], 'Feb 28 is anchor 30 clamped to a short month');
  t.same(problems({ ...ROW, dia_cobranca: '20' }), ['dia_cobranca']);
  t.same(problems({ ...ROW, status: 'zumbi', periodicidade: 'diaria', bandeira: '' }), [
    'bandeira',
    'periodicidade',
    'status',
  ]);
  t.same(problems({ ...ROW, total_parcelas: '12', parcelas_pagas: '12' }), ['parcelas_pagas']);
  t.same(problems({ ...ROW, created_at: 'ontem' }), ['created_at']);
});

t.test('schedule rules and the state machine', async (t) => {
  t.equal(scheduleProblem({ periodicidade: 'mensal', dia_ancora: 31 }, '2031-04-30'), null);
  t.match(scheduleProblem({ periodicidade: 'mensal', dia_ancora: 31 }, '2031-05-30'), /anchor day 31/);
  t.match(scheduleProblem({ periodicidade: 'anual', dia_ancora: null }, '2031-05-30'), /required/);
  t.match(decideTransition('ativo', 'pausar'), { kind: 'apply', to: 'pausado' });
  t.match(decideTransition('pausado', 'pausar'), { kind: 'already' });
  t.match(decideTransition('hold', 'retomar'), { kind: 'refuse' });
  t.match(decideTransition('hold', 'cancelar'), { kind: 'apply' });
  t.match(decideTransition('concluido', 'cancelar'), { kind: 'refuse' });
  t.match(decideTransition('cancelado', 'retomar'), { kind: 'refuse' });
});
