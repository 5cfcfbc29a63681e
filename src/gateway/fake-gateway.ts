// The fake payment gateway: the HTTP contract of gateway.ts over node:http, for development and the test
// suites. It keeps a ledger of executed charges (GET /__ledger), decides outcomes from the card token or a
// seeded mix, and injects scripted faults. Control endpoints (/__*, no api key):
//   GET /__ledger -> { entries }        GET /__stats          GET /__config        GET /__faults
//   POST /__faults { rules, random }    DELETE /__faults      POST /__release      POST /__reset
//   POST /__config { latencyMs?, declineRate?, irreversibleShare?, seed? }
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import type { Logger } from '../log.ts';
import { createChargeDesk, type DeskCounters } from './fake-gateway-charges.ts';
import { handleControl } from './fake-gateway-control.ts';
import { createFaultPlanner, type FaultKind, type FaultPlan } from './fake-gateway-faults.ts';
import { send } from './fake-gateway-http.ts';
import { createLedger, type LedgerEntry } from './fake-gateway-ledger.ts';

export { FAULT_KINDS, type FaultKind, type FaultPlan } from './fake-gateway-faults.ts';
export type { LedgerEntry } from './fake-gateway-ledger.ts';

const settingsSchema = z.object({
  latencyMs: z.number().int().min(0).max(600_000),
  declineRate: z.number().min(0).max(1),
  irreversibleShare: z.number().min(0).max(1),
  seed: z.number().int(),
});
export type FakeGatewaySettings = z.infer<typeof settingsSchema>;

export type FakeGatewayOptions = Partial<FakeGatewaySettings> & {
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** JSON-lines file the ledger is appended to and loaded from, so it survives a restart. */
  ledgerFile?: string;
  /** When set, /v1 requests without `Authorization: Bearer <apiKey>` get 401. */
  apiKey?: string;
  log?: Logger;
};

export type FakeGatewayStats = DeskCounters & {
  /** Charge requests inside their key's lock (being processed or replayed) right now. */
  in_progress: number;
  /** The most charge requests processed at once since start (or the last reset). */
  max_in_progress: number;
  /** Responses waiting for POST /__release. */
  held: number;
  /** How many charge requests each fault kind was applied to. */
  faults: Partial<Record<FaultKind, number>>;
};

export type FakeGateway = {
  url: string;
  port: number;
  ledger(): readonly LedgerEntry[];
  stats(): FakeGatewayStats;
  settings(): FakeGatewaySettings;
  /** Changes outcome settings at runtime; throws a ZodError on an out-of-range value. */
  configure(changes: Partial<FakeGatewaySettings>): FakeGatewaySettings;
  /** Replaces the fault plan (see fake-gateway-faults.ts) and restarts its count; throws on an invalid plan. */
  setFaults(plan: FaultPlan): void;
  clearFaults(): void;
  /** The installed plan and how many charge requests it has counted. */
  faultPlan(): { plan: unknown; counted: number };
  /** Sends every held response; returns how many there were. */
  release(): number;
  /** Clears the ledger (and its file), stored keys, faults and stats; held responses are released. */
  reset(): void;
  /** Polls stats() until `held` reaches `count` (tests use it to act while a request is in flight). */
  waitForHeld(count: number, timeoutMs?: number): Promise<void>;
  /** Stops listening and drops open connections (held responses are never sent). Safe to call twice. */
  close(): Promise<void>;
};

const CHARGES = '/v1/charges';
const CHARGE_LOOKUP = '/v1/charges/';

/**
 * Starts the fake on `host:port`. Outcomes: a `decline_*` fault for the request, else the card token's
 * prefix (`tok_aprova`, `tok_recusa_reversivel` -> 51, `tok_recusa_irreversivel` -> 14), else a mix
 * drawn from seed + idempotency key (`declineRate`, `irreversibleShare`).
 */
export async function startFakeGateway(options: FakeGatewayOptions = {}): Promise<FakeGateway> {
  let settings = settingsSchema.parse({
    latencyMs: options.latencyMs ?? 0,
    declineRate: options.declineRate ?? 0,
    irreversibleShare: options.irreversibleShare ?? 0.2,
    seed: options.seed ?? 1,
  });
  const host = options.host ?? '127.0.0.1';
  const ledger = createLedger(options.ledgerFile);
  const faults = createFaultPlanner();
  const lifetime = new AbortController();
  const desk = createChargeDesk({
    settings: () => settings,
    ledger,
    nextFault: () => faults.next(),
    apiKey: options.apiKey,
    lifetime: lifetime.signal,
    log: options.log,
  });

  const gateway: FakeGateway = {
    url: '',
    port: 0,
    ledger: () => ledger.entries(),
    stats: () => desk.stats(),
    settings: () => ({ ...settings }),
    configure(changes) {
      settings = settingsSchema.parse({ ...settings, ...changes });
      return { ...settings };
    },
    setFaults: (plan) => faults.install(plan),
    clearFaults: () => faults.clear(),
    faultPlan: () => faults.describe(),
    release: () => desk.release(),
    reset() {
      desk.release();
      ledger.clear();
      faults.clear();
      desk.resetStats();
    },
    async waitForHeld(count, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      while (desk.stats().held < count) {
        if (Date.now() > deadline) throw new Error(`fake gateway: ${count} held response(s) not reached`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
    close: async () => undefined,
  };

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    if (path === CHARGES && req.method === 'POST') return desk.charge(req, res);
    if (path.startsWith(CHARGE_LOOKUP) && path.length > CHARGE_LOOKUP.length && req.method === 'GET') {
      return desk.lookup(req, res, path.slice(CHARGE_LOOKUP.length));
    }
    if (path.startsWith('/__')) return handleControl(gateway, req, res, path);
    // Not `not_found`: only a lookup of a never-executed key may say that.
    send(res, { status: 404, body: { error: 'no_route' } });
  }

  const server = createServer((req, res) => {
    route(req, res).catch((error: unknown) => {
      options.log?.warn({ err: error, url: req.url }, 'fake gateway request failed');
      if (!res.headersSent) send(res, { status: 500, body: { error: 'internal_error' } });
      else res.destroy();
    });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    ledger.close();
    throw error;
  }

  let closing: Promise<void> | undefined;
  gateway.port = (server.address() as AddressInfo).port;
  gateway.url = `http://${host.includes(':') ? `[${host}]` : host}:${gateway.port}`;
  gateway.close = () => {
    closing ??= (async () => {
      lifetime.abort();
      desk.dropHeld();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      ledger.close();
    })();
    return closing;
  };
  return gateway;
}
