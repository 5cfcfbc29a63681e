// What reaches a log line or an API answer of a stored error: the fields that carry data are dropped, however
// deep the error's chain of causes goes.
import t from 'tap';
import { redactSerializedError, serializeError } from '../../src/log.ts';

t.test(
  'an error chain deeper than the scrubber goes is cut, never passed through with its values',
  async (t) => {
    let stored: unknown = { message: 'deepest', values: ['tok_live_4242424242'] };
    for (let layer = 0; layer < 8; layer++) stored = { message: `layer ${layer}`, cause: stored };
    const text = JSON.stringify(redactSerializedError(stored));
    t.notMatch(text, /tok_live_4242424242/, 'the card token is not there');
    t.match(text, /"cause":"\[truncated\]"/, 'the part too deep to scrub is cut');

    let error = new Error('deepest', {
      cause: Object.assign(new Error('query'), { values: ['tok_live_1'] }),
    });
    for (let layer = 0; layer < 8; layer++) error = new Error(`layer ${layer}`, { cause: error });
    t.notMatch(JSON.stringify(serializeError(error)), /tok_live_1/, 'nor from a live error');
  },
);
