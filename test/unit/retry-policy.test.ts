import t from 'tap';
import { decideAfterDecline, type DeclineFacts, type RetryPolicy } from '../../src/domain/retry-policy.ts';

const policy: RetryPolicy = {
  backoffDays: [1, 3, 7],
  maxDeclinesBeforeHold: 4,
  brandLimits30d: { visa: 15, mastercard: 35 },
};
const facts = (over: Partial<DeclineFacts>): DeclineFacts => ({
  consecutiveDeclines: 1,
  irreversible: false,
  code: '51',
  brand: 'visa',
  attemptsLast30Days: 1,
  today: '2027-03-10',
  ...over,
});

t.test('reversible declines back off 1, 3, 7 days, then hold at the limit', async (t) => {
  t.same(decideAfterDecline(policy, facts({ consecutiveDeclines: 1 })), {
    kind: 'retry',
    retryOn: '2027-03-11',
  });
  t.same(decideAfterDecline(policy, facts({ consecutiveDeclines: 2 })), {
    kind: 'retry',
    retryOn: '2027-03-13',
  });
  t.same(decideAfterDecline(policy, facts({ consecutiveDeclines: 3 })), {
    kind: 'retry',
    retryOn: '2027-03-17',
  });
  const held = decideAfterDecline(policy, facts({ consecutiveDeclines: 4 }));
  t.equal(held.kind, 'hold');
});

t.test('the last backoff step repeats when the hold limit is higher than the steps', async (t) => {
  const long = { ...policy, maxDeclinesBeforeHold: 10 };
  t.same(decideAfterDecline(long, facts({ consecutiveDeclines: 6 })), {
    kind: 'retry',
    retryOn: '2027-03-17',
  });
});

t.test('irreversible declines are never retried', async (t) => {
  const decision = decideAfterDecline(policy, facts({ irreversible: true, code: '14' }));
  t.equal(decision.kind, 'hold');
  t.match(decision.kind === 'hold' ? decision.reason : '', /irreversível.*14/);
});

t.test('brand caps over 30 days put the recurrence on hold', async (t) => {
  t.equal(decideAfterDecline(policy, facts({ attemptsLast30Days: 14 })).kind, 'retry');
  const held = decideAfterDecline(policy, facts({ attemptsLast30Days: 15 }));
  t.match(held.kind === 'hold' ? held.reason : '', /bandeira visa/);
  t.equal(decideAfterDecline(policy, facts({ brand: 'Mastercard', attemptsLast30Days: 20 })).kind, 'retry');
  t.equal(
    decideAfterDecline(policy, facts({ brand: 'desconhecida', attemptsLast30Days: 99 })).kind,
    'retry',
    'unlisted brands have no cap',
  );
});
