// Creating and listing recurrences through the API (the checkout's calls). A create honours an
// Idempotency-Key: the key is claimed in the transaction that inserts the recurrence, so a retried request
// gets the first answer and two racing requests create one recurrence.
import { createHash } from 'node:crypto';
import { claimIdempotencyKey, recordIdempotentAnswer } from '../db/idempotencia.ts';
import { insertAudit } from '../db/pauses.ts';
import {
  insertNewRecurrence,
  listRecurrencesPage,
  type NewRecurrence,
  type RecurrenceFilter,
} from '../db/recorrencias-gestao.ts';
import type { Recurrence } from '../db/recorrencias.ts';
import { businessDate } from '../domain/dates.ts';
import { scheduleProblem } from '../domain/recurrence-rules.ts';
import { AppError } from '../errors.ts';
import type { OpsDeps } from './deps.ts';
import { maskToken } from './recurrences.ts';
import type { Actor } from './actor.ts';

const CREATE_OPERATION = 'POST /recorrencias';

/** The recurrence as the API shows it: the card token reference masked. */
export function presentRecurrence(recurrence: Recurrence) {
  return { ...recurrence, cartao_token: maskToken(recurrence.cartao_token) };
}

/** JSON with object keys sorted, so the same body hashes the same whatever the order it was sent in. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, field]) => field !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, field]) => `${JSON.stringify(key)}:${canonicalJson(field)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Refuses what the schema's CHECKs would, with a message naming the field, plus a first charge in the past. */
function validateNew(deps: OpsDeps, input: NewRecurrence): void {
  const problem = scheduleProblem(input, input.proxima_cobranca);
  if (problem !== null) throw new AppError('INVALID_INPUT', problem);
  const today = businessDate(deps.now(), deps.config.timeZone);
  if (input.proxima_cobranca < today) {
    throw new AppError(
      'INVALID_INPUT',
      `proxima_cobranca: ${input.proxima_cobranca} is before today's business date ${today}`,
    );
  }
}

export type CreateAnswer = { status: number; body: unknown; replayed: boolean };

/**
 * Creates a recurrence (201). With `idempotencyKey`, a repeat of the same request by the same token name
 * answers the first result (same status and body, `replayed`); the same key with another body is refused
 * with 422. Validation errors release the key (nothing is stored for them).
 */
export async function createRecurrence(
  deps: OpsDeps,
  who: Actor,
  input: NewRecurrence,
  idempotencyKey: string | undefined,
): Promise<CreateAnswer> {
  const requestHash = createHash('sha256').update(canonicalJson(input)).digest('hex');
  const answer = await deps.pool.transaction(async (tx): Promise<CreateAnswer> => {
    if (idempotencyKey !== undefined) {
      const stored = await claimIdempotencyKey(tx, {
        who: who.name,
        key: idempotencyKey,
        operation: CREATE_OPERATION,
        requestHash,
      });
      if (stored !== null) {
        if (stored.operacao !== CREATE_OPERATION || stored.hash_requisicao !== requestHash) {
          throw new AppError(
            'UNPROCESSABLE',
            'Idempotency-Key was already used with a different request: use a new key for a new request',
            { details: { error: 'idempotency_key_reused' } },
          );
        }
        return { status: stored.status_resposta, body: stored.corpo_resposta, replayed: true };
      }
    }
    validateNew(deps, input);
    const recurrence = await insertNewRecurrence(tx, input);
    // Through JSON once, so the first answer is exactly what a replay reads back.
    const body: unknown = JSON.parse(JSON.stringify({ recorrencia: presentRecurrence(recurrence) }));
    if (idempotencyKey !== undefined) {
      await recordIdempotentAnswer(tx, {
        who: who.name,
        key: idempotencyKey,
        status: 201,
        body,
        recurrenceId: recurrence.id,
      });
    }
    await insertAudit(tx, {
      who,
      action: 'create_recurrence',
      target: `recorrencia:${recurrence.id}`,
      details: {
        vendedor_id: input.vendedor_id,
        referencia_externa: input.referencia_externa,
        idempotency_key: idempotencyKey ?? null,
      },
    });
    return { status: 201, body, replayed: false };
  });
  if (!answer.replayed) deps.log.info({ by: who, idempotencyKey }, 'recurrence created');
  return answer;
}

export function encodeIdCursor(id: number): string {
  return Buffer.from(`r${id}`).toString('base64url');
}

export function decodeIdCursor(cursor: string): number | null {
  const match = /^r(\d{1,16})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  const id = match?.[1] === undefined ? NaN : Number(match[1]);
  return Number.isSafeInteger(id) && id > 0 ? id : null;
}

/** One page of recurrences, newest first, with the cursor of the next page (null on the last one). */
export async function listRecurrences(
  deps: OpsDeps,
  filter: RecurrenceFilter,
  page: { limit: number; cursor?: string },
) {
  const afterId = page.cursor === undefined ? null : decodeIdCursor(page.cursor);
  if (afterId === null && page.cursor !== undefined) {
    throw new AppError('INVALID_INPUT', 'cursor: not a cursor returned by this API');
  }
  // One row more than asked tells whether another page exists.
  const rows = await listRecurrencesPage(deps.pool, filter, afterId, page.limit + 1);
  const shown = rows.slice(0, page.limit);
  const last = shown.at(-1);
  return {
    recorrencias: shown.map(presentRecurrence),
    nextCursor: rows.length > page.limit && last !== undefined ? encodeIdCursor(last.id) : null,
  };
}
