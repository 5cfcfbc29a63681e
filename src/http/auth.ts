// Bearer-token authentication for the admin server. Tokens are named (the name goes into logs and audit
// rows) and scoped; they are compared in constant time. Routes declare what they need in `config.access`:
// 'public' (health, the dashboard page, the API docs), 'read' (any valid token) or 'operator'/'checkout'.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AdminToken, TokenScope } from '../config.ts';
import type { Actor } from '../ops/actor.ts';

export type Access = 'public' | 'read' | TokenScope;

export type Principal = { name: string; scope: TokenScope };

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** Finds the token's owner, comparing against every configured token (no early exit on a match). */
export function identify(tokens: AdminToken[], presented: string): Principal | null {
  const candidate = digest(presented);
  let found: Principal | null = null;
  for (const token of tokens) {
    if (timingSafeEqual(candidate, digest(token.token))) found = { name: token.name, scope: token.scope };
  }
  return found;
}

function allowed(principal: Principal, access: Access): boolean {
  if (access === 'public' || access === 'read') return true;
  return principal.scope === 'operator' || principal.scope === access;
}

const LOOPBACK = /^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/;
const portOf = (hostAndPort: string) => /:(\d+)$/.exec(hostAndPort)?.[1] ?? '80';

/**
 * Without tokens the server trusts whoever reaches it on localhost, and a web page the developer has open
 * can reach it too: a form or fetch() to 127.0.0.1 (its Origin names the page's site), or a DNS name of the
 * page's rebound to 127.0.0.1 (its Host is that name). Either is refused; curl sends no Origin, and the
 * dashboard's requests name localhost in both. Returns why, or null.
 */
function foreignToLocalhost(request: FastifyRequest): string | null {
  const { host, origin } = request.headers;
  if (host === undefined || !LOOPBACK.test(host)) {
    return `without ADMIN_TOKENS this server answers only requests addressed to localhost (Host: ${host ?? 'none'})`;
  }
  // A loopback page on this server's port: another local web app (a dev server on :3000) is another site.
  const originHost = origin?.replace(/^https?:\/\//, '');
  if (
    origin !== undefined &&
    (!LOOPBACK.test(originHost ?? '') || portOf(originHost ?? '') !== portOf(host))
  ) {
    return `without ADMIN_TOKENS this server answers only pages it served itself (Origin: ${origin})`;
  }
  return null;
}

/**
 * Installs the check on every route. Without configured tokens (the dev command on localhost only, enforced
 * at start-up) every caller acts as the local developer.
 */
export function registerAuth(app: FastifyInstance, tokens: AdminToken[]): void {
  app.decorateRequest('principal', null);
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    // The API documentation (registered by @fastify/swagger-ui, which takes no route config) is public.
    const documentation = request.routeOptions.url?.startsWith('/docs') === true;
    const access = documentation ? 'public' : (request.routeOptions.config.access ?? 'operator');
    if (access === 'public') return;
    if (tokens.length === 0) {
      const refusal = foreignToLocalhost(request);
      if (refusal !== null) return reply.status(403).send({ error: 'forbidden', message: refusal });
      request.principal = { name: 'dev', scope: 'operator' };
      return;
    }
    const header = request.headers.authorization ?? '';
    const match = /^Bearer (\S+)$/.exec(header);
    const principal = match?.[1] === undefined ? null : identify(tokens, match[1]);
    if (principal === null) {
      return reply.status(401).header('www-authenticate', 'Bearer').send({
        error: 'unauthorized',
        message: 'a valid bearer token is required (Authorization: Bearer <token>)',
      });
    }
    if (!allowed(principal, access)) {
      return reply.status(403).send({
        error: 'forbidden',
        message: `token "${principal.name}" (${principal.scope}) may not do this`,
      });
    }
    request.principal = principal;
  });
}

/** Who made the request, for audit rows: the token's name, the request's id and the client's address. */
export function actor(request: FastifyRequest): Actor {
  return {
    name: request.principal?.name ?? 'anonymous',
    requestId: request.id,
    source: `http:${request.ip}`,
  };
}
