// An admin app on a private migrated database, for tests through `app.inject`.
import type { Test } from 'tap';
import type { FakeGatewayOptions } from '../../src/gateway/fake-gateway.ts';
import { buildAdminApp, type AdminApp } from '../../src/http/app.ts';
import { createHarness, silentLog, type Harness } from './harness.ts';

export const OPERATOR_TOKEN = 'operator-token-0123456789';
export const READ_TOKEN = 'reader-token-0123456789ab';
export const CHECKOUT_TOKEN = 'checkout-token-0123456789';

export const auth = (token: string) => ({ authorization: `Bearer ${token}` });
export const operator = auth(OPERATOR_TOKEN);
export const reader = auth(READ_TOKEN);

export type AdminHarness = Harness & { app: AdminApp };

export async function createAdminHarness(
  t: Test,
  env: Record<string, string> = {},
  gateway: FakeGatewayOptions = {},
): Promise<AdminHarness> {
  const h = await createHarness(t, {
    env: {
      ADMIN_TOKENS: `ana:${OPERATOR_TOKEN},grafana:${READ_TOKEN}:read,checkout:${CHECKOUT_TOKEN}:checkout`,
      ...env,
    },
    gateway,
  });
  const app = await buildAdminApp({
    config: h.config,
    log: silentLog,
    pool: h.pool,
    boss: h.boss,
    now: h.deps.now,
  });
  t.teardown(() => app.close());
  return { ...h, app };
}
