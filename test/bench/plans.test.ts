// The query-plan script on a small morning: it explains every hot statement the service issues (the real
// query functions and pg-boss calls), each plan using an index rather than a scan of its table, and leaves
// the database exactly as it found it. 60,000 rows, because on a small table the planner rightly prefers to
// read it whole (at 3,000 the fetch joined the job table by a hash over all of it): the test stays on the
// side of that crossover that a morning's run is on.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { createMigratedDatabase, query } from '../helpers/database.ts';
import { PROJECT_ROOT, startService } from '../helpers/processes.ts';

const run = promisify(execFile);
const DAY = '2031-06-02';

type State = { attempts: number; queued: number; active: number; due: number };

async function state(url: string): Promise<State | undefined> {
  const [row] = await query<State>(
    url,
    `SELECT (SELECT count(*) FROM checkout_recorrencia_cobrancas)::int AS attempts,
            (SELECT count(*) FROM pgboss.job WHERE name = 'cobrar_recorrencia' AND state = 'created')::int AS queued,
            (SELECT count(*) FROM pgboss.job WHERE name = 'cobrar_recorrencia' AND state = 'active')::int AS active,
            (SELECT count(*) FROM checkout_recorrencias WHERE proxima_cobranca = $1::date)::int AS due`,
    [DAY],
  );
  return row;
}

t.test('explains the hot statements with index access and changes nothing', async (t) => {
  const url = await createMigratedDatabase(t);
  const env = { DATABASE_URL: url, LOG_LEVEL: 'warn' };
  t.equal((await startService(t, ['seed', '--count', '60000', '--date', DAY], env).exited).code, 0);
  t.equal(
    (
      await startService(
        t,
        ['run', 'processar_recorrencias_do_dia', '--date', DAY, '--allow-future-date'],
        env,
      ).exited
    ).code,
    0,
  );
  // Our tables, as a morning finds them (analysed long ago); the job table keeps the statistics the run left.
  await query(url, 'ANALYZE checkout_recorrencias, checkout_recorrencia_cobrancas');
  const before = await state(url);
  t.same(before, { attempts: 0, queued: 60000, active: 0, due: 60000 });

  const { stdout } = await run(process.execPath, ['scripts/bench/plans.ts', url], { cwd: PROJECT_ROOT });
  const sections = stdout.split(/^-- /m).filter((section) => section.trim() !== '');
  const [header, ...plans] = sections;
  t.match(header, /60000 recurrences, 60000 charge jobs queued/);
  const titles = plans.map((section) => section.split('\n')[0]);
  t.same(
    titles.map((title) => /\(([^)]+)\)$/.exec(title ?? '')?.[1]),
    [
      'findChargeablePage',
      'pg-boss insert, 64 shown',
      'pg-boss fetch',
      'lockChargeCandidates',
      'insertAttempts',
      'pg-boss complete',
      'readDeclineFacts',
      'recordDeclines',
      'recordApprovals',
      'insertCheckoutEvents',
    ],
  );
  for (const section of plans) {
    const [title, ...lines] = section.trim().split('\n');
    t.ok(lines.length > 0, `${title}: has a plan`);
  }
  // The statements that find rows reach them through an index, never by reading their whole table.
  for (const name of [
    'findChargeablePage',
    'pg-boss fetch',
    'lockChargeCandidates',
    'pg-boss complete',
    'recordDeclines',
  ]) {
    const section = plans.find((candidate) => candidate.split('\n')[0]?.includes(name)) ?? '';
    t.match(section, /Index (Only )?Scan/, `${name} uses an index`);
    t.notMatch(section, /Seq Scan on (checkout_recorrencias|j[0-9a-f]{20,})\b/, `${name} scans no table`);
  }
  // The fetch takes the next jobs in the index's order: a sort would read every queued job on every fetch.
  const fetch = plans.find((candidate) => candidate.split('\n')[0]?.includes('pg-boss fetch')) ?? '';
  t.notMatch(fetch, /Sort/, 'pg-boss fetch sorts nothing');
  t.same(await state(url), before, 'everything it ran was rolled back');
});
