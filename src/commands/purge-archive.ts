// `purge-archive [--older-than-days N] [--dry-run]`: the explicit step that deletes archived recurrences (and
// their attempts and skipped cycles) archived (`arquivado_em`) longer ago than the archive's retention
// (ARCHIVE_RETENTION_DAYS, default 1825). Never scheduled. --dry-run prints what it would delete and deletes
// nothing.
import { parseArgs } from 'node:util';
import { countPurgeable, purgeArchiveBatch } from '../db/arquivo.ts';
import { insertAudit } from '../db/pauses.ts';
import { AppError } from '../errors.ts';
import { connectToMigratedDatabase } from '../roles/connect.ts';
import type { RoleContext } from '../roles/context.ts';
import { commandLineActor } from './command-deps.ts';

export async function purgeArchiveCommand(ctx: RoleContext, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: { 'older-than-days': { type: 'string' }, 'dry-run': { type: 'boolean', default: false } },
  });
  const days =
    values['older-than-days'] === undefined
      ? ctx.config.archive.retentionDays
      : Number(values['older-than-days']);
  if (!Number.isInteger(days) || days < 1)
    throw new AppError('INVALID_INPUT', '--older-than-days must be a positive integer');
  const pool = await connectToMigratedDatabase(ctx, 'cli');
  const totals = { recorrencias: 0, cobrancas: 0, ciclos_pulados: 0 };
  try {
    const toPurge = await countPurgeable(pool, days);
    if (values['dry-run']) {
      process.stdout.write(`${JSON.stringify({ olderThanDays: days, dryRun: true, toPurge }, null, 2)}\n`);
      return 0;
    }
    // Audited before the first delete, with what it is about to delete: the rows are gone for good, even if
    // the command stops half-way.
    await insertAudit(pool, {
      who: commandLineActor(),
      action: 'purge_archive',
      target: 'checkout_recorrencias_arquivo',
      details: { olderThanDays: days, toPurge },
    });
    for (;;) {
      const batch = await purgeArchiveBatch(pool, days, ctx.config.archive.batchSize);
      totals.recorrencias += batch.recorrencias;
      totals.cobrancas += batch.cobrancas;
      totals.ciclos_pulados += batch.ciclos_pulados;
      if (batch.recorrencias < ctx.config.archive.batchSize) break;
    }
  } finally {
    await pool.end();
  }
  ctx.log.info({ olderThanDays: days, purged: totals }, 'archive purged');
  process.stdout.write(`${JSON.stringify({ olderThanDays: days, purged: totals }, null, 2)}\n`);
  return 0;
}
