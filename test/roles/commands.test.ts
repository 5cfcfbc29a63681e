// The operator commands as deployed: check, inspect, stats, run, seed, purge-archive.
import { hostname, userInfo } from 'node:os';
import pg from 'pg';
import t, { type Test } from 'tap';
import {
  createEmptyDatabase,
  createLimitedRole,
  createMigratedDatabase,
  lockWaiters,
  query,
} from '../helpers/database.ts';
import { eventually, startService } from '../helpers/processes.ts';
import { startFakeGateway } from '../../src/gateway/fake-gateway.ts';
import { INSERTS_IN_FLIGHT, PAGE_SIZE } from '../../src/tasks/charge/fan-out.ts';

async function command(t: Test, args: string[], env: Record<string, string>) {
  const service = startService(t, args, { LOG_LEVEL: 'warn', ...env });
  const { code } = await service.exited;
  return { code, out: service.stdout(), err: service.stderr() };
}

t.test('a Node older than 24 is refused before anything loads, as bad configuration', async (t) => {
  // The version is what the process reports: a preload makes this Node 24 say it is 20.
  const old = await command(t, ['check'], {
    NODE_OPTIONS: `--import=data:text/javascript,Object.defineProperty(process.versions,'node',{value:'20.1.0'})`,
    DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none',
  });
  t.equal(old.code, 2);
  t.match(old.err, /recorrencias needs Node.js 24 or newer; this is v20\.1\.0/);
  t.match(old.err, /node_modules\/\.bin\/node dist\/main\.js/);
});

t.test('check passes on a migrated database and fails clearly on an unmigrated one', async (t) => {
  const migrated = await createMigratedDatabase(t);
  const ok = await command(t, ['check'], { DATABASE_URL: migrated });
  t.equal(ok.code, 0, ok.out + ok.err);
  for (const line of [
    '✓ database reachable',
    '✓ migrations current',
    '✓ tasks registered with handlers',
    '✓ no queue paused',
    '✓ schedules present in America/Sao_Paulo',
    '✓ connections for one more worker',
    '✓ run-late alerts can fire: every daily task runs by 23:27',
    '✓ dry run processar_recorrencias_do_dia',
    '✓ recurrence statistics',
  ]) {
    t.match(ok.out, line);
  }
  t.match(ok.out, /all checks passed/);
  const empty = await createEmptyDatabase(t);
  const bad = await command(t, ['check'], { DATABASE_URL: empty });
  t.equal(bad.code, 1);
  t.match(bad.out, /✗ migrations current: .*run `node dist\/main\.js migrate`/);
  const json = await command(t, ['check', '--json'], { DATABASE_URL: migrated });
  t.match(JSON.parse(json.out), { ok: true, results: [{ name: 'database reachable', status: 'ok' }] });
  // The emergency stop: the check still passes (a pause is deliberate) but says so.
  await query(
    migrated,
    `INSERT INTO tarefas_pausadas (fila, pausada_por, motivo) VALUES ('cobrar_recorrencia', 'ana', 'gateway incident')`,
  );
  const paused = await command(t, ['check'], { DATABASE_URL: migrated });
  t.equal(paused.code, 0);
  t.match(paused.out, /! no queue paused: cobrar_recorrencia paused by ana at .*: gateway incident/);
});

t.test('check warns when a daily task runs too late in the evening for its run-late alert', async (t) => {
  const migrated = await createMigratedDatabase(t);
  const late = await command(t, ['check'], {
    DATABASE_URL: migrated,
    CRON_NOTIFICAR_RECORRENCIAS_HOLD: '45 23 * * *',
  });
  t.match(
    late.out,
    '! run-late alerts can fire: notificar_recorrencias_hold at 23:45: RecorrenciasNoticeRunLate cannot fire before midnight (schedule daily tasks at 23:27 or earlier)',
  );
});

t.test('check looks a key up at the gateway: reachable with our credentials, or refused', async (t) => {
  const migrated = await createMigratedDatabase(t);
  const gateway = await startFakeGateway({ port: 0, apiKey: 'the-right-key-0123456789' });
  t.teardown(() => gateway.close());
  const env = { DATABASE_URL: migrated, GATEWAY_URL: gateway.url };
  const right = await command(t, ['check'], { ...env, GATEWAY_API_KEY: 'the-right-key-0123456789' });
  t.equal(right.code, 0, right.out);
  t.match(right.out, /✓ gateway answers with our credentials: .* answers a lookup with our credentials/);
  const wrong = await command(t, ['check'], { ...env, GATEWAY_API_KEY: 'a-wrong-key-0123456789' });
  t.equal(wrong.code, 1);
  t.match(
    wrong.out,
    /✗ gateway answers with our credentials: .* refused our credentials \(unauthorized\): check GATEWAY_API_KEY/,
  );
  t.equal(gateway.ledger().length, 0, 'nothing was charged');
  const none = await command(t, ['check'], { DATABASE_URL: migrated });
  t.match(none.out, /! gateway answers with our credentials: GATEWAY_URL is not set here/);
});

t.test('check warns when Postgres would not grant one more worker its connections', async (t) => {
  const url = await createMigratedDatabase(t);
  const { url: limitedUrl } = await createLimitedRole(t, url, 12);
  const roomy = await command(t, ['check', '--json'], {
    DATABASE_URL: limitedUrl,
    DB_POOL_SIZE: '5',
    BOSS_POOL_SIZE: '2',
  });
  const roomyBudget = (
    JSON.parse(roomy.out) as { results: Array<{ name: string; status: string; detail: string }> }
  ).results.find((result) => result.name === 'connections for one more worker');
  t.equal(roomyBudget?.status, 'ok', roomyBudget?.detail ?? 'no such check');
  t.match(roomyBudget?.detail, /role \d+\/12/, 'names the role limit with its use');

  const short = await command(t, ['check'], { DATABASE_URL: limitedUrl, DB_POOL_SIZE: '10' });
  t.equal(short.code, 0, 'a warning does not fail the check');
  t.match(
    short.out,
    /! connections for one more worker: \d+ free \(in use\/allowed: server \d+\/\d+, role \d+\/12, this check's own included\); a worker holds 10 and opens up to 4 more: another worker would wait at start-up/,
  );
});

t.test('inspect registered / scheduled / active and stats', async (t) => {
  const url = await createMigratedDatabase(t);
  const registered = await command(t, ['inspect', 'registered'], { DATABASE_URL: url });
  t.equal(registered.code, 0, registered.err);
  for (const name of [
    'processar_recorrencias_do_dia',
    'retentar_cobrancas_falhadas',
    'notificar_recorrencias_hold',
    'limpar_recorrencias_antigas',
    'cobrar_recorrencia',
  ]) {
    t.match(registered.out, name);
  }
  const scheduled = await command(t, ['inspect', 'scheduled', '--json'], { DATABASE_URL: url });
  const rows = JSON.parse(scheduled.out) as Array<{ task: string; cron: string; registered: boolean }>;
  t.same(
    rows.map((row) => [row.task, row.cron, row.registered]),
    [
      ['processar_recorrencias_do_dia', '0 8 * * *', true],
      ['retentar_cobrancas_falhadas', '0 10 * * *', true],
      ['notificar_recorrencias_hold', '0 18 * * *', true],
      ['limpar_recorrencias_antigas', '0 2 * * 0', true],
    ],
  );
  const active = await command(t, ['inspect', 'active'], { DATABASE_URL: url });
  t.match(active.out, /0 active job\(s\)/);
  const unknown = await command(t, ['inspect', 'everything'], { DATABASE_URL: url });
  t.equal(unknown.code, 2);
  const unknownOption = await command(t, ['stats', '--dates', '2031-03-10'], { DATABASE_URL: url });
  t.equal(unknownOption.code, 2, 'an unknown option is a usage error');
  t.match(unknownOption.err, /Unknown option '--dates'/);
  await query(
    url,
    `INSERT INTO checkout_recorrencias (vendedor_id, cartao_token, bandeira, valor_centavos, periodicidade, dia_ancora, proxima_cobranca, status, motivo_hold, hold_em)
    VALUES ('v', 't', 'visa', 100, 'mensal', 10, '2031-03-10', 'hold', 'x', now())`,
  );
  const stats = await command(t, ['stats', '--date', '2031-03-10', '--json'], { DATABASE_URL: url });
  t.match(JSON.parse(stats.out), { data_negocio: '2031-03-10', em_hold: 1, por_status: { hold: 1 } });
});

t.test('seed and run: the Django-shell equivalents', async (t) => {
  const url = await createMigratedDatabase(t);
  const seeded = await command(t, ['seed', '--count', '500', '--date', '2031-03-10', '--seed', '42'], {
    DATABASE_URL: url,
  });
  t.equal(seeded.code, 0, seeded.err);
  t.match(JSON.parse(seeded.out), { inserted: 500, date: '2031-03-10' });
  const [mix] = await query<{ n: number; periodicities: number; sellers: number; due: number }>(
    url,
    `SELECT count(*)::int AS n, count(DISTINCT periodicidade)::int AS periodicities, count(DISTINCT vendedor_id)::int AS sellers,
       count(*) FILTER (WHERE proxima_cobranca = '2031-03-10')::int AS due FROM checkout_recorrencias`,
  );
  t.match(mix, { n: 500, periodicities: 5, due: 500 }, 'varied periodicities, all due on the date');
  t.ok(
    (mix?.sellers ?? 0) > 80 && (mix?.sellers ?? 0) <= 100,
    `spread over the 100 default sellers (${mix?.sellers})`,
  );
  const reseeded = await command(t, ['seed', '--count', '500', '--date', '2031-03-10', '--seed', '42'], {
    DATABASE_URL: url,
  });
  t.equal(reseeded.code, 0);
  const [same] = await query<{ equal: boolean }>(
    url,
    `SELECT bool_and(a.valor_centavos = b.valor_centavos AND a.periodicidade = b.periodicidade) AS equal
     FROM checkout_recorrencias a JOIN checkout_recorrencias b ON b.id = a.id + 500 WHERE a.id <= 500`,
  );
  t.equal(same?.equal, true, 'the same seed gives the same recurrences');
  await query(url, 'DELETE FROM checkout_recorrencias WHERE id > 500');
  const future = await command(t, ['run', 'processar_recorrencias_do_dia', '--date', '2031-03-10'], {
    DATABASE_URL: url,
  });
  t.equal(future.code, 2, 'a date after today is refused: it would charge now');
  t.match(
    future.err,
    /date 2031-03-10 is after today's business date .*; to run it anyway, add --allow-future-date/,
  );
  t.same(await query(url, `SELECT 1 FROM execucoes_tarefas`), [], 'nothing ran');
  const run = await command(
    t,
    ['run', 'processar_recorrencias_do_dia', '--date', '2031-03-10', '--allow-future-date'],
    { DATABASE_URL: url },
  );
  t.equal(run.code, 0, run.err);
  t.match(JSON.parse(run.out), {
    task: 'processar_recorrencias_do_dia',
    status: 'succeeded',
    counts: { encontradas: 500, enfileiradas: 500 },
  });
  const again = await command(
    t,
    ['run', 'processar_recorrencias_do_dia', '--date', '2031-03-10', '--allow-future-date'],
    { DATABASE_URL: url },
  );
  t.match(JSON.parse(again.out), { status: 'skipped', reason: 'already_succeeded' });
  const dryRun = await command(
    t,
    ['run', 'processar_recorrencias_do_dia', '--date', '2031-03-10', '--dry-run'],
    {
      DATABASE_URL: url,
    },
  );
  t.match(
    JSON.parse(dryRun.out),
    { total: 500, succeededRun: { status: 'sucesso' }, paused: null },
    'the dry run says the date already succeeded (its 500 jobs wait for a worker)',
  );
  const csv = await command(
    t,
    ['run', 'processar_recorrencias_do_dia', '--date', '2031-03-10', '--dry-run', '--csv'],
    { DATABASE_URL: url },
  );
  t.match(
    csv.err,
    /2031-03-10 already succeeded \(run \d+\): a run without --force answers already_succeeded/,
  );
  t.match(
    await query(url, `SELECT quem, acao, alvo, detalhes FROM auditoria_admin ORDER BY id`),
    [
      {
        quem: /^cli/,
        acao: 'run_task',
        alvo: 'processar_recorrencias_do_dia',
        detalhes: { date: '2031-03-10', force: false, via: 'command line' },
      },
      { acao: 'run_task' },
    ],
    'each command-line run is audited (the refused ones are not runs)',
  );
  await query(
    url,
    `INSERT INTO tarefas_pausadas (fila, pausada_por, motivo) VALUES ('processar_recorrencias_do_dia', 'ana', 'volta ao celery')`,
  );
  const paused = await command(
    t,
    ['run', 'processar_recorrencias_do_dia', '--date', '2031-03-10', '--allow-future-date', '--force'],
    { DATABASE_URL: url },
  );
  t.equal(paused.code, 1, 'a paused task is refused, even forced');
  t.match(
    paused.err,
    /task processar_recorrencias_do_dia is paused \(by ana since .*: volta ao celery\); resume it first/,
  );
  t.equal(paused.out, '', 'no result printed');
  t.same(
    await query(url, `SELECT count(*)::int AS runs FROM execucoes_tarefas`),
    [{ runs: 1 }],
    'nothing ran: only the first run is recorded',
  );
  const bad = await command(t, ['run', 'processar_recorrencias_do_dia', '--date', '2031-02-30'], {
    DATABASE_URL: url,
  });
  t.equal(bad.code, 2);
  t.match(bad.err, /--date/);
});

/** Holds a lock on `table` that makes writers (or, in ACCESS EXCLUSIVE mode, readers too) wait, until released. */
async function holdTable(t: Test, url: string, table: string, mode: string): Promise<() => Promise<void>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  t.teardown(() => client.end());
  await client.query('BEGIN');
  await client.query(`LOCK TABLE ${table} IN ${mode} MODE`);
  return async () => {
    await client.query('COMMIT');
  };
}

/** Makes pg-boss's inserts of charge jobs wait, until released. */
async function holdChargeInserts(t: Test, url: string): Promise<() => Promise<void>> {
  const [queue] = await query<{ table_name: string }>(
    url,
    `SELECT table_name FROM pgboss.queue WHERE name = 'cobrar_recorrencia'`,
  );
  return holdTable(t, url, `pgboss.${queue?.table_name ?? 'missing'}`, 'SHARE');
}

t.test(
  'a run stopped by SIGTERM stops at its next page and records how far it got; a second signal forces the exit',
  async (t) => {
    const url = await createMigratedDatabase(t);
    // The fan-out's full pages in flight at once, and a last page of 2,000 read behind them.
    const inFlight = PAGE_SIZE * INSERTS_IN_FLIGHT;
    const total = inFlight + 2_000;
    const seeded = await command(t, ['seed', '--count', String(total), '--date', '2031-03-10'], {
      DATABASE_URL: url,
    });
    t.equal(seeded.code, 0, seeded.err);
    const runArgs = ['run', 'processar_recorrencias_do_dia', '--date', '2031-03-10', '--allow-future-date'];
    const runs = () =>
      query<{ status: string; erro: string | null; contagens: unknown }>(
        url,
        `SELECT status, erro, contagens FROM execucoes_tarefas ORDER BY id`,
      );
    const stopRequested = (run: { stderr(): string }) =>
      eventually(async () => (run.stderr().includes('stop requested') ? true : undefined));

    /**
     * Starts `args` with a lock held that `waiters` of its sessions end up waiting on, sends `signal` there,
     * and once the stop is logged releases the lock and waits for the exit.
     */
    const stopWhileHeld = async (
      args: string[],
      release: () => Promise<void>,
      waiters: number,
      signal: NodeJS.Signals,
    ) => {
      const service = startService(t, args, { DATABASE_URL: url, LOG_LEVEL: 'info' });
      await lockWaiters(url, waiters);
      service.child.kill(signal);
      await stopRequested(service);
      await release();
      const { code } = await service.exited;
      return { code, out: service.stdout(), err: service.stderr() };
    };

    // A dry run's listing, held up by a lock, stops at the first signal instead of listing all 12,000.
    const listing = await stopWhileHeld(
      ['run', 'processar_recorrencias_do_dia', '--date', '2031-03-10', '--dry-run', '--csv'],
      await holdTable(t, url, 'checkout_recorrencias', 'ACCESS EXCLUSIVE'),
      1,
      'SIGINT',
    );
    t.equal(listing.code, 1);
    t.match(listing.err, /stopped by SIGINT before it finished/);
    t.ok(listing.out.split('\n').length < total, 'the listing stopped short');

    // Stopped before it began (reading the pauses, held up by a lock): no run recorded, nothing audited.
    const early = await stopWhileHeld(
      runArgs,
      await holdTable(t, url, 'tarefas_pausadas', 'ACCESS EXCLUSIVE'),
      1,
      'SIGTERM',
    );
    t.equal(early.code, 1);
    t.match(early.err, /stopped by SIGTERM before it finished/);
    t.same(await runs(), [], 'no run recorded');
    t.same(await query(url, `SELECT 1 FROM auditoria_admin`), [], 'nothing audited');

    // The fan-out's inserts wait on the lock: its full pages are in flight, the last one read, when SIGTERM comes.
    const stopped = await stopWhileHeld(
      runArgs,
      await holdChargeInserts(t, url),
      INSERTS_IN_FLIGHT,
      'SIGTERM',
    );
    t.equal(stopped.code, 1, 'the run did not finish: exit 1');
    t.match(stopped.err, /stopped by SIGTERM before it finished/);
    const logged = stopped.err
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { level: number; msg: string; reason?: string });
    t.match(
      logged.filter((line) => line.msg.startsWith('task run')),
      [
        { level: 30, msg: 'task run started' },
        { level: 40, reason: 'stopped by SIGTERM' },
      ],
      'a deliberate stop is a warning that says to run it again',
    );
    t.notOk(
      logged.some((line) => line.level >= 50),
      'nothing logged as an error',
    );
    t.match(
      await runs(),
      [
        {
          status: 'falha',
          erro: 'stopped by SIGTERM',
          contagens: { encontradas: inFlight, enfileiradas: inFlight, ja_enfileiradas: 0 },
        },
      ],
      'recorded as failed, with the pages it enqueued; the last one left out',
    );
    t.same(
      await query(url, `SELECT count(*)::int AS jobs FROM pgboss.job WHERE name = 'cobrar_recorrencia'`),
      [{ jobs: inFlight }],
    );

    // Stuck for good (the lock held): a second signal, a second or more after the first, forces the exit.
    const release = await holdChargeInserts(t, url);
    const forced = startService(t, runArgs, { DATABASE_URL: url, LOG_LEVEL: 'info' });
    await lockWaiters(url, INSERTS_IN_FLIGHT);
    const lastRun = async () => {
      const out = (await command(t, ['inspect', 'scheduled', '--json'], { DATABASE_URL: url })).out;
      return (JSON.parse(out) as Array<{ task: string; lastRun: unknown }>).find(
        (row) => row.task === 'processar_recorrencias_do_dia',
      )?.lastRun;
    };
    t.match(await lastRun(), { status: 'executando', running: true }, 'inspect: running');
    forced.child.kill('SIGTERM');
    await stopRequested(forced);
    await eventually(
      async () => {
        if (forced.child.exitCode !== null) return true;
        forced.child.kill('SIGTERM');
        return undefined;
      },
      10_000,
      250,
    );
    t.equal((await forced.exited).code, 130, 'forced: exit 130');
    await query(
      url,
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
       WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    await release();
    t.match((await runs())[1], { status: 'executando' }, 'a forced exit leaves the run recorded as running');
    t.match(await lastRun(), { status: 'executando', running: false }, 'inspect: yet no process runs it');
    t.match(
      (await command(t, ['inspect', 'scheduled'], { DATABASE_URL: url })).out,
      /2031-03-10 executando \(its process ended; run it again for 2031-03-10\)/,
    );

    const finished = await command(t, runArgs, { DATABASE_URL: url });
    t.equal(finished.code, 0, finished.err);
    t.match(JSON.parse(finished.out), {
      status: 'succeeded',
      counts: { encontradas: total, enfileiradas: 2_000, ja_enfileiradas: inFlight },
    });
    t.match(
      (await runs())[1],
      { status: 'falha', erro: /^interrompida/ },
      'the next run marks the forced one interrupted',
    );
  },
);

t.test('purge-archive deletes only archived rows past the retention', async (t) => {
  const url = await createMigratedDatabase(t);
  await query(
    url,
    `INSERT INTO checkout_recorrencias_arquivo (id, vendedor_id, cartao_token, bandeira, valor_centavos, periodicidade, dia_ancora, proxima_cobranca, status, arquivado_em)
    VALUES (1, 'v', 't', 'visa', 100, 'mensal', 1, '2020-01-01', 'concluido', now() - interval '2000 days'),
           (2, 'v', 't', 'visa', 100, 'mensal', 1, '2020-01-01', 'concluido', now() - interval '10 days')`,
  );
  await query(
    url,
    `INSERT INTO checkout_recorrencia_cobrancas_arquivo (id, recorrencia_id, ciclo, tentativa, chave_idempotencia, status,
       valor_centavos, moeda, cartao_token, data_negocio, resolvida_em)
     VALUES (1, 1, '2020-01-01', 1, 'k1', 'aprovada', 100, 'BRL', 't', '2020-01-01', now()),
            (2, 1, '2020-02-01', 1, 'k2', 'aprovada', 100, 'BRL', 't', '2020-02-01', now()),
            (3, 2, '2020-01-01', 1, 'k3', 'aprovada', 100, 'BRL', 't', '2020-01-01', now())`,
  );
  const toPurge = { recorrencias: 1, cobrancas: 2, ciclos_pulados: 0 };
  const dryRun = await command(t, ['purge-archive', '--dry-run'], { DATABASE_URL: url });
  t.equal(dryRun.code, 0, dryRun.err);
  t.same(JSON.parse(dryRun.out), { olderThanDays: 1825, dryRun: true, toPurge });
  t.same(
    await query(
      url,
      'SELECT (SELECT count(*)::int FROM checkout_recorrencias_arquivo) AS r, (SELECT count(*)::int FROM auditoria_admin) AS a',
    ),
    [{ r: 2, a: 0 }],
    'a dry run deletes nothing and is not audited',
  );
  const purge = await command(t, ['purge-archive'], { DATABASE_URL: url });
  t.equal(purge.code, 0, purge.err);
  t.match(JSON.parse(purge.out), { olderThanDays: 1825, purged: toPurge });
  t.same(await query(url, 'SELECT id FROM checkout_recorrencias_arquivo'), [{ id: '2' }]);
  t.same(await query(url, 'SELECT id FROM checkout_recorrencia_cobrancas_arquivo'), [{ id: '3' }]);
  t.same(await query(url, 'SELECT quem, acao, detalhes, pedido_id, origem FROM auditoria_admin'), [
    {
      quem: `cli:${userInfo().username}`,
      acao: 'purge_archive',
      detalhes: { olderThanDays: 1825, toPurge },
      pedido_id: null,
      origem: `cli:${hostname()}`,
    },
  ]);
});

t.test('seed refuses a production environment unless told the database is a demo one', async (t) => {
  const url = await createMigratedDatabase(t);
  const refused = await command(t, ['seed', '--count', '5'], { DATABASE_URL: url, NODE_ENV: 'production' });
  t.equal(refused.code, 2);
  t.match(refused.err, /refused with NODE_ENV=production.*--demo/s);
  t.same(await query(url, 'SELECT id FROM checkout_recorrencias'), [], 'nothing seeded');
  const demo = await command(t, ['seed', '--count', '5', '--demo'], {
    DATABASE_URL: url,
    NODE_ENV: 'production',
  });
  t.equal(demo.code, 0, demo.err);
  t.match(JSON.parse(demo.out), { inserted: 5 });
});
