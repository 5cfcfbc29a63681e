// Imports the old system's export (CSV or JSON lines): reads and validates every line first, then writes
// the valid rows in one transaction, BATCH_SIZE per statement. Atomic: a failure midway rolls everything
// back, and the import is idempotent (keyed by id_legado), so rerunning the same command is always the fix.
// A dry run does the same work and rolls it back, so its counts are exactly what the import would do.
import { readFile } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import {
  insertImportRun,
  lockImports,
  lockOverwritableRecurrences,
  upsertImportedBatch,
} from '../db/importacao.ts';
import { insertAudit } from '../db/pauses.ts';
import type { DatabaseTransactionConnection } from '../db/pool.ts';
import { findLatestLegacyCutover } from '../db/recorrencias-gestao.ts';
import { parseCsv, CsvSyntaxError } from '../domain/csv.ts';
import { businessDate, type IsoDate } from '../domain/dates.ts';
import {
  LEGACY_COLUMNS,
  mapLegacyRow,
  REQUIRED_COLUMNS,
  type ImportedRecurrence,
  type LegacyColumn,
  type LegacyRow,
  type RowProblem,
} from '../domain/legacy-import.ts';
import { AppError } from '../errors.ts';
import type { OpsDeps } from './deps.ts';
import type { Actor } from './actor.ts';

const BATCH_SIZE = 5_000;
/** The report lists at most this many rejected lines (the count is always complete). */
const ERRORS_LISTED = 1_000;

export type ImportOptions = {
  file: string;
  format?: 'csv' | 'jsonl';
  cutover: IsoDate | null;
  /** Replace the cutover in force (a mistyped one) by `cutover`, even an earlier one. */
  replaceCutover?: boolean;
  dryRun: boolean;
  /** Our column name -> the export's, for exports whose names differ from LEGACY_COLUMNS. */
  mapping: Partial<Record<LegacyColumn, string>>;
};

export type LineError = { linha: number; coluna: string; motivo: string };
type Line = { line: number; row: LegacyRow } | { line: number; error: string };

class DryRunRollback extends Error {}

function formatOf(options: ImportOptions): 'csv' | 'jsonl' {
  if (options.format !== undefined) return options.format;
  const extension = extname(options.file).toLowerCase();
  if (extension === '.csv') return 'csv';
  if (extension === '.jsonl' || extension === '.ndjson') return 'jsonl';
  throw new AppError(
    'INVALID_INPUT',
    `--file: cannot tell the format of ${options.file} (use .csv or .jsonl)`,
  );
}

function sourceName(options: ImportOptions, column: LegacyColumn): string {
  return options.mapping[column] ?? column;
}

function readCsvLines(text: string, options: ImportOptions): Line[] {
  const [header, ...records] = parseCsv(text);
  if (header === undefined) return [];
  const position = new Map(header.fields.map((name, index) => [name.trim(), index]));
  const missing = REQUIRED_COLUMNS.filter((column) => !position.has(sourceName(options, column)));
  if (missing.length > 0) {
    throw new AppError(
      'INVALID_INPUT',
      `the header (line ${header.line}) lacks the columns ${missing.map((c) => sourceName(options, c)).join(', ')}`,
    );
  }
  return records.map((record) => {
    if (record.fields.length !== header.fields.length) {
      return {
        line: record.line,
        error: `${record.fields.length} campos, o cabeçalho tem ${header.fields.length}`,
      };
    }
    const row: LegacyRow = {};
    for (const column of LEGACY_COLUMNS) {
      const index = position.get(sourceName(options, column));
      if (index !== undefined) row[column] = record.fields[index] ?? null;
    }
    return { line: record.line, row };
  });
}

function readJsonLines(text: string, options: ImportOptions): Line[] {
  const lines: Line[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    if (raw.trim() === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      lines.push({ line: index + 1, error: 'JSON inválido' });
      return;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      lines.push({ line: index + 1, error: 'a linha não é um objeto JSON' });
      return;
    }
    const source = parsed as Record<string, unknown>;
    const row: LegacyRow = {};
    for (const column of LEGACY_COLUMNS) {
      const value = source[sourceName(options, column)];
      row[column] =
        value === null || value === undefined
          ? null
          : typeof value === 'string'
            ? value
            : JSON.stringify(value);
    }
    lines.push({ line: index + 1, row });
  });
  return lines;
}

async function readLines(options: ImportOptions): Promise<Line[]> {
  let text: string;
  try {
    text = await readFile(options.file, 'utf8');
  } catch (error) {
    throw new AppError('INVALID_INPUT', `--file: cannot read ${options.file}: ${(error as Error).message}`);
  }
  try {
    return formatOf(options) === 'csv' ? readCsvLines(text, options) : readJsonLines(text, options);
  } catch (error) {
    if (error instanceof CsvSyntaxError)
      throw new AppError('INVALID_INPUT', `${options.file}: ${error.message}`);
    throw error;
  }
}

/** Every line validated; the valid rows with distinct old ids, and the errors by line. */
function validate(lines: Line[], cutover: IsoDate | null) {
  const rows: ImportedRecurrence[] = [];
  const errors: LineError[] = [];
  const seen = new Map<string, number>();
  let moved = 0;
  const reject = (line: number, problems: RowProblem[]) =>
    errors.push(...problems.map((problem) => ({ linha: line, ...problem })));
  for (const entry of lines) {
    if ('error' in entry) {
      reject(entry.line, [{ coluna: '(linha)', motivo: entry.error }]);
      continue;
    }
    const mapped = mapLegacyRow(entry.row, cutover);
    if (!mapped.ok) {
      reject(entry.line, mapped.problems);
      continue;
    }
    const first = seen.get(mapped.value.id_legado);
    if (first !== undefined) {
      reject(entry.line, [{ coluna: 'id', motivo: `id repetido (já na linha ${first})` }]);
      continue;
    }
    seen.set(mapped.value.id_legado, entry.line);
    if (mapped.value.proxima_cobranca !== entry.row.proxima_cobranca?.trim()) moved += 1;
    rows.push(mapped.value);
  }
  return { rows, errors, moved };
}

/**
 * Once an import used a cutover, every later one must use it or a later one: without it, a re-import would
 * write rows not yet charged here back to their old dates, before the cutover, into the old system's time
 * (the next run would charge cycles the old system was responsible for). The one way back is explicit: an
 * import with `replaceCutover` and the right date, for a cutover mistyped (2032 for 2031 would leave every
 * row uncharged for a year). Returns the cutover it replaces, for the audit.
 */
async function checkCutover(
  tx: DatabaseTransactionConnection,
  options: Pick<ImportOptions, 'cutover' | 'replaceCutover'>,
): Promise<IsoDate | null> {
  const latest = await findLatestLegacyCutover(tx);
  if (options.replaceCutover === true) {
    if (options.cutover === null) {
      throw new AppError('INVALID_INPUT', '--replace-cutover: give the right date with --cutover');
    }
    return latest !== null && latest !== options.cutover ? latest : null;
  }
  if (latest !== null && (options.cutover === null || options.cutover < latest)) {
    throw new AppError(
      'INVALID_INPUT',
      `--cutover: an earlier import used the cutover ${latest}; give --cutover ${latest} (or later), or the rows not yet charged here would move back before it (a mistyped cutover is replaced with --replace-cutover)`,
    );
  }
  return null;
}

/**
 * Runs an import (or its dry run) and reports the counts: lines read, inserted, updated, unchanged,
 * protected (already charged or changed by this service: never overwritten), rejected, moved by the cutover.
 */
export async function importLegacyExport(deps: OpsDeps, who: Actor, options: ImportOptions) {
  const started = Date.now();
  const lines = await readLines(options);
  const { rows, errors, moved } = validate(lines, options.cutover);
  const totals = { inseridas: 0, atualizadas: 0, protegidas: 0 };
  let replaced: IsoDate | null = null;
  try {
    await deps.pool.transaction(async (tx) => {
      await lockImports(tx);
      replaced = await checkCutover(tx, options);
      await lockOverwritableRecurrences(
        tx,
        rows.map((row) => row.id_legado),
      );
      for (let start = 0; start < rows.length; start += BATCH_SIZE) {
        const counts = await upsertImportedBatch(tx, rows.slice(start, start + BATCH_SIZE));
        totals.inseridas += counts.inseridas;
        totals.atualizadas += counts.atualizadas;
        totals.protegidas += counts.protegidas;
      }
      const counts = summary();
      if (options.dryRun) throw new DryRunRollback();
      await insertImportRun(tx, {
        file: basename(options.file),
        who: who.name,
        cutover: options.cutover,
        counts,
      });
      await insertAudit(tx, {
        who,
        action: 'import_legacy',
        target: basename(options.file),
        details: {
          cutover: options.cutover,
          ...(replaced === null ? {} : { corte_substituido: replaced }),
          ...counts,
        },
      });
    });
  } catch (error) {
    if (!(error instanceof DryRunRollback)) throw error;
  }
  function summary() {
    return {
      linhas: lines.length,
      validas: rows.length,
      ...totals,
      inalteradas: rows.length - totals.inseridas - totals.atualizadas - totals.protegidas,
      rejeitadas: new Set(errors.map((error) => error.linha)).size,
      movidas_pelo_corte: moved,
    };
  }
  if (replaced !== null && !options.dryRun) {
    deps.log.warn(
      { replaced, cutover: options.cutover, by: who },
      'the cutover in force was replaced by an import (--replace-cutover)',
    );
  }
  const seconds = (Date.now() - started) / 1000;
  const today = businessDate(deps.now(), deps.config.timeZone);
  const overdue =
    options.cutover === null
      ? rows.filter((row) => row.status === 'ativo' && row.proxima_cobranca < today).length
      : 0;
  if (overdue > 0) {
    deps.log.warn(
      { overdue, today },
      'imported without --cutover: active recurrences with a next charge before today will be charged by the next run',
    );
  }
  return {
    arquivo: options.file,
    dry_run: options.dryRun,
    corte: options.cutover,
    corte_substituido: replaced,
    ...summary(),
    ativas_vencidas_antes_de_hoje: overdue,
    segundos: seconds,
    linhas_por_segundo: Math.round(lines.length / Math.max(seconds, 0.001)),
    erros: errors.slice(0, ERRORS_LISTED),
    erros_omitidos: Math.max(0, errors.length - ERRORS_LISTED),
  };
}
