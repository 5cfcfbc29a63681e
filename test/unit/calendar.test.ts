// Fixed vectors for the billing calendar: month ends, leap years, anchors 29–31, skipped cycles.
import t from 'tap';
import { latestCycleOnOrBefore, nextCycle, planCharge, type Schedule } from '../../src/domain/calendar.ts';

const monthly = (anchor: number): Schedule => ({ periodicidade: 'mensal', dia_ancora: anchor });

function walk(start: string, schedule: Schedule, count: number): string[] {
  const dates = [start];
  while (dates.length < count) dates.push(nextCycle(dates.at(-1) as string, schedule));
  return dates;
}

t.test('anchor 31 returns to the 31st after short months (never drifts)', async (t) => {
  t.same(walk('2027-01-31', monthly(31), 6), [
    '2027-01-31',
    '2027-02-28',
    '2027-03-31',
    '2027-04-30',
    '2027-05-31',
    '2027-06-30',
  ]);
  t.same(
    walk('2028-01-31', monthly(31), 3),
    ['2028-01-31', '2028-02-29', '2028-03-31'],
    'leap year February',
  );
});

t.test('anchors 29 and 30 clamp in February and come back', async (t) => {
  t.same(walk('2027-01-29', monthly(29), 3), ['2027-01-29', '2027-02-28', '2027-03-29']);
  t.same(walk('2028-01-29', monthly(29), 3), ['2028-01-29', '2028-02-29', '2028-03-29']);
  t.same(walk('2027-01-30', monthly(30), 3), ['2027-01-30', '2027-02-28', '2027-03-30']);
});

t.test('a Feb 29 yearly anchor charges Feb 28 in common years and Feb 29 in leap years', async (t) => {
  t.same(walk('2028-02-29', { periodicidade: 'anual', dia_ancora: 29 }, 5), [
    '2028-02-29',
    '2029-02-28',
    '2030-02-28',
    '2031-02-28',
    '2032-02-29',
  ]);
});

t.test('quarterly, half-yearly and year-end crossings', async (t) => {
  t.same(walk('2027-11-30', { periodicidade: 'trimestral', dia_ancora: 31 }, 3), [
    '2027-11-30',
    '2028-02-29',
    '2028-05-31',
  ]);
  t.same(walk('2027-08-31', { periodicidade: 'semestral', dia_ancora: 31 }, 3), [
    '2027-08-31',
    '2028-02-29',
    '2028-08-31',
  ]);
  t.same(walk('2027-12-15', monthly(15), 2), ['2027-12-15', '2028-01-15']);
});

t.test('weekly cycles are seven days apart, across month and year ends', async (t) => {
  t.same(walk('2027-12-28', { periodicidade: 'semanal', dia_ancora: null }, 3), [
    '2027-12-28',
    '2028-01-04',
    '2028-01-11',
  ]);
});

t.test('latest cycle on or before a date', async (t) => {
  t.equal(latestCycleOnOrBefore('2027-01-31', '2027-03-15', monthly(31)), '2027-02-28');
  t.equal(latestCycleOnOrBefore('2027-01-31', '2027-03-31', monthly(31)), '2027-03-31');
  t.equal(latestCycleOnOrBefore('2027-01-31', '2027-01-31', monthly(31)), '2027-01-31');
  t.equal(latestCycleOnOrBefore('2027-01-05', '2029-06-04', monthly(5)), '2029-05-05');
  t.equal(
    latestCycleOnOrBefore('2027-01-01', '2027-01-29', { periodicidade: 'semanal', dia_ancora: null }),
    '2027-01-29',
  );
  t.equal(
    latestCycleOnOrBefore('2027-01-01', '2027-01-28', { periodicidade: 'semanal', dia_ancora: null }),
    '2027-01-22',
  );
  t.throws(() => latestCycleOnOrBefore('2027-02-01', '2027-01-31', monthly(1)));
});

t.test(
  'one cycle behind is charged for that cycle; several behind charge the latest and skip the rest',
  async (t) => {
    t.same(planCharge('2027-03-10', '2027-03-11', monthly(10), false), { cycle: '2027-03-10', skipped: [] });
    t.same(planCharge('2027-01-01', '2027-01-29', { periodicidade: 'semanal', dia_ancora: null }, false), {
      cycle: '2027-01-29',
      skipped: ['2027-01-01', '2027-01-08', '2027-01-15', '2027-01-22'],
    });
    t.same(planCharge('2027-01-31', '2027-04-30', monthly(31), false), {
      cycle: '2027-04-30',
      skipped: ['2027-01-31', '2027-02-28', '2027-03-31'],
    });
    t.same(
      planCharge('2027-01-31', '2027-04-30', monthly(31), true),
      { cycle: '2027-01-31', skipped: [] },
      'back-billing charges the oldest',
    );
  },
);
