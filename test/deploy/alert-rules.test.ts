// prometheus/alerts.yml through Prometheus's own tool: `promtool check rules` (the expressions parse) and
// `promtool test rules` on test/deploy/alerts.rules-test.yml (each alert fires on the series its failure
// produces, at the time and with the text expected, and stays quiet otherwise). promtool comes with Debian's
// `prometheus` package (apt-get install prometheus), as the README's set-up and .ci/run install it.
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { PROJECT_ROOT } from '../helpers/processes.ts';

function promtool(args: string[]): { status: number | null; output: string } {
  const run = spawnSync('promtool', args, { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 120_000 });
  if (run.error !== undefined)
    throw new Error(`promtool is missing (apt-get install prometheus): ${run.error.message}`);
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

t.test('the rules parse', async (t) => {
  const { status, output } = promtool(['check', 'rules', 'prometheus/alerts.yml']);
  t.equal(status, 0, output);
});

t.test('each alert fires on its failure and stays quiet otherwise', async (t) => {
  const { status, output } = promtool(['test', 'rules', 'test/deploy/alerts.rules-test.yml']);
  t.equal(status, 0, output);
  t.match(output, /SUCCESS/);
});
