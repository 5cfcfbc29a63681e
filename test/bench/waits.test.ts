// The benchmark's reading of pg_stat_activity: each active backend's wait event lands in the state that says
// what limits a run (CPU, commits, locks), and the shares add up to the samples.
import t from 'tap';
import { backendState, BackendSampler, mergeShares } from '../../scripts/bench/waits.ts';

t.test('wait events are read as the state they stand for', async (t) => {
  t.equal(backendState(null, null), 'running');
  t.equal(backendState('LWLock', 'WALWrite'), 'wal', 'waiting for another backend to write the WAL');
  t.equal(backendState('IO', 'WALSync'), 'wal', 'a commit flushing the WAL');
  t.equal(backendState('LWLock', 'WALInsert'), 'wal');
  t.equal(backendState('Lock', 'transactionid'), 'locks', 'a row another transaction holds');
  t.equal(backendState('LWLock', 'BufferContent'), 'locks');
  t.equal(backendState('LWLock', 'LockManager'), 'locks');
  t.equal(backendState('IO', 'DataFileRead'), 'io');
  t.equal(backendState('IO', 'DataFileExtend'), 'io');
  t.equal(backendState('Client', 'ClientRead'), 'client');
  t.equal(backendState('Timeout', 'PgSleep'), 'other');
});

t.test("the shares are each state's part of the samples", async (t) => {
  const sampler = new BackendSampler();
  t.same(sampler.shares(), { running: 0, wal: 0, locks: 0, io: 0, client: 0, other: 0, samples: 0 });
  sampler.add(null, null);
  sampler.add(null, null);
  sampler.add('IO', 'WALSync');
  sampler.add('Lock', 'tuple');
  const shares = sampler.shares();
  t.equal(shares.samples, 4);
  t.equal(shares.running, 0.5);
  t.equal(shares.wal, 0.25);
  t.equal(shares.locks, 0.25);
  t.equal(shares.io + shares.client + shares.other, 0);
});

t.test('the shares of two phases sampled apart merge as if sampled together', async (t) => {
  const samples: Array<[string | null, string | null]> = [
    [null, null],
    ['IO', 'WALSync'],
    ['IO', 'WALSync'],
    ['Lock', 'tuple'],
    ['Client', 'ClientRead'],
  ];
  const first = new BackendSampler();
  const second = new BackendSampler();
  const together = new BackendSampler();
  samples.forEach(([type, event], i) => {
    (i < 2 ? first : second).add(type, event);
    together.add(type, event);
  });
  const merged = mergeShares(first.shares(), second.shares());
  const expected = together.shares();
  t.equal(merged.samples, 5);
  for (const state of ['running', 'wal', 'locks', 'io', 'client', 'other'] as const)
    t.ok(
      Math.abs(merged[state] - expected[state]) < 1e-12,
      `${state}: ${merged[state]} = ${expected[state]}`,
    );
  t.same(
    mergeShares(new BackendSampler().shares(), new BackendSampler().shares()),
    new BackendSampler().shares(),
  );
});
