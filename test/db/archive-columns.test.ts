// The archive copies rows by column name, from the lists the code keeps (RECURRENCE_COLUMNS and the like): a
// migration that adds a column to a live table must add it to its archive table and to that list, or the
// archive would lose it. This test fails until both are done.
import type { FragmentSqlToken } from 'slonik';
import t from 'tap';
import { SKIPPED_CYCLE_COLUMNS } from '../../src/db/arquivo.ts';
import { ATTEMPT_COLUMNS } from '../../src/db/cobrancas.ts';
import { RECURRENCE_COLUMNS } from '../../src/db/recorrencias.ts';
import { createMigratedDatabase, query } from '../helpers/database.ts';

const ARCHIVED: Array<[string, FragmentSqlToken]> = [
  ['checkout_recorrencias', RECURRENCE_COLUMNS],
  ['checkout_recorrencia_cobrancas', ATTEMPT_COLUMNS],
  ['checkout_recorrencia_ciclos_pulados', SKIPPED_CYCLE_COLUMNS],
];

t.test(
  'every column of the archived tables is in the archive and in the list the archive copies',
  async (t) => {
    const url = await createMigratedDatabase(t);
    const columnsOf = async (table: string) =>
      (
        await query<{ name: string }>(
          url,
          `SELECT column_name AS name FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY 1`,
          [table],
        )
      ).map((row) => row.name);
    for (const [table, list] of ARCHIVED) {
      const live = await columnsOf(table);
      t.ok(live.length > 0, `${table} exists`);
      t.same(
        'sql' in list
          ? list.sql
              .split(',')
              .map((name) => name.trim())
              .sort()
          : null,
        live,
        `the archive's copy of ${table} names every column`,
      );
      t.same(
        await columnsOf(`${table}_arquivo`),
        [...live, 'arquivado_em'].sort(),
        `${table}_arquivo has them all`,
      );
    }
  },
);
