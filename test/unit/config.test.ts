import t from 'tap';
import { problemsOf } from '../helpers/config.ts';
import { loadConfig, requireFor } from '../../src/config.ts';

const base = { DATABASE_URL: 'postgres://u@localhost/db' };

t.test('defaults match the seed: São Paulo, the four crons, 300 s / 240 s', async (t) => {
  const config = loadConfig(base);
  t.equal(config.timeZone, 'America/Sao_Paulo');
  t.same(config.cron, {
    processar_recorrencias_do_dia: '0 8 * * *',
    retentar_cobrancas_falhadas: '0 10 * * *',
    notificar_recorrencias_hold: '0 18 * * *',
    limpar_recorrencias_antigas: '0 2 * * 0',
  });
  t.equal(config.tasks.hardLimitSeconds, 300);
  t.equal(config.tasks.softLimitSeconds, 240);
  t.equal(config.development, false);
});

t.test('an invalid cron is refused with the variable named', async (t) => {
  const problems = problemsOf(() =>
    loadConfig({ ...base, CRON_PROCESSAR_RECORRENCIAS_DO_DIA: '0 25 * * *' }),
  );
  t.equal(problems.length, 1);
  t.match(problems[0], /^CRON_PROCESSAR_RECORRENCIAS_DO_DIA: /);
});

t.test('a seconds field is refused (pg-boss files one job per minute)', async (t) => {
  const problems = problemsOf(() =>
    loadConfig({ ...base, CRON_LIMPAR_RECORRENCIAS_ANTIGAS: '*/10 * * * * *' }),
  );
  t.match(problems.join('\n'), /CRON_LIMPAR_RECORRENCIAS_ANTIGAS: must have exactly five fields/);
});

t.test('an unknown time zone is refused with the variable named', async (t) => {
  const problems = problemsOf(() => loadConfig({ ...base, BUSINESS_TIME_ZONE: 'America/Sao_Pablo' }));
  t.match(problems.join('\n'), /^BUSINESS_TIME_ZONE: not a known IANA time zone/);
  t.match(
    problemsOf(() => loadConfig({ ...base, BUSINESS_TIME_ZONE: 'UTC' })).join('\n'),
    /^BUSINESS_TIME_ZONE: must be America\/Sao_Paulo/,
  );
});

t.test('the gateway timeout must leave room for a resumed charge in the job limit', async (t) => {
  t.match(
    problemsOf(() => loadConfig({ ...base, GATEWAY_TIMEOUT_MS: '11000' })).join('\n'),
    /^GATEWAY_TIMEOUT_MS: a resumed charge \(lookup, then charge, after up to 6000 ms waiting for a gateway slot, with 3000 ms kept to record it\) must fit/,
    'two calls of 11 s, the slot wait and the recording reserve exceed the default 30 s limit',
  );
  t.equal(loadConfig({ ...base, GATEWAY_TIMEOUT_MS: '10000' }).gateway.timeoutMs, 10_000, 'the defaults fit');
  t.match(
    problemsOf(() => loadConfig({ ...base, NOTICE_TIMEOUT_MS: '60000' })).join('\n'),
    /NOTICE_TIMEOUT_MS/,
    'a delivery timeout past its job expiry',
  );
});

t.test('every bad variable is reported at once', async (t) => {
  const problems = problemsOf(() =>
    loadConfig({
      DATABASE_URL: 'mysql://x',
      ADMIN_PORT: 'eighty',
      WORKER_CONCURRENCY: '0',
      LOG_LEVEL: 'loud',
    }),
  );
  const named = problems.map((p) => p.split(':')[0]).sort();
  t.same(named, ['ADMIN_PORT', 'DATABASE_URL', 'LOG_LEVEL', 'WORKER_CONCURRENCY']);
});

t.test('URLs: a database URL must parse; an http URL must not carry credentials', async (t) => {
  const problems = problemsOf(() =>
    loadConfig({
      ...base,
      DATABASE_URL: 'postgres://app:hunter2@/recorrencias?host=/run/postgresql',
      GATEWAY_URL: 'https://user:hunter2@gateway.example',
      NOTICE_WEBHOOK_URL: 'https://seller:hunter2@hooks.example/avisos',
      NOTICE_WEBHOOK_SECRET: 'a-secret-of-some-length',
    }),
  ).join('\n');
  t.match(
    problems,
    /DATABASE_URL: must be a URL with a host \(for a Unix socket: postgres:\/\/user:password@localhost/,
  );
  t.match(problems, /GATEWAY_URL: must not carry credentials/);
  t.match(problems, /NOTICE_WEBHOOK_URL: must not carry credentials/);
  t.notMatch(problems, /hunter2/, 'the problems never repeat the password');
  const socket = loadConfig({
    ...base,
    DATABASE_URL: 'postgres://app:pw@localhost/recorrencias?host=/run/postgresql',
  });
  t.equal(socket.databaseUrl, 'postgres://app:pw@localhost/recorrencias?host=/run/postgresql');
});

t.test('the soft limit must stay under the hard limit', async (t) => {
  const problems = problemsOf(() =>
    loadConfig({ ...base, TASK_TIME_LIMIT_SECONDS: '60', TASK_SOFT_TIME_LIMIT_SECONDS: '60' }),
  );
  t.match(problems.join('\n'), /TASK_SOFT_TIME_LIMIT_SECONDS: must be lower than TASK_TIME_LIMIT_SECONDS/);
});

t.test('numbers are digits: blanks and other notations are refused, not read as 0 or 10', async (t) => {
  const problems = problemsOf(() =>
    loadConfig({
      ...base,
      GATEWAY_MAX_CONCURRENCY: ' ',
      CHARGE_RETRY_LIMIT: '\t',
      TASK_RETRY_LIMIT: '1e1',
      ADMIN_PORT: '0x1F90',
      WORKER_POLL_INTERVAL_SECONDS: ' ',
    }),
  );
  t.same(problems.map((problem) => problem.split(':')[0]).sort(), [
    'ADMIN_PORT',
    'CHARGE_RETRY_LIMIT',
    'GATEWAY_MAX_CONCURRENCY',
    'TASK_RETRY_LIMIT',
    'WORKER_POLL_INTERVAL_SECONDS',
  ]);
  const config = loadConfig({ ...base, CHARGE_RETRY_LIMIT: ' 7 ', WORKER_POLL_INTERVAL_SECONDS: '0.5' });
  t.equal(config.charges.retryLimit, 7, 'surrounding blanks are trimmed');
  t.equal(config.worker.pollIntervalSeconds, 0.5);
});

t.test(
  'brand caps and retry days are read digit by digit; a malformed pair is refused, not read as 0',
  async (t) => {
    const config = loadConfig({
      ...base,
      BRAND_RETRY_LIMITS_30D: ' Visa : 15 , mastercard:0,',
      RETRY_BACKOFF_DAYS: '1, 3,7',
    });
    t.same(config.billing.brandRetryLimits30d, { visa: 15, mastercard: 0 });
    t.same(config.billing.retryBackoffDays, [1, 3, 7]);
    for (const [value, expected] of [
      ['visa:15,mastercard', /BRAND_RETRY_LIMITS_30D: "mastercard" is not brand:limit/],
      ['visa:15,mastercard:', /BRAND_RETRY_LIMITS_30D: "mastercard:" is not brand:limit/],
      ['visa:1e1', /"visa:1e1" is not brand:limit/],
      ['visa:15,VISA:10', /BRAND_RETRY_LIMITS_30D: "visa" is listed twice/],
      ['visa:101', /BRAND_RETRY_LIMITS_30D.*100/],
    ] as const) {
      t.match(
        problemsOf(() => loadConfig({ ...base, BRAND_RETRY_LIMITS_30D: value })).join('\n'),
        expected,
        value,
      );
    }
    for (const value of ['1e1', '1,,3', '0x2', '2.5']) {
      t.match(
        problemsOf(() => loadConfig({ ...base, RETRY_BACKOFF_DAYS: value })).join('\n'),
        /^RETRY_BACKOFF_DAYS/m,
        value,
      );
    }
  },
);

t.test('empty values count as unset', async (t) => {
  const config = loadConfig({ ...base, GATEWAY_URL: '', ADMIN_TOKEN: '' });
  t.equal(config.gateway.url, undefined);
  t.same(config.admin.tokens, []);
});

t.test('named admin tokens are parsed; short tokens are refused', async (t) => {
  const config = loadConfig({ ...base, ADMIN_TOKENS: 'ana:0123456789abcdef,deploy-bot:fedcba9876543210' });
  t.same(
    config.admin.tokens.map((token) => token.name),
    ['ana', 'deploy-bot'],
  );
  const problems = problemsOf(() => loadConfig({ ...base, ADMIN_TOKENS: 'ana:short' }));
  t.match(problems.join('\n'), /ADMIN_TOKENS.*at least 16 characters/);
  const sameToken = problemsOf(() =>
    loadConfig({ ...base, ADMIN_TOKENS: 'grafana:0123456789abcdef:read,ana:0123456789abcdef' }),
  );
  t.match(sameToken.join('\n'), /ADMIN_TOKENS.*grafana and ana have the same token/);
  t.notMatch(sameToken.join('\n'), /0123456789abcdef/, 'the token itself is not printed');
  const twoScopes = problemsOf(() =>
    loadConfig({ ...base, ADMIN_TOKENS: 'ana:0123456789abcdef,ana:fedcba9876543210:read' }),
  );
  t.match(twoScopes.join('\n'), /ADMIN_TOKENS.*"ana" is listed with two scopes/);
  const rotation = loadConfig({
    ...base,
    ADMIN_TOKENS: 'checkout:0123456789abcdef:checkout,checkout:fedcba9876543210:checkout',
  });
  t.same(
    rotation.admin.tokens.map((token) => `${token.name}:${token.scope}`),
    ['checkout:checkout', 'checkout:checkout'],
    'a token being rotated: old and new under one name and scope',
  );
});

t.test('fails closed: production roles need DATABASE_URL, GATEWAY_URL and a token', async (t) => {
  const bare = loadConfig({});
  t.match(problemsOf(() => requireFor(bare, ['database'])).join('\n'), /^DATABASE_URL: required/);
  t.match(problemsOf(() => requireFor(bare, ['gateway'])).join('\n'), /^GATEWAY_URL: required/);
  t.match(problemsOf(() => requireFor(bare, ['adminToken'])).join('\n'), /^ADMIN_TOKENS: required/);
});

t.test('only development mode on localhost may run the admin server without a token', async (t) => {
  t.same(
    problemsOf(() => requireFor(loadConfig({}, { development: true }), ['adminToken'])),
    [],
  );
  const exposed = loadConfig({ ADMIN_HOST: '0.0.0.0' }, { development: true });
  t.match(problemsOf(() => requireFor(exposed, ['adminToken'])).join('\n'), /ADMIN_TOKENS: required/);
});
