// Talks to the fake gateway process's control API (/__ledger, /__stats, /__faults, /__release) and reads its
// JSON-lines ledger file, which survives the process (each entry is written before its response leaves).
import { existsSync, readFileSync } from 'node:fs';
import type {
  FakeGatewayStats,
  FaultKind,
  FaultPlan,
  LedgerEntry,
} from '../../../src/gateway/fake-gateway.ts';

export type { FaultKind, FaultPlan, LedgerEntry };

export type GatewayStats = FakeGatewayStats;

export type GatewayClient = {
  url: string;
  ledger(): Promise<LedgerEntry[]>;
  stats(): Promise<GatewayStats>;
  setFaults(plan: FaultPlan): Promise<void>;
  clearFaults(): Promise<void>;
  release(): Promise<number>;
  /** The ledger as written to disk (for the final check, independent of the process being up). */
  ledgerFromFile(): LedgerEntry[];
};

async function call<T>(url: string, method: string, body?: unknown): Promise<T> {
  const response = await fetch(url, {
    method,
    signal: AbortSignal.timeout(5_000),
    ...(body === undefined
      ? {}
      : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  if (!response.ok) throw new Error(`${method} ${url}: HTTP ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

export function gatewayClient(url: string, ledgerFile: string): GatewayClient {
  return {
    url,
    ledger: async () => (await call<{ entries: LedgerEntry[] }>(`${url}/__ledger`, 'GET')).entries,
    stats: () => call<GatewayStats>(`${url}/__stats`, 'GET'),
    setFaults: async (plan) => void (await call(`${url}/__faults`, 'POST', plan)),
    clearFaults: async () => void (await call(`${url}/__faults`, 'DELETE')),
    release: async () => (await call<{ released: number }>(`${url}/__release`, 'POST')).released,
    ledgerFromFile: () =>
      existsSync(ledgerFile)
        ? readFileSync(ledgerFile, 'utf8')
            .split('\n')
            .filter((line) => line.trim() !== '')
            .map((line) => JSON.parse(line) as LedgerEntry)
        : [],
  };
}
