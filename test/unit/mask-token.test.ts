// Card token references in the admin views: never more than half of a token shown.
import t from 'tap';
import { maskToken } from '../../src/ops/recurrences.ts';

t.test('a token shows at most its first and last 4 characters, and never half of itself', async (t) => {
  t.equal(maskToken('abcdefghi'), '****', '9 characters: nothing');
  t.equal(maskToken('abcdefghijk'), '****');
  t.equal(maskToken('abcdefghijkl'), '…ijkl', '12 characters: the last 4');
  t.equal(maskToken('tok_aprova_0123456789'), 'tok_…6789');
  for (const length of [1, 8, 9, 12, 15, 16, 40]) {
    const token = 'x'.repeat(length);
    const shown = maskToken(token).replaceAll(/[*…]/g, '').length;
    t.ok(shown * 2 <= length || shown === 0, `${length} characters: ${shown} shown`);
  }
});
