// Refuses a request whose body, query or path carries a NUL character: Postgres cannot store one in text
// (it fails the statement), so without this such input would be a 500 instead of a 400 naming the field.
// Input nested deeper than any request of this API is refused the same way.
import type { FastifyInstance } from 'fastify';

/** Deeper than any request of this API nests; beyond it the input is refused rather than walked. */
const MAX_DEPTH = 32;

/**
 * The path of the first string holding a NUL, `tooDeep` for input nested past MAX_DEPTH, or null. Walked with
 * a stack, not recursion: a 60 KB body of nested arrays would overflow the call stack (a 500).
 */
function nulAt(value: unknown, path: string): string | { tooDeep: string } | null {
  const pending: Array<{ value: unknown; path: string; depth: number }> = [{ value, path, depth: 0 }];
  for (let item = pending.pop(); item !== undefined; item = pending.pop()) {
    if (typeof item.value === 'string') {
      if (item.value.includes('\u0000')) return item.path;
      continue;
    }
    if (item.value === null || typeof item.value !== 'object') continue;
    if (item.depth >= MAX_DEPTH) return { tooDeep: item.path };
    // Reversed onto the stack, so the first field is looked at first.
    for (const [key, inner] of Object.entries(item.value).reverse()) {
      pending.push({
        value: inner,
        path: item.path === '' ? key : `${item.path}.${key}`,
        depth: item.depth + 1,
      });
    }
  }
  return null;
}

export function refuseNulCharacters(app: FastifyInstance): void {
  app.addHook('preValidation', async (request, reply) => {
    const sources = { body: request.body, querystring: request.query, params: request.params };
    for (const [source, value] of Object.entries(sources)) {
      const field = nulAt(value, source);
      if (typeof field === 'string')
        return reply
          .status(400)
          .send({ error: 'invalid_request', message: `${field}: must not contain NUL characters` });
      if (field !== null)
        return reply.status(400).send({
          error: 'invalid_request',
          message: `${field.tooDeep}: nested deeper than ${MAX_DEPTH} levels`,
        });
    }
    return undefined;
  });
}
