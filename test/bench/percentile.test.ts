// The benchmarks' summary statistics: a median of several runs must not be the better of two.
import t from 'tap';
import { medianOf, percentileOf } from '../../scripts/bench/percentile.ts';

t.test('the median of an odd number of runs is the middle one, in any order', async (t) => {
  t.equal(medianOf([0.56, 0.5, 0.53]), 0.53);
  t.equal(medianOf([1058]), 1058);
});

t.test('the median of an even number of runs is the mean of the two middle ones', async (t) => {
  t.equal(medianOf([0.55, 0.49]), 0.52);
  t.equal(medianOf([1912, 1668]), 1790);
  t.equal(medianOf([4, 1, 3, 2]), 2.5);
});

t.test('the runs are left as they were, and no runs give 0', async (t) => {
  const runs = [3, 1, 2];
  medianOf(runs);
  t.same(runs, [3, 1, 2]);
  t.equal(medianOf([]), 0);
});

t.test('a percentile reads the ascending list at its rank', async (t) => {
  const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
  t.equal(percentileOf(sorted, 10), 11);
  t.equal(percentileOf(sorted, 90), 91);
  t.equal(percentileOf(sorted, 100), 100);
  t.equal(percentileOf([], 50), 0);
});
