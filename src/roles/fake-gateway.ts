// `fake-gateway`: the fake payment gateway (src/gateway/fake-gateway.ts) as a process of its own, for
// development, compose stacks and the load and chaos suites. It needs no database and reads only its own
// FAKE_GATEWAY_* variables (plus GATEWAY_API_KEY, shared with the workers' client).
import { resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../config.ts';
import { startFakeGateway, type FakeGatewayOptions } from '../gateway/fake-gateway.ts';
import type { Running } from '../lifecycle.ts';
import type { Logger } from '../log.ts';

const environmentSchema = z.object({
  FAKE_GATEWAY_PORT: z.coerce.number().int().min(0).max(65_535).default(8090),
  FAKE_GATEWAY_HOST: z.string().min(1).default('127.0.0.1'),
  FAKE_GATEWAY_LATENCY_MS: z.coerce.number().int().min(0).max(600_000).default(0),
  FAKE_GATEWAY_DECLINE_RATE: z.coerce.number().min(0).max(1).default(0),
  FAKE_GATEWAY_IRREVERSIBLE_SHARE: z.coerce.number().min(0).max(1).default(0.2),
  FAKE_GATEWAY_SEED: z.coerce.number().int().default(1),
  FAKE_GATEWAY_LEDGER_FILE: z.string().min(1).optional(),
  GATEWAY_API_KEY: z.string().min(1).optional(),
});

/** The variables this role reads (for .env.example and the README). */
export const FAKE_GATEWAY_VARIABLES = Object.keys(environmentSchema.shape);

/** Parses the role's variables; empty values count as unset. Throws ConfigError naming each bad one. */
export function fakeGatewayOptionsFrom(env: NodeJS.ProcessEnv): FakeGatewayOptions {
  const present: Record<string, string> = {};
  for (const name of FAKE_GATEWAY_VARIABLES) {
    const value = env[name];
    if (value !== undefined && value !== '') present[name] = value;
  }
  const parsed = environmentSchema.safeParse(present);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`));
  }
  const e = parsed.data;
  return {
    port: e.FAKE_GATEWAY_PORT,
    host: e.FAKE_GATEWAY_HOST,
    latencyMs: e.FAKE_GATEWAY_LATENCY_MS,
    declineRate: e.FAKE_GATEWAY_DECLINE_RATE,
    irreversibleShare: e.FAKE_GATEWAY_IRREVERSIBLE_SHARE,
    seed: e.FAKE_GATEWAY_SEED,
    ...(e.FAKE_GATEWAY_LEDGER_FILE === undefined ? {} : { ledgerFile: resolve(e.FAKE_GATEWAY_LEDGER_FILE) }),
    ...(e.GATEWAY_API_KEY === undefined ? {} : { apiKey: e.GATEWAY_API_KEY }),
  };
}

export async function startFakeGatewayRole(
  env: NodeJS.ProcessEnv,
  log: Logger,
): Promise<Running & { url: string }> {
  const options = fakeGatewayOptionsFrom(env);
  const fake = await startFakeGateway({ ...options, log });
  const settings = fake.settings();
  log.info(
    {
      url: fake.url,
      ...settings,
      ledgerFile: options.ledgerFile,
      ledgerEntries: fake.ledger().length,
      auth: options.apiKey === undefined ? 'none' : 'bearer',
    },
    'fake gateway listening',
  );
  return { url: fake.url, stop: () => fake.close() };
}
