// The operators' dashboard: GET / serves public/dashboard.html, and its script and stylesheet, read from
// public/ at request time (no front-end build). The page holds no data itself: it calls the admin API with
// the token the operator types in, so these three routes are public.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';

/** public/ at the project root: three levels above src/http/routes/ (and dist/http/routes/ once built). */
export const PUBLIC_DIR = new URL('../../../public/', import.meta.url);

/** A fixed list, so no request path ever reaches the file system. */
const ASSETS = [
  { url: '/', file: 'dashboard.html', type: 'text/html; charset=utf-8' },
  { url: '/dashboard.js', file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  { url: '/dashboard.css', file: 'dashboard.css', type: 'text/css; charset=utf-8' },
] as const;

// Same-origin script, style and API calls only, and no framing: the page holds a token and can pause queues.
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export function dashboardRoutes(): FastifyPluginAsyncZod {
  return async (app) => {
    for (const asset of ASSETS) {
      app.get(asset.url, { config: { access: 'public' }, schema: { hide: true } }, async (request, reply) => {
        const body = await readFile(new URL(asset.file, PUBLIC_DIR));
        // The names carry no version, so browsers revalidate every time; the ETag makes that a 304.
        const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 32)}"`;
        reply
          .header('cache-control', 'no-cache')
          .header('etag', etag)
          .header('x-content-type-options', 'nosniff')
          .header('referrer-policy', 'no-referrer')
          .header('content-security-policy', CONTENT_SECURITY_POLICY);
        if (request.headers['if-none-match'] === etag) return reply.status(304).send();
        return reply.type(asset.type).send(body);
      });
    }
  };
}
