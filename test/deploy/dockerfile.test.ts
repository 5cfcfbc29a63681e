// Static checks of the Dockerfile (no Docker engine here to build it): Node 24 bases, a build stage, a
// runtime stage with production dependencies only, a non-root user, and the entry point the test suite runs.
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

type Instruction = { keyword: string; args: string };
type Stage = { image: string; name: string | undefined; instructions: Instruction[] };

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');
const dockerignore = readFileSync(new URL('../../.dockerignore', import.meta.url), 'utf8');

/** Instructions grouped by stage; comments dropped, `\` continuations joined. */
function parseDockerfile(source: string): Stage[] {
  const logical = source
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const stages: Stage[] = [];
  for (const line of logical) {
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const upper = keyword.toUpperCase();
    if (upper === 'FROM') {
      const [, image = '', name] = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args) ?? [];
      stages.push({ image, name, instructions: [] });
    } else {
      stages.at(-1)?.instructions.push({ keyword: upper, args });
    }
  }
  return stages;
}

const stages = parseDockerfile(dockerfile);
const final = stages.at(-1);

function runs(stage: Stage, command: RegExp): boolean {
  return stage.instructions.some((i) => i.keyword === 'RUN' && command.test(i.args));
}

function last(stage: Stage | undefined, keyword: string): Instruction | undefined {
  return stage?.instructions.filter((i) => i.keyword === keyword).at(-1);
}

t.test('multi-stage, every stage on the official Node 24 image', async (t) => {
  t.ok(stages.length >= 2, `${stages.length} stages`);
  for (const stage of stages)
    t.match(stage.image, /^node:24([.-]|$)/, `${stage.name ?? 'stage'} uses Node 24`);
});

t.test('a build stage installs everything and compiles', async (t) => {
  const build = stages.find((stage) => runs(stage, /\bnpm run build\b/));
  t.ok(build, 'a stage runs npm run build');
  if (build !== undefined) t.ok(runs(build, /\bnpm ci\b(?!.*--omit=dev)/), 'after a full npm ci');
});

type Copy = { from: string | undefined; sources: string[] };

/** COPY instructions of a stage as their --from stage and source paths (trailing slashes dropped). */
function copies(stage: Stage): Copy[] {
  return stage.instructions
    .filter((i) => i.keyword === 'COPY')
    .map((i) => {
      const words = i.args.split(/\s+/);
      const from = words.find((word) => word.startsWith('--from='))?.slice('--from='.length);
      const paths = words.filter((word) => !word.startsWith('--'));
      return { from, sources: paths.slice(0, -1).map((path) => path.replace(/\/+$/, '')) };
    });
}

t.test(
  'the runtime stage gets production dependencies only, dist/, sql/, public/ and package.json',
  async (t) => {
    if (final === undefined) throw new Error('no stage');
    const production = stages.find((stage) => runs(stage, /\bnpm ci\b.*--omit=dev/));
    const build = stages.find((stage) => runs(stage, /\bnpm run build\b/));
    t.ok(production?.name, 'a named stage runs npm ci --omit=dev');
    t.ok(build?.name, 'the build stage is named');
    const copied = copies(final);
    const has = (from: string | undefined, source: RegExp) =>
      copied.some((c) => c.from === from && c.sources.some((path) => source.test(path)));
    t.ok(has(production?.name, /node_modules$/), 'node_modules from the production-only stage');
    t.notOk(has(build?.name, /node_modules/), 'no node_modules from the build stage (dev dependencies)');
    t.ok(has(build?.name, /dist$/), 'dist/ from the build stage');
    t.ok(has(undefined, /^(\.\/)?sql$/), 'sql/ from the context (migrations are read at runtime)');
    t.ok(
      has(undefined, /^(\.\/)?public$/),
      'public/ from the context (the dashboard page is read at runtime)',
    );
    t.ok(has(undefined, /^(\.\/)?package\.json$/), 'package.json ("type": "module")');
    t.notOk(has(undefined, /^\.\/?$/), 'not the whole build context');
  },
);

t.test('the final stage runs as a non-root user', async (t) => {
  const user = last(final, 'USER')?.args;
  t.ok(user, 'a USER instruction');
  t.notMatch(user ?? 'root', /^(root|0)(:|$)/, 'not root');
});

t.test('node runs dist/main.js directly, with a role as the command', async (t) => {
  t.same(JSON.parse(last(final, 'ENTRYPOINT')?.args ?? 'null'), ['node', 'dist/main.js']);
  const command: unknown = JSON.parse(last(final, 'CMD')?.args ?? 'null');
  t.ok(Array.isArray(command) && command.length > 0, 'a default CMD in exec form');
});

t.test('.dockerignore keeps local state and secrets out of the build context', async (t) => {
  const entries = dockerignore
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  for (const entry of ['node_modules', 'dist', '.data', '.tap', '.git', '.env']) {
    t.ok(entries.includes(entry), `${entry} is ignored`);
  }
  t.notOk(
    entries.some((entry) => ['src', 'sql', 'public', 'package.json', 'package-lock.json'].includes(entry)),
    'what the image needs is not ignored',
  );
});

/** Packages a source file loads at runtime (type-only imports are erased, so they do not count). */
function runtimeImports(source: string): string[] {
  const specifiers = [
    ...source.matchAll(/\b(?:import|export)\s+(type\s+)?[^'";]*?\bfrom\s*['"]([^'"]+)['"]/g),
  ]
    .filter((match) => match[1] === undefined)
    .map((match) => match[2] ?? '');
  for (const match of source.matchAll(/\b(?:import\s*\(|require\s*\(|import\s+)\s*['"]([^'"]+)['"]/g)) {
    specifiers.push(match[1] ?? '');
  }
  return specifiers
    .filter((specifier) => !specifier.startsWith('.') && !specifier.startsWith('node:'))
    .map((specifier) =>
      specifier
        .split('/')
        .slice(0, specifier.startsWith('@') ? 2 : 1)
        .join('/'),
    );
}

t.test('--omit=dev is enough: src/ loads only production dependencies (src/dev/ aside)', async (t) => {
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  const files = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts') && !file.startsWith(`dev/`))
    .map((file) => join(ROOT, 'src', file));
  t.ok(files.length > 10, `${files.length} source files scanned`);
  const missing = files.flatMap((file) =>
    runtimeImports(readFileSync(file, 'utf8'))
      .filter((name) => !(name in manifest.dependencies) && !builtinModules.includes(name))
      .map((name) => `${relative(ROOT, file)} imports ${name}`),
  );
  t.same(missing, [], 'imports of packages that are not production dependencies');
  t.same(runtimeImports("import type { A } from 'tap';\nimport { b } from 'pino';"), ['pino'], 'parser');
});
