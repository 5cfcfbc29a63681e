// The fake gateway's control endpoints (no api key): read the ledger and stats, script faults, release held
// responses, reset, and change the outcome settings at runtime. They only use the FakeGateway handle.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { FakeGateway, FaultPlan } from './fake-gateway.ts';
import { invalid, readBody, send, zodMessage, type Reply } from './fake-gateway-http.ts';

const configChangesSchema = z
  .object({
    latencyMs: z.number(),
    declineRate: z.number(),
    irreversibleShare: z.number(),
    seed: z.number(),
  })
  .partial()
  .strict();

function ok(body: unknown): Reply {
  return { status: 200, body };
}

function withoutBody(gateway: FakeGateway, route: string): Reply | undefined {
  switch (route) {
    case 'GET /__ledger':
      return ok({ entries: gateway.ledger() });
    case 'GET /__stats':
      return ok(gateway.stats());
    case 'GET /__faults':
      return ok(gateway.faultPlan());
    case 'GET /__config':
      return ok(gateway.settings());
    case 'DELETE /__faults':
      gateway.clearFaults();
      return ok({ ok: true });
    case 'POST /__release':
      return ok({ released: gateway.release() });
    case 'POST /__reset':
      gateway.reset();
      return ok({ ok: true });
    default:
      return undefined;
  }
}

export async function handleControl(
  gateway: FakeGateway,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
): Promise<void> {
  const route = `${req.method ?? 'GET'} ${path}`;
  const simple = withoutBody(gateway, route);
  if (simple !== undefined) return send(res, simple);
  if (route !== 'POST /__faults' && route !== 'POST /__config') {
    return send(res, { status: 404, body: { error: 'no_route' } });
  }
  const raw = await readBody(req);
  let json: unknown;
  try {
    json = raw === undefined || raw.trim() === '' ? {} : JSON.parse(raw);
  } catch {
    return send(res, invalid('body is not JSON'));
  }
  try {
    if (route === 'POST /__faults') {
      gateway.setFaults(json as FaultPlan); // validated by the planner
      return send(res, ok(gateway.faultPlan()));
    }
    // Ranges are checked by configure (the same schema as the start-up options).
    return send(res, ok(gateway.configure(configChangesSchema.parse(json))));
  } catch (error) {
    if (error instanceof z.ZodError) return send(res, invalid(zodMessage(error)));
    throw error;
  }
}
