// Business dates are São Paulo calendar dates, never UTC days.
import t from 'tap';
import { businessDate, isoDate } from '../../src/domain/dates.ts';
import { firstOccurrenceOn, jobOccurrence } from '../../src/tasks/job-business-date.ts';

const SP = 'America/Sao_Paulo';

const occurrenceBusinessDate = (cron: string, timeZone: string, createdOn: Date) =>
  jobOccurrence(cron, timeZone, createdOn).date;

t.test('around local midnight the business date follows São Paulo, not UTC', async (t) => {
  // 23:30 local on the 30th is 02:30 UTC on the 1st.
  t.equal(businessDate(new Date('2027-07-01T02:30:00Z'), SP), '2027-06-30');
  // 00:00 local is 03:00 UTC.
  t.equal(businessDate(new Date('2027-07-01T02:59:59.999Z'), SP), '2027-06-30');
  t.equal(businessDate(new Date('2027-07-01T03:00:00Z'), SP), '2027-07-01');
  t.equal(businessDate(new Date('2027-12-31T23:59:00-03:00'), SP), '2027-12-31');
});

t.test('historical daylight saving time in São Paulo (until 2019) moves midnight to 02:00 UTC', async (t) => {
  // On 2018-12-15 São Paulo was at UTC-2.
  t.equal(businessDate(new Date('2018-12-15T01:59:00Z'), SP), '2018-12-14');
  t.equal(businessDate(new Date('2018-12-15T02:00:00Z'), SP), '2018-12-15');
});

t.test('date validation refuses impossible dates', async (t) => {
  t.ok(isoDate.safeParse('2028-02-29').success);
  t.notOk(isoDate.safeParse('2027-02-29').success);
  t.notOk(isoDate.safeParse('2027-13-01').success);
  t.notOk(isoDate.safeParse('27-01-01').success);
  t.notOk(isoDate.safeParse('2027-01-01T00:00:00Z').success);
});

t.test('a cron job is for the business date of the occurrence that produced it', async (t) => {
  // The 08:00 job created 20 s after the tick.
  t.equal(occurrenceBusinessDate('0 8 * * *', SP, new Date('2027-03-10T11:00:20Z')), '2027-03-10');
  // The catch-up job for the missed 08:00 tick, sent when a scheduler came back at 00:30 the next day.
  t.equal(occurrenceBusinessDate('0 8 * * *', SP, new Date('2027-03-11T03:30:00Z')), '2027-03-10');
  // A 23:50 local schedule fires after midnight UTC: still the local day.
  t.equal(occurrenceBusinessDate('50 23 * * *', SP, new Date('2027-03-11T02:50:05Z')), '2027-03-10');
  // Sent 4 s early (the scheduler's clock stepped forward): today's tick, not yesterday's, already done.
  t.equal(occurrenceBusinessDate('0 8 * * *', SP, new Date('2027-03-10T10:59:56Z')), '2027-03-10');
  // The weekly cleanup sent early on Sunday 01:59:58: that Sunday's.
  t.equal(occurrenceBusinessDate('0 2 * * 0', SP, new Date('2027-03-14T04:59:58Z')), '2027-03-14');
  // A job created well before the tick is the previous occurrence's catch-up: yesterday's 08:00 sent at 07:56.
  t.equal(occurrenceBusinessDate('0 8 * * *', SP, new Date('2027-03-10T10:56:00Z')), '2027-03-09');
  t.equal(occurrenceBusinessDate('0 8 * * *', SP, new Date('2027-03-10T10:30:00Z')), '2027-03-09');
  // Sent early for an occurrence after midnight: never the next day's date (it would charge its cycles early),
  // but the date it was created on, as without the margin.
  t.equal(occurrenceBusinessDate('0 0 * * *', SP, new Date('2027-03-11T02:59:58Z')), '2027-03-10');
  t.equal(occurrenceBusinessDate('2 0 * * *', SP, new Date('2027-03-11T02:58:00Z')), '2027-03-10');
  // On time and late are not early; 4 s early is.
  t.same(jobOccurrence('0 8 * * *', SP, new Date('2027-03-10T11:00:00Z')), {
    date: '2027-03-10',
    early: false,
  });
  t.same(jobOccurrence('0 8 * * *', SP, new Date('2027-03-10T10:59:56Z')), {
    date: '2027-03-10',
    early: true,
  });
});

t.test("a schedule's first time on a business date, for the late-run alerts", async (t) => {
  t.same(firstOccurrenceOn('0 8 * * *', SP, '2027-03-10'), new Date('2027-03-10T11:00:00Z'));
  t.same(firstOccurrenceOn('0 2 * * 0', SP, '2027-03-14'), new Date('2027-03-14T05:00:00Z'), 'a Sunday');
  t.equal(firstOccurrenceOn('0 2 * * 0', SP, '2027-03-15'), null, 'none on a Monday');
  t.same(
    firstOccurrenceOn('*/30 * * * *', SP, '2027-03-10'),
    new Date('2027-03-10T03:00:00Z'),
    'local midnight',
  );
  t.same(firstOccurrenceOn('50 23 * * *', SP, '2027-03-10'), new Date('2027-03-11T02:50:00Z'));
});
