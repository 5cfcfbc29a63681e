// Job ids: deterministic, distinct for distinct jobs, and sorting as the jobs are enqueued.
import t from 'tap';
import { sortableUuid } from '../../src/domain/identifiers.ts';
import { CHARGE_REASONS, chargeJobId, type ChargeJobPayload } from '../../src/tasks/charge/charge-jobs.ts';

const UUID_V8 = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Postgres compares uuids byte by byte, which for lower-case hex is string order. */
const sorted = (ids: string[]) => [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

t.test('charge job ids sort by business date, then recurrence', async (t) => {
  const recurrences = [1, 2, 255, 256, 65_535, 65_536, 4_294_967_296, Number.MAX_SAFE_INTEGER];
  const ids = ['2031-03-09', '2031-03-10', '2032-01-01'].flatMap((date) =>
    recurrences.map((id) => chargeJobId({ recorrenciaId: id, dataNegocio: date, motivo: 'agendada' })),
  );
  t.same(sorted(ids), ids);
  for (const id of ids) t.match(id, UUID_V8);
});

t.test('charge job ids are the same for the same job and differ for any other', async (t) => {
  const payloads: ChargeJobPayload[] = [];
  for (const recorrenciaId of [1, 2, 3])
    for (const dataNegocio of ['2031-03-10', '2031-03-11'])
      for (const motivo of CHARGE_REASONS)
        for (const ciclo of [undefined, '2031-01-10', '2031-02-10'])
          payloads.push({ recorrenciaId, dataNegocio, motivo, ...(ciclo === undefined ? {} : { ciclo }) });
  const ids = payloads.map(chargeJobId);
  t.equal(new Set(ids).size, payloads.length);
  t.same(payloads.map(chargeJobId), ids);
});

t.test('sortableUuid refuses what does not fit', async (t) => {
  t.throws(() => sortableUuid([[16n, 4]]), RangeError);
  t.throws(() => sortableUuid([[-1n, 4]]), RangeError);
  t.throws(() => sortableUuid([[0n, 123]]), RangeError);
  t.equal(sortableUuid([[15n, 4]]), 'f0000000-0000-8000-8000-000000000000');
  t.equal(sortableUuid([[1n, 122]]), '00000000-0000-8000-8000-000000000001');
});
