// Prints a task's dry run (`run <task> --dry-run`). For processar_recorrencias_do_dia it streams the whole
// list of charges the date would get, as one JSON document or as CSV (`--csv`, one line per charge, ready
// to diff against the old system's list, with the totals and the blocked count on stderr); other tasks print
// their counts.
import { sql } from 'slonik';
import type { IsoDate } from '../domain/dates.ts';
import {
  allDueCharges,
  blockedDueCount,
  dryRunTask,
  runObstacles,
  type PreviewItem,
} from '../ops/charge-preview.ts';
import type { OpsDeps } from '../ops/deps.ts';
import type { PeriodicTaskName } from '../queue/task-names.ts';

const CSV_COLUMNS: Array<keyof PreviewItem> = [
  'recorrencia_id',
  'id_legado',
  'vendedor_id',
  'ciclo',
  'valor_centavos',
  'moeda',
  'ciclos_pulados',
  'retomada',
];

function csvField(value: string | number | boolean | null): string {
  const text = value === null || value === undefined ? '' : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export async function printDryRun(
  deps: OpsDeps,
  task: PeriodicTaskName,
  date: IsoDate,
  csv: boolean,
  signal: AbortSignal,
): Promise<void> {
  const out = process.stdout;
  if (task !== 'processar_recorrencias_do_dia') {
    out.write(`${JSON.stringify(await dryRunTask(deps, task, { date, limit: 1 }), null, 2)}\n`);
    return;
  }
  // One read-only snapshot for the whole list and its counts, so that they agree with each other.
  await deps.pool.transaction(async (tx) => {
    await tx.query(sql.unsafe`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`);
    let total = 0;
    let cents = 0;
    if (csv) out.write(`${CSV_COLUMNS.join(',')}\n`);
    else
      out.write(`{"task":${JSON.stringify(task)},"date":${JSON.stringify(date)},"dryRun":true,"cobrancas":[`);
    for await (const item of allDueCharges(deps, tx, date)) {
      // A million lines take a while: Ctrl-C stops the listing rather than waiting for its end.
      signal.throwIfAborted();
      if (csv) out.write(`${CSV_COLUMNS.map((column) => csvField(item[column])).join(',')}\n`);
      else out.write(`${total === 0 ? '' : ','}\n  ${JSON.stringify(item)}`);
      total += 1;
      cents += item.valor_centavos;
    }
    const blocked = await blockedDueCount(deps, tx, date);
    const { succeededRun, paused } = await runObstacles(tx, task, date);
    if (!csv) {
      const rest = JSON.stringify({
        total,
        valor_total_centavos: cents,
        bloqueadas: blocked,
        succeededRun,
        paused,
      });
      // The fields close the object whose list was streamed above: its opening brace is already written.
      out.write(`\n],${rest.slice(1)}\n`);
      return;
    }
    // The CSV is for diffing against the old system's list: the totals go to stderr, out of the file.
    process.stderr.write(
      `${total} charges listed (${cents} cents); ${blocked} due recurrences left out: their attempt is blocked (bloqueadas)\n`,
    );
    if (succeededRun !== null) {
      process.stderr.write(
        `${date} already succeeded (run ${succeededRun.id}): a run without --force answers already_succeeded\n`,
      );
    }
    if (paused !== null) process.stderr.write(`${task} is paused by ${paused.by}: a run is refused\n`);
  });
}
