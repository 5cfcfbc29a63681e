// The fake gateway's memory: one ledger entry per EXECUTED charge, which is also the stored response
// replayed for its idempotency key. With a file, entries are appended as JSON lines as they happen and
// read back on start, so the ledger and the idempotency store survive a restart of the fake.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { z } from 'zod';
import { declineMessage } from './fake-gateway-outcomes.ts';
import type { ChargeRequestBody, ChargeResponseBody } from './wire.ts';

const ledgerEntrySchema = z.object({
  seq: z.number().int().positive(),
  key: z.string(),
  recorrenciaId: z.string(),
  ciclo: z.string(),
  tentativa: z.number().int(),
  amountCents: z.number().int(),
  currency: z.string(),
  status: z.enum(['approved', 'declined']),
  code: z.string().optional(),
  reversible: z.boolean().optional(),
  chargeId: z.string(),
  at: z.string(),
  /** Digest of the parameters a replay must repeat (the card token is never stored, only hashed in here). */
  fingerprint: z.string(),
});
export type LedgerEntry = z.infer<typeof ledgerEntrySchema>;

/** The parameters that must match for a repeated key to be a replay rather than a reuse (409). */
export function fingerprintOf(body: ChargeRequestBody): string {
  return createHash('sha256')
    .update(
      JSON.stringify([
        body.amount_cents,
        body.currency,
        body.card_token,
        body.metadata.recorrencia_id,
        body.metadata.ciclo,
      ]),
    )
    .digest('base64url')
    .slice(0, 22);
}

/** The 200 body a charge got, rebuilt from its entry: first response and replays are identical. */
export function responseBodyOf(entry: LedgerEntry): ChargeResponseBody {
  if (entry.status === 'approved') {
    return {
      status: 'approved',
      charge_id: entry.chargeId,
      amount_cents: entry.amountCents,
      currency: entry.currency,
      idempotency_key: entry.key,
    };
  }
  const code = entry.code ?? '05';
  return {
    status: 'declined',
    charge_id: entry.chargeId,
    code,
    reversible: entry.reversible ?? true,
    message: declineMessage(code),
    idempotency_key: entry.key,
  };
}

/** Reads a ledger file; a torn last line (the fake was killed mid-write) is dropped, anything else throws. */
function loadEntries(file: string): LedgerEntry[] {
  if (!existsSync(file)) return [];
  const lines = readFileSync(file, 'utf8').split('\n');
  const entries: LedgerEntry[] = [];
  lines.forEach((line, index) => {
    if (line.trim() === '') return;
    let parsed: ReturnType<typeof ledgerEntrySchema.safeParse>;
    try {
      parsed = ledgerEntrySchema.safeParse(JSON.parse(line));
    } catch {
      parsed = ledgerEntrySchema.safeParse(undefined);
    }
    if (parsed.success) entries.push(parsed.data);
    else if (lines.slice(index + 1).some((rest) => rest.trim() !== '')) {
      throw new Error(`${file}:${index + 1}: not a fake gateway ledger entry`);
    }
  });
  return entries;
}

export type Ledger = ReturnType<typeof createLedger>;

export function createLedger(file: string | undefined) {
  const entries = file === undefined ? [] : loadEntries(file);
  const byKey = new Map(entries.map((entry) => [entry.key, entry]));
  let nextSeq = entries.reduce((max, entry) => Math.max(max, entry.seq), 0) + 1;
  // Synchronous appends: an entry is in the file before its response leaves, even if the fake is killed.
  let fd = file === undefined ? undefined : openSync(file, 'a');
  let closed = false;

  return {
    find: (key: string): LedgerEntry | undefined => byKey.get(key),
    entries: (): readonly LedgerEntry[] => entries,

    /** Appends one executed charge. The caller holds the key's lock and checked `find` first. */
    record(fields: Omit<LedgerEntry, 'seq' | 'at'>): LedgerEntry {
      // A request still in flight when the fake closes must not write to a descriptor the OS may reuse.
      if (closed) throw new Error('fake gateway ledger is closed');
      const entry: LedgerEntry = { seq: nextSeq, ...fields, at: new Date().toISOString() };
      if (fd !== undefined) writeSync(fd, `${JSON.stringify(entry)}\n`);
      nextSeq += 1;
      entries.push(entry);
      byKey.set(entry.key, entry);
      return entry;
    },

    /** Forgets everything, in the file too. */
    clear(): void {
      if (fd !== undefined) ftruncateSync(fd, 0);
      entries.length = 0;
      byKey.clear();
      nextSeq = 1;
    },

    close(): void {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
      closed = true;
    },
  };
}
