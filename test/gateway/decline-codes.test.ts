import t from 'tap';
import {
  isIrreversibleDecline,
  isIrreversibleDeclineCode,
  normalizeDeclineCode,
} from '../../src/gateway/decline-codes.ts';
import { IRREVERSIBLE_MIX_CODES, REVERSIBLE_MIX_CODES } from '../../src/gateway/fake-gateway-outcomes.ts';

t.test('lost, stolen, invalid, expired and blocked cards are irreversible', async (t) => {
  for (const code of ['14', '41', '43', '46', '54', '57', '63', 'R1', 'N7']) {
    t.ok(isIrreversibleDeclineCode(code), code);
  }
});

t.test('insufficient funds, generic and issuer-asks-retry codes stay reversible', async (t) => {
  // 04 is "pick up card" in plain ISO 8583 but ABECS made it "refazer a transação" (reversible).
  for (const code of ['51', '05', '04', '59', '61', '62', '78', '91', '96', '']) {
    t.notOk(isIrreversibleDeclineCode(code), code || '(empty)');
  }
});

t.test('codes are compared after normalising zero padding, spaces and case', async (t) => {
  t.equal(normalizeDeclineCode('4'), '04');
  t.equal(normalizeDeclineCode('014'), '14');
  t.equal(normalizeDeclineCode(' r1 '), 'R1');
  t.ok(isIrreversibleDeclineCode('014'));
  t.ok(isIrreversibleDeclineCode(' 41 '));
  t.ok(isIrreversibleDeclineCode('r0'));
  t.notOk(isIrreversibleDeclineCode('7'.repeat(3)));
});

t.test('a decline is irreversible if the gateway says so or the code is listed', async (t) => {
  t.ok(isIrreversibleDecline({ code: '51', reversible: false }), 'gateway flag alone');
  t.ok(isIrreversibleDecline({ code: '14', reversible: true }), 'listed code alone');
  t.notOk(isIrreversibleDecline({ code: '51', reversible: true }));
});

t.test("the fake gateway's seeded mix uses codes that agree with the list", async (t) => {
  for (const code of IRREVERSIBLE_MIX_CODES) t.ok(isIrreversibleDeclineCode(code), code);
  for (const code of REVERSIBLE_MIX_CODES) t.notOk(isIrreversibleDeclineCode(code), code);
});
