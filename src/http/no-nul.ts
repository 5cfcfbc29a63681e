// Refuses a request whose body, query or path carries a NUL character: Postgres cannot store one in text
// (it fails the statement), so without this such input would be a 500 instead of a 400 naming the field.
import type { FastifyInstance } from 'fastify';

/** The path of the first string holding a NUL, or null. */
function nulAt(value: unknown, path: string): string | null {
  if (typeof value === 'string') return value.includes('\u0000') ? path : null;
  if (value === null || typeof value !== 'object') return null;
  for (const [key, inner] of Object.entries(value)) {
    const found = nulAt(inner, path === '' ? key : `${path}.${key}`);
    if (found !== null) return found;
  }
  return null;
}

export function refuseNulCharacters(app: FastifyInstance): void {
  app.addHook('preValidation', async (request, reply) => {
    const sources = { body: request.body, querystring: request.query, params: request.params };
    for (const [source, value] of Object.entries(sources)) {
      const field = nulAt(value, source);
      if (field !== null)
        return reply
          .status(400)
          .send({ error: 'invalid_request', message: `${field}: must not contain NUL characters` });
    }
    return undefined;
  });
}
