// Answers "is this database ready for this release?": our migrations applied and unedited, and pg-boss's
// schema at the version the installed pg-boss expects. Roles other than `migrate` refuse to start otherwise.
import { createRequire } from 'node:module';
import { AppError } from '../errors.ts';
import { migrationStatus } from './migrator.ts';
import type { SqlRunner } from './raw-query.ts';

const require = createRequire(import.meta.url);
const bossPackage = require('pg-boss/package.json') as { version: string; pgboss: { schema: number } };

/** The pg-boss schema version this release runs against. */
export const EXPECTED_BOSS_SCHEMA_VERSION = bossPackage.pgboss.schema;
export const BOSS_SCHEMA = 'pgboss';

export type SchemaState = { ok: true } | { ok: false; reason: string };

async function bossSchemaVersion(run: SqlRunner): Promise<number | null> {
  const [table] = await run('SELECT to_regclass($1) IS NOT NULL AS exists', [`${BOSS_SCHEMA}.version`]);
  if (table?.exists !== true) return null;
  const [row] = await run(`SELECT version FROM ${BOSS_SCHEMA}.version`);
  return row === undefined ? null : Number(row.version);
}

export async function checkSchema(run: SqlRunner): Promise<SchemaState> {
  const status = await migrationStatus(run);
  if (status.edited.length > 0)
    return { ok: false, reason: `applied migrations were edited: ${status.edited.join(', ')}` };
  if (status.unknown.length > 0)
    return { ok: false, reason: `database is ahead of this release: ${status.unknown.join(', ')}` };
  if (status.pending.length > 0) {
    return { ok: false, reason: `pending migrations: ${status.pending.map((file) => file.name).join(', ')}` };
  }
  const bossVersion = await bossSchemaVersion(run);
  if (bossVersion === null) return { ok: false, reason: 'pg-boss schema is not installed' };
  if (bossVersion !== EXPECTED_BOSS_SCHEMA_VERSION) {
    return {
      ok: false,
      reason: `pg-boss schema is version ${bossVersion}, this release needs ${EXPECTED_BOSS_SCHEMA_VERSION}`,
    };
  }
  return { ok: true };
}

/** Throws NOT_MIGRATED with a message that tells the operator what to run. */
export async function assertSchemaCurrent(run: SqlRunner): Promise<void> {
  const state = await checkSchema(run);
  if (!state.ok) {
    throw new AppError(
      'NOT_MIGRATED',
      `database is not migrated for this release (${state.reason}): run \`node dist/main.js migrate\` first`,
    );
  }
}
