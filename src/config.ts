// The service's configuration: one zod schema over the environment, parsed once by main and passed down.
// Every variable is documented in .env.example; a bad value stops the process with the variable's name.
import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** How long a charge waits for a gateway slot of its own before giving up (an unknown outcome): 20% of its limit, at most 10 s. */
export function gatewaySlotWaitMs(chargeLimitSeconds: number): number {
  return Math.min(10_000, chargeLimitSeconds * 200);
}

/**
 * The part of a charge batch's time limit kept for recording its outcomes (phase 3): 10%, at most 5 s. Gateway
 * calls still running when only this much is left are given up (unknown outcomes), so the batch commits what
 * it has before pg-boss takes its claims back, which would void every outcome of the batch.
 */
export function outcomeRecordingReserveMs(chargeLimitSeconds: number): number {
  return Math.min(5_000, chargeLimitSeconds * 100);
}

/**
 * How `migrate` takes a migration's table locks on a live database: it waits at most `timeoutMs` for them
 * (Postgres's lock_timeout), since every charge that touches the table would queue behind the waiting
 * migration, then rolls back, pauses and tries again, up to `attempts` times.
 */
export const MIGRATION_LOCK_DEFAULTS = { timeoutMs: 5_000, attempts: 12 } as const;
export type MigrationLockPolicy = { timeoutMs: number; attempts: number };

export function isValidTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

// Digits only: Number() would read ' ' as 0 (a gateway cap of 0 is "no cap", a retry limit of 0 dead-letters
// the first timeout) and accept '1e1' or '0x1'.
const integer = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const decimal = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+(\.\d+)?$/, 'must be a number such as 1 or 0.5')
    .transform(Number)
    .pipe(z.number().min(min).max(max));

const cron = z.string().superRefine((value, ctx) => {
  // A sixth (seconds) field would fire several times a minute; pg-boss files one job per minute.
  if (value.trim().split(/\s+/).length !== 5) {
    ctx.addIssue({ code: 'custom', message: 'must have exactly five fields' });
    return;
  }
  try {
    CronExpressionParser.parse(value, { tz: 'UTC', strict: false });
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: `not a valid cron expression (${(error as Error).message})` });
  }
});

const booleanFlag = z
  .enum(['true', 'false', '1', '0'])
  .transform((value) => value === 'true' || value === '1');

// Parsed with URL (each role adds its application_name), so the socket form without a host is refused here,
// with the form that works, rather than failing at start-up with the password in the error.
const postgresUrl = z
  .string()
  .regex(/^postgres(ql)?:\/\/.+/, 'must be a postgres:// or postgresql:// connection URL')
  .refine(
    (value) => URL.canParse(value),
    'must be a URL with a host (for a Unix socket: postgres://user:password@localhost/db?host=/run/postgresql)',
  );

// No user:password@: the gateway authenticates with GATEWAY_API_KEY and webhooks are signed, and a URL's
// credentials end up in error messages (Node's fetch refuses such a URL with the whole URL in its message).
const httpUrl = z
  .string()
  .regex(/^https?:\/\/.+/, 'must be an http:// or https:// URL')
  .refine((value) => URL.canParse(value), 'must be a valid URL')
  .refine((value) => {
    const url = URL.parse(value);
    return url === null || (url.username === '' && url.password === '');
  }, 'must not carry credentials (user:password@)');

// "7,3,1" -> [7, 3, 1]: the days to wait before each retry of a reversible decline. Each part digits only, as
// `integer` (Number() would read "1e1" as 10).
const dayList = z
  .string()
  .transform((value) => value.split(','))
  .pipe(z.array(integer(1, 60)).min(1).max(20));

// "ana:secret1,deploy-bot:secret2:read" -> [{ name, token, scope }]. The optional third part is the token's
// scope: operator (the default: everything), read (GET only), checkout (the checkout integration).
export const TOKEN_SCOPES = ['operator', 'read', 'checkout'] as const;
export type TokenScope = (typeof TOKEN_SCOPES)[number];

const namedTokens = z
  .string()
  .transform((value) =>
    value
      .split(',')
      .map((entry) => entry.trim())
      .filter(Boolean)
      .map((entry) => {
        const [name = '', token = '', scope = 'operator', ...rest] = entry.split(':');
        return { name, token, scope: rest.length > 0 ? '' : scope };
      }),
  )
  .pipe(
    z
      .array(
        z.object({
          name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'each entry must be name:token[:scope]'),
          token: z.string().min(16, 'each token must have at least 16 characters (and no ":")'),
          scope: z.enum(TOKEN_SCOPES, { error: `scope must be one of ${TOKEN_SCOPES.join(', ')}` }),
        }),
      )
      .min(1)
      // A token listed twice would get the scope of whichever entry is checked last, and audit rows its name.
      // A name may be listed twice with the same scope: that is how a token is rotated (idempotency keys are
      // scoped to the name, so a rotated checkout token must keep it).
      .superRefine((entries, ctx) => {
        const token = entries.find(
          (entry, i) => entries.findIndex((other) => other.token === entry.token) !== i,
        );
        if (token !== undefined) {
          const owners = entries.filter((entry) => entry.token === token.token).map((entry) => entry.name);
          ctx.addIssue({
            code: 'custom',
            message: `${owners.join(' and ')} have the same token: each token must be different`,
          });
        }
        const renamed = entries.find((entry) =>
          entries.some((other) => other.name === entry.name && other.scope !== entry.scope),
        );
        if (renamed !== undefined) {
          ctx.addIssue({
            code: 'custom',
            message: `"${renamed.name}" is listed with two scopes: one name, one scope (several tokens may share both)`,
          });
        }
      }),
  );

// Per-brand caps on the attempts sent inside a rolling 30-day window (ABECS / brand rules),
// "visa:15,mastercard:10". Every pair must be brand:digits: with Number(), a typo such as "mastercard" or
// "mastercard:" read as a cap of 0, which holds every reversible decline of that brand at once.
const BRAND_LIMIT = /^([a-z]{2,20})\s*:\s*(\d+)$/i;
const brandLimits = z
  .string()
  .transform((value, ctx) => {
    const limits = new Map<string, number>();
    for (const pair of value.split(',').map((part) => part.trim())) {
      if (pair === '') continue;
      const match = BRAND_LIMIT.exec(pair);
      const brand = match?.[1]?.toLowerCase();
      if (match === null || brand === undefined) {
        ctx.addIssue({ code: 'custom', message: `"${pair}" is not brand:limit (such as visa:15)` });
        return z.NEVER;
      }
      if (limits.has(brand)) {
        ctx.addIssue({ code: 'custom', message: `"${brand}" is listed twice` });
        return z.NEVER;
      }
      limits.set(brand, Number(match[2]));
    }
    return Object.fromEntries(limits);
  })
  .pipe(z.record(z.string(), z.number().int().min(0).max(100)));

/** The environment as the schema reads it; names are the environment variable names. */
const environmentSchema = z.object({
  DATABASE_URL: postgresUrl.optional(),
  BUSINESS_TIME_ZONE: z
    .string()
    .default('America/Sao_Paulo')
    .refine(isValidTimeZone, 'not a known IANA time zone')
    // The operators' queries (README, sql/metrics.sql) and the business calendar are São Paulo's: another
    // zone would make every role's "today" disagree with them (a run at 21:00 would charge tomorrow's cycles).
    .refine((zone) => zone === 'America/Sao_Paulo', 'must be America/Sao_Paulo (the business calendar)'),

  CRON_PROCESSAR_RECORRENCIAS_DO_DIA: cron.default('0 8 * * *'),
  CRON_RETENTAR_COBRANCAS_FALHADAS: cron.default('0 10 * * *'),
  CRON_NOTIFICAR_RECORRENCIAS_HOLD: cron.default('0 18 * * *'),
  CRON_LIMPAR_RECORRENCIAS_ANTIGAS: cron.default('0 2 * * 0'),

  TASK_TIME_LIMIT_SECONDS: integer(10, 86_400).default(300),
  TASK_SOFT_TIME_LIMIT_SECONDS: integer(1, 86_400).default(240),
  TASK_RETRY_LIMIT: integer(0, 50).default(3),
  TASK_RETRY_DELAY_SECONDS: integer(1, 3_600).default(30),
  TASK_LOCK_CHECK_SECONDS: integer(1, 300).default(5),

  MIGRATION_LOCK_TIMEOUT_MS: integer(100, 600_000).default(MIGRATION_LOCK_DEFAULTS.timeoutMs),
  MIGRATION_LOCK_ATTEMPTS: integer(1, 100).default(MIGRATION_LOCK_DEFAULTS.attempts),

  CHARGE_TIME_LIMIT_SECONDS: integer(5, 3_600).default(30),
  CHARGE_HEARTBEAT_SECONDS: integer(10, 3_600).default(10),
  CHARGE_RETRY_LIMIT: integer(0, 100).default(10),
  CHARGE_RETRY_DELAY_SECONDS: integer(1, 3_600).default(5),
  CHARGE_RETRY_DELAY_MAX_SECONDS: integer(1, 86_400).default(900),
  CHARGE_BACKLOG_WARNING: integer(1, 100_000_000).default(2_000_000),

  WORKER_CONCURRENCY: integer(1, 1_000).default(32),
  WORKER_POLL_INTERVAL_SECONDS: decimal(0.5, 60).default(1),
  // At least one connection per periodic task (a run holds one for its lock while its queries use another) + 1.
  DB_POOL_SIZE: integer(5, 200).default(10),
  BOSS_POOL_SIZE: integer(2, 100).default(4),
  JOB_HISTORY_RETENTION_DAYS: integer(1, 3_650).default(14),
  QUEUED_JOB_RETENTION_DAYS: integer(1, 3_650).default(14),
  // pg-boss refuses a cron monitor interval over 45 s.
  SCHEDULER_INTERVAL_SECONDS: integer(1, 45).default(30),

  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_FORMAT: z.enum(['json', 'pretty']).optional(),

  ADMIN_HOST: z.string().min(1).optional(),
  ADMIN_PORT: integer(0, 65_535).default(8080),
  ADMIN_TOKEN: z.string().min(16, 'must have at least 16 characters').optional(),
  ADMIN_TOKENS: namedTokens.optional(),
  ADMIN_BODY_LIMIT_BYTES: integer(1_024, 10_485_760).default(65_536),

  GATEWAY_URL: httpUrl.optional(),
  GATEWAY_API_KEY: z.string().min(1).optional(),
  GATEWAY_TIMEOUT_MS: integer(100, 120_000).default(10_000),
  // 0 disables the cluster-wide cap.
  GATEWAY_MAX_CONCURRENCY: integer(0, 10_000).default(200),
  GATEWAY_KEY_RETENTION_HOURS: integer(0, 87_600).default(24),

  RETRY_BACKOFF_DAYS: dayList.default([1, 3, 7]),
  MAX_DECLINES_BEFORE_HOLD: integer(1, 50).default(4),
  BRAND_RETRY_LIMITS_30D: brandLimits.default({ visa: 15, mastercard: 35, elo: 15, amex: 15, hipercard: 15 }),
  BACKBILL_MISSED_CYCLES: booleanFlag.default(false),

  NOTICE_WEBHOOK_URL: httpUrl.optional(),
  NOTICE_WEBHOOK_SECRET: z.string().min(16, 'must have at least 16 characters').optional(),
  // A delivery job expires after 60 s (queue-options.ts): a longer timeout would be cut off there.
  NOTICE_TIMEOUT_MS: integer(100, 50_000).default(10_000),

  CHECKOUT_WEBHOOK_URL: httpUrl.optional(),
  CHECKOUT_WEBHOOK_SECRET: z.string().min(16, 'must have at least 16 characters').optional(),
  CHECKOUT_WEBHOOK_TIMEOUT_MS: integer(100, 50_000).default(10_000),

  ARCHIVE_AFTER_DAYS: integer(1, 36_500).default(180),
  ARCHIVE_BATCH_SIZE: integer(1, 100_000).default(1_000),
  ARCHIVE_RETENTION_DAYS: integer(1, 36_500).default(1_825),
  EVENT_RETENTION_DAYS: integer(1, 36_500).default(90),
  NOTICE_RETENTION_DAYS: integer(1, 36_500).default(180),
  IDEMPOTENCY_KEY_RETENTION_DAYS: integer(1, 3_650).default(30),
});

export type Environment = z.infer<typeof environmentSchema>;

/** Every environment variable the service reads (each is documented in .env.example). */
export const ENVIRONMENT_VARIABLES = Object.keys(environmentSchema.shape);

export type AdminToken = { name: string; token: string; scope: TokenScope };

export type Config = {
  /** Set only by the `dev` command: allows the embedded database, the fake gateway and a token-less localhost admin. */
  development: boolean;
  databaseUrl: string | undefined;
  timeZone: string;
  cron: {
    processar_recorrencias_do_dia: string;
    retentar_cobrancas_falhadas: string;
    notificar_recorrencias_hold: string;
    limpar_recorrencias_antigas: string;
  };
  tasks: {
    hardLimitSeconds: number;
    softLimitSeconds: number;
    retryLimit: number;
    retryDelaySeconds: number;
    lockCheckSeconds: number;
  };
  migrations: MigrationLockPolicy;
  charges: {
    hardLimitSeconds: number;
    heartbeatSeconds: number;
    retryLimit: number;
    retryDelaySeconds: number;
    retryDelayMaxSeconds: number;
    /** Waiting charge jobs above which pg-boss warns of a large backlog. */
    backlogWarning: number;
  };
  worker: { concurrency: number; pollIntervalSeconds: number };
  pools: { app: number; boss: number };
  retention: { jobHistoryDays: number; queuedJobDays: number };
  schedulerIntervalSeconds: number;
  log: { level: Environment['LOG_LEVEL']; format: 'json' | 'pretty' };
  admin: { host: string; port: number; tokens: AdminToken[]; bodyLimitBytes: number };
  gateway: {
    url: string | undefined;
    apiKey: string | undefined;
    timeoutMs: number;
    maxConcurrency: number;
    /** How long the gateway keeps an idempotency key (0: for ever): an attempt older is not sent again. */
    keyRetentionHours: number;
  };
  billing: {
    retryBackoffDays: number[];
    maxDeclinesBeforeHold: number;
    brandRetryLimits30d: Record<string, number>;
    backbillMissedCycles: boolean;
  };
  notices: { webhookUrl: string | undefined; secret: string | undefined; timeoutMs: number };
  /** Events for the checkout (charge outcomes, holds, completions); same delivery as the notices. */
  checkout: { webhookUrl: string | undefined; secret: string | undefined; timeoutMs: number };
  archive: {
    afterDays: number;
    batchSize: number;
    retentionDays: number;
    eventDays: number;
    noticeDays: number;
    idempotencyKeyDays: number;
  };
};

/**
 * Parses the environment. Throws ConfigError naming every bad variable; requirements that depend on the
 * role (a database URL, a gateway URL, an admin token) are checked by `requireFor`.
 */
export function loadConfig(env: NodeJS.ProcessEnv, options: { development?: boolean } = {}): Config {
  // Empty strings mean "unset": docker-compose and .env files write `VAR=` for optional values.
  const present = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value !== ''),
  );
  const parsed = environmentSchema.safeParse(present);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => `${issue.path.join('.') || '(environment)'}: ${issue.message}`),
    );
  }
  const e = parsed.data;
  const development = options.development ?? false;
  const problems: string[] = [];
  if (e.TASK_SOFT_TIME_LIMIT_SECONDS >= e.TASK_TIME_LIMIT_SECONDS) {
    problems.push('TASK_SOFT_TIME_LIMIT_SECONDS: must be lower than TASK_TIME_LIMIT_SECONDS');
  }
  // A resumed attempt makes two calls (lookup, then charge) after waiting for a gateway slot, and its batch
  // keeps a reserve to record the outcomes: a call still running past that is given up and retried, spending
  // the retries while the gateway is merely slow.
  const slotWait = gatewaySlotWaitMs(e.CHARGE_TIME_LIMIT_SECONDS);
  const reserve = outcomeRecordingReserveMs(e.CHARGE_TIME_LIMIT_SECONDS);
  if (2 * e.GATEWAY_TIMEOUT_MS + slotWait + reserve >= e.CHARGE_TIME_LIMIT_SECONDS * 1000) {
    problems.push(
      `GATEWAY_TIMEOUT_MS: a resumed charge (lookup, then charge, after up to ${slotWait} ms waiting for a gateway slot, with ${reserve} ms kept to record it) must fit in CHARGE_TIME_LIMIT_SECONDS: 2 × GATEWAY_TIMEOUT_MS + ${slotWait + reserve} must stay below ${e.CHARGE_TIME_LIMIT_SECONDS * 1000}`,
    );
  }
  if (e.CHARGE_HEARTBEAT_SECONDS >= e.CHARGE_TIME_LIMIT_SECONDS) {
    problems.push('CHARGE_HEARTBEAT_SECONDS: must be lower than CHARGE_TIME_LIMIT_SECONDS');
  }
  if (e.ADMIN_TOKEN !== undefined && e.ADMIN_TOKENS !== undefined) {
    problems.push('ADMIN_TOKEN: set either ADMIN_TOKEN or ADMIN_TOKENS, not both');
  }
  if (e.NOTICE_WEBHOOK_URL !== undefined && e.NOTICE_WEBHOOK_SECRET === undefined) {
    problems.push('NOTICE_WEBHOOK_SECRET: required when NOTICE_WEBHOOK_URL is set (notices are signed)');
  }
  if (e.CHECKOUT_WEBHOOK_URL !== undefined && e.CHECKOUT_WEBHOOK_SECRET === undefined) {
    problems.push('CHECKOUT_WEBHOOK_SECRET: required when CHECKOUT_WEBHOOK_URL is set (events are signed)');
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const tokens: AdminToken[] =
    e.ADMIN_TOKENS ??
    (e.ADMIN_TOKEN !== undefined
      ? [{ name: 'admin', token: e.ADMIN_TOKEN, scope: 'operator' as const }]
      : []);

  return {
    development,
    databaseUrl: e.DATABASE_URL,
    timeZone: e.BUSINESS_TIME_ZONE,
    cron: {
      processar_recorrencias_do_dia: e.CRON_PROCESSAR_RECORRENCIAS_DO_DIA,
      retentar_cobrancas_falhadas: e.CRON_RETENTAR_COBRANCAS_FALHADAS,
      notificar_recorrencias_hold: e.CRON_NOTIFICAR_RECORRENCIAS_HOLD,
      limpar_recorrencias_antigas: e.CRON_LIMPAR_RECORRENCIAS_ANTIGAS,
    },
    tasks: {
      hardLimitSeconds: e.TASK_TIME_LIMIT_SECONDS,
      softLimitSeconds: e.TASK_SOFT_TIME_LIMIT_SECONDS,
      retryLimit: e.TASK_RETRY_LIMIT,
      retryDelaySeconds: e.TASK_RETRY_DELAY_SECONDS,
      lockCheckSeconds: e.TASK_LOCK_CHECK_SECONDS,
    },
    migrations: { timeoutMs: e.MIGRATION_LOCK_TIMEOUT_MS, attempts: e.MIGRATION_LOCK_ATTEMPTS },
    charges: {
      hardLimitSeconds: e.CHARGE_TIME_LIMIT_SECONDS,
      heartbeatSeconds: e.CHARGE_HEARTBEAT_SECONDS,
      retryLimit: e.CHARGE_RETRY_LIMIT,
      retryDelaySeconds: e.CHARGE_RETRY_DELAY_SECONDS,
      retryDelayMaxSeconds: e.CHARGE_RETRY_DELAY_MAX_SECONDS,
      backlogWarning: e.CHARGE_BACKLOG_WARNING,
    },
    worker: { concurrency: e.WORKER_CONCURRENCY, pollIntervalSeconds: e.WORKER_POLL_INTERVAL_SECONDS },
    pools: { app: e.DB_POOL_SIZE, boss: e.BOSS_POOL_SIZE },
    retention: { jobHistoryDays: e.JOB_HISTORY_RETENTION_DAYS, queuedJobDays: e.QUEUED_JOB_RETENTION_DAYS },
    schedulerIntervalSeconds: e.SCHEDULER_INTERVAL_SECONDS,
    log: { level: e.LOG_LEVEL, format: e.LOG_FORMAT ?? 'json' },
    admin: {
      host: e.ADMIN_HOST ?? (development ? '127.0.0.1' : '0.0.0.0'),
      port: e.ADMIN_PORT,
      tokens,
      bodyLimitBytes: e.ADMIN_BODY_LIMIT_BYTES,
    },
    gateway: {
      url: e.GATEWAY_URL,
      apiKey: e.GATEWAY_API_KEY,
      timeoutMs: e.GATEWAY_TIMEOUT_MS,
      maxConcurrency: e.GATEWAY_MAX_CONCURRENCY,
      keyRetentionHours: e.GATEWAY_KEY_RETENTION_HOURS,
    },
    billing: {
      retryBackoffDays: e.RETRY_BACKOFF_DAYS,
      maxDeclinesBeforeHold: e.MAX_DECLINES_BEFORE_HOLD,
      brandRetryLimits30d: e.BRAND_RETRY_LIMITS_30D,
      backbillMissedCycles: e.BACKBILL_MISSED_CYCLES,
    },
    notices: {
      webhookUrl: e.NOTICE_WEBHOOK_URL,
      secret: e.NOTICE_WEBHOOK_SECRET,
      timeoutMs: e.NOTICE_TIMEOUT_MS,
    },
    checkout: {
      webhookUrl: e.CHECKOUT_WEBHOOK_URL,
      secret: e.CHECKOUT_WEBHOOK_SECRET,
      timeoutMs: e.CHECKOUT_WEBHOOK_TIMEOUT_MS,
    },
    archive: {
      afterDays: e.ARCHIVE_AFTER_DAYS,
      batchSize: e.ARCHIVE_BATCH_SIZE,
      retentionDays: e.ARCHIVE_RETENTION_DAYS,
      eventDays: e.EVENT_RETENTION_DAYS,
      noticeDays: e.NOTICE_RETENTION_DAYS,
      idempotencyKeyDays: e.IDEMPOTENCY_KEY_RETENTION_DAYS,
    },
  };
}

export type Need = 'database' | 'gateway' | 'adminToken';

/**
 * Fails closed: checks what a role cannot run without. Outside development mode nothing falls back to a
 * development default (embedded database, fake gateway, token-less admin).
 */
export function requireFor(config: Config, needs: readonly Need[]): void {
  const problems: string[] = [];
  if (needs.includes('database') && config.databaseUrl === undefined) {
    problems.push(
      'DATABASE_URL: required (the embedded database is only used by `npm start` / the dev command)',
    );
  }
  if (needs.includes('gateway') && config.gateway.url === undefined) {
    problems.push(
      'GATEWAY_URL: required for workers (the fake gateway is only used by `npm start` / the dev command)',
    );
  }
  if (needs.includes('adminToken') && config.admin.tokens.length === 0) {
    const localOnly = ['127.0.0.1', '::1', 'localhost'].includes(config.admin.host);
    if (!(config.development && localOnly)) {
      problems.push(
        'ADMIN_TOKENS: required (or ADMIN_TOKEN); only the dev command on localhost may run without a token',
      );
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
