// `import --file export.(csv|jsonl) [--cutover YYYY-MM-DD [--replace-cutover]] [--dry-run]
// [--map ours=theirs,...] [--errors FILE]`: loads the old system's export of checkout_recorrencias (see the README for the columns
// and a sample export command). Prints the counts as JSON; exits 1 when lines were rejected (the valid ones
// were imported all the same), 2 on bad arguments or an unreadable file.
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { isoDate } from '../domain/dates.ts';
import { LEGACY_COLUMNS, type LegacyColumn } from '../domain/legacy-import.ts';
import { AppError } from '../errors.ts';
import { importLegacyExport } from '../ops/legacy-import.ts';
import type { RoleContext } from '../roles/context.ts';
import { commandLineActor, withCommandDeps } from './command-deps.ts';

const USAGE =
  'import --file export.(csv|jsonl) [--cutover YYYY-MM-DD [--replace-cutover]] [--dry-run] [--format csv|jsonl] [--map ours=theirs,...] [--errors FILE]';

/** "token_cartao=card_token,valor=amount" -> { token_cartao: 'card_token', valor: 'amount' }. */
export function parseMapping(value: string | undefined): Partial<Record<LegacyColumn, string>> {
  const mapping: Partial<Record<LegacyColumn, string>> = {};
  for (const pair of (value ?? '').split(',').filter((part) => part.trim() !== '')) {
    const [ours = '', theirs = ''] = pair.split('=').map((part) => part.trim());
    if (!(LEGACY_COLUMNS as readonly string[]).includes(ours) || theirs === '') {
      throw new AppError(
        'INVALID_INPUT',
        `--map: "${pair}" is not ours=theirs with ours one of ${LEGACY_COLUMNS.join(', ')}`,
      );
    }
    mapping[ours as LegacyColumn] = theirs;
  }
  return mapping;
}

export async function importCommand(ctx: RoleContext, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      file: { type: 'string' },
      cutover: { type: 'string' },
      'replace-cutover': { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
      format: { type: 'string' },
      map: { type: 'string' },
      errors: { type: 'string' },
    },
  });
  if (values.file === undefined) throw new AppError('INVALID_INPUT', `usage: ${USAGE}`);
  const cutover = values.cutover === undefined ? null : isoDate.safeParse(values.cutover);
  if (cutover !== null && !cutover.success) {
    throw new AppError('INVALID_INPUT', `--cutover: ${z.prettifyError(cutover.error)}`);
  }
  const format = z.enum(['csv', 'jsonl']).optional().safeParse(values.format);
  if (!format.success) throw new AppError('INVALID_INPUT', '--format: csv or jsonl');
  const options = {
    file: values.file,
    format: format.data,
    cutover: cutover === null ? null : cutover.data,
    replaceCutover: values['replace-cutover'],
    dryRun: values['dry-run'],
    mapping: parseMapping(values.map),
  };
  const report = await withCommandDeps(ctx, (deps) => importLegacyExport(deps, commandLineActor(), options));
  if (values.errors !== undefined) {
    await writeFile(values.errors, report.erros.map((error) => `${JSON.stringify(error)}\n`).join(''));
  }
  ctx.log.info(
    {
      file: values.file,
      dryRun: options.dryRun,
      rejected: report.rejeitadas,
      rowsPerSecond: report.linhas_por_segundo,
    },
    'import finished',
  );
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  return report.rejeitadas > 0 ? 1 : 0;
}
