// Runs an operators' SQL file (sql/*.sql, plain SQL for psql) in tests: through psql as operators do, and
// statement by statement through the pg driver, both read back as tables of the server's text values.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { Test } from 'tap';

const SEPARATOR = '\x1f';

export type ResultSet = { columns: string[]; rows: string[][] };

/** Splits SQL text on the semicolons outside quotes and comments; drops what is only comments. */
export function splitStatements(text: string): string[] {
  const statements: string[] = [];
  let current = '';
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    const skip = /^--[^\n]*/.exec(rest) ?? /^\/\*[\s\S]*?\*\//.exec(rest) ?? /^'(?:[^']|'')*'/.exec(rest);
    if (skip !== null) {
      if (!skip[0].startsWith('-') && !skip[0].startsWith('/')) current += skip[0];
      i += skip[0].length;
    } else if (text[i] === ';') {
      statements.push(current.trim());
      current = '';
      i += 1;
    } else {
      current += text[i];
      i += 1;
    }
  }
  return [...statements, current.trim()].filter((statement) => statement.length > 0);
}

export function psqlOnPath(): boolean {
  return spawnSync('psql', ['--version'], { encoding: 'utf8' }).status === 0;
}

/** What operators run (plus ON_ERROR_STOP, so an error fails), in unaligned output parsed into tables. */
export function viaPsql(t: Test, url: string, file: string): ResultSet[] {
  const env = { ...process.env };
  // Session settings that would change how values print, unlike the driver's session.
  for (const name of ['PGTZ', 'PGDATESTYLE', 'PGOPTIONS', 'PSQLRC']) delete env[name];
  const result = spawnSync(
    'psql',
    [url, '--no-psqlrc', '--no-align', `--field-separator=${SEPARATOR}`, '-v', 'ON_ERROR_STOP=1', '-f', file],
    { encoding: 'utf8', env },
  );
  t.equal(result.status, 0, 'psql exits 0');
  t.equal(result.stderr, '', 'psql reports no error');
  const sets: ResultSet[] = [];
  let current: ResultSet | null = null;
  for (const line of result.stdout.split('\n')) {
    if (current === null) {
      if (line !== '') current = { columns: line.split(SEPARATOR), rows: [] };
    } else if (/^\(\d+ rows?\)$/.test(line)) {
      sets.push(current);
      current = null;
    } else {
      current.rows.push(line.split(SEPARATOR));
    }
  }
  t.equal(current, null, 'psql output ends after a complete table');
  return sets;
}

/** Each statement through pg, values as the server's text (what psql prints), nulls as psql's empty field. */
export async function viaDriver(url: string, file: string): Promise<ResultSet[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const sets: ResultSet[] = [];
    for (const text of splitStatements(readFileSync(file, 'utf8'))) {
      const result = await client.query<unknown[]>({
        text,
        rowMode: 'array',
        types: { getTypeParser: () => (value: string) => value },
      });
      sets.push({
        columns: result.fields.map((field) => field.name),
        rows: result.rows.map((row) => row.map((value) => (value as string | null) ?? '')),
      });
    }
    return sets;
  } finally {
    await client.end();
  }
}

/** The table that has the column `column` (each query names one of its own), as objects. */
export function table(sets: ResultSet[], column: string): Array<Record<string, string>> {
  const found = sets.filter((candidate) => candidate.columns.includes(column));
  const set = found[0];
  if (set === undefined || found.length > 1) throw new Error(`not one result set with the column ${column}`);
  return set.rows.map((row) => Object.fromEntries(set.columns.map((name, i) => [name, row[i] ?? ''])));
}
