// Reads the end state a scenario left (database rows, the gateway's ledger file, process exits and logs) into
// the checker's Snapshot.
import type { IsoDate } from '../../../src/domain/dates.ts';
import type { AttemptRow, JobRow, ProcessLog, RecurrenceRow, SeededRecurrence, Snapshot } from './checker.ts';
import type { ChangesMade } from './checkout-changes.ts';
import { query } from './cluster.ts';
import { LIMITS, STARTED, type Stack } from './stack.ts';

const STARTED_MESSAGES = new Set(Object.values(STARTED));

export async function takeSnapshot(
  stack: Stack,
  seeded: SeededRecurrence[],
  lastBusinessDate: IsoDate,
  changes: ChangesMade = { stops: [], termsChanges: [] },
): Promise<Snapshot> {
  const recurrences = await query<RecurrenceRow>(
    stack.url,
    `SELECT id::int, status, periodicidade, dia_ancora, proxima_cobranca::text, proxima_tentativa::text, ciclos_cobrados,
       falhas_consecutivas, motivo_hold, (extract(epoch FROM hold_em) * 1000)::float8 AS hold_em
     FROM checkout_recorrencias ORDER BY id`,
  );
  const attempts = await query<AttemptRow>(
    stack.url,
    `SELECT id::int, recorrencia_id::int, ciclo::text, tentativa, chave_idempotencia, status, valor_centavos::int,
       codigo_recusa, recusa_reversivel, cartao_token, (extract(epoch FROM criado_em) * 1000)::float8 AS criado_em
     FROM checkout_recorrencia_cobrancas ORDER BY id`,
  );
  const jobs = await query<JobRow>(
    stack.url,
    `SELECT id::text, name, state::text, retry_count FROM pgboss.job WHERE name NOT LIKE '\\_\\_pgboss%' ORDER BY created_on`,
  );
  const logs: ProcessLog[] = [];
  for (const slot of stack.sup.slots.values()) {
    for (let incarnation = 0; incarnation <= slot.incarnation(); incarnation++) {
      logs.push({
        slot: slot.name,
        incarnation,
        stderr: slot.stderr[incarnation] ?? '',
        started: slot.lines.some(
          (line) => line.incarnation === incarnation && STARTED_MESSAGES.has(String(line.msg)),
        ),
        fatal: slot.lines
          .filter(
            (line) => line.incarnation === incarnation && typeof line.level === 'number' && line.level >= 60,
          )
          // The message and the error's: "command failed" alone does not say what to chase.
          .map((line) => {
            const reason = (line.err as { message?: unknown } | undefined)?.message;
            return typeof reason === 'string' ? `${String(line.msg)}: ${reason}` : String(line.msg);
          }),
      });
    }
  }
  return {
    ledger: stack.gateway.ledgerFromFile(),
    seeded,
    recurrences,
    attempts,
    jobs,
    exits: [...stack.sup.exits],
    logs,
    lastBusinessDate,
    stops: changes.stops,
    termsChanges: changes.termsChanges,
    limits: LIMITS,
  };
}
