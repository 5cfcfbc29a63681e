// `seed --count N [--date YYYY-MM-DD] [--sellers S] [--seed X] [--demo]`: inserts N realistic recurrences due
// on the date (default: today's business date), in bulk. Used by the demo and the benchmark. The next daily
// run charges them through whatever gateway the workers use, so the production image (NODE_ENV=production)
// seeds only with --demo, the operator's word that this database is a demo one.
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { seedRecurrences } from '../db/seed.ts';
import { businessDate, isoDate } from '../domain/dates.ts';
import { AppError } from '../errors.ts';
import { connectToMigratedDatabase } from '../roles/connect.ts';
import type { RoleContext } from '../roles/context.ts';

const seedArgs = z.object({
  count: z.coerce.number().int().min(1).max(10_000_000),
  date: isoDate,
  sellers: z.coerce.number().int().min(1).max(1_000_000),
  seed: z.coerce.number().int().min(0).max(1_000_000_000),
});

export async function seedCommand(ctx: RoleContext, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      count: { type: 'string' },
      date: { type: 'string' },
      sellers: { type: 'string', default: '100' },
      seed: { type: 'string', default: '1' },
      demo: { type: 'boolean', default: false },
    },
  });
  if (process.env.NODE_ENV === 'production' && !values.demo) {
    throw new AppError(
      'INVALID_INPUT',
      'seed: refused with NODE_ENV=production: the seeded recurrences would be charged by the next run. ' +
        'Add --demo if this database is a demo one.',
    );
  }
  const parsed = seedArgs.safeParse({
    ...values,
    date: values.date ?? businessDate(new Date(), ctx.config.timeZone),
  });
  if (!parsed.success) {
    throw new AppError(
      'INVALID_INPUT',
      `seed --count N [--date YYYY-MM-DD] [--sellers S] [--seed X] [--demo]: ${z.prettifyError(parsed.error)}`,
    );
  }
  const pool = await connectToMigratedDatabase(ctx, 'cli');
  try {
    const started = Date.now();
    const result = await seedRecurrences(pool, parsed.data);
    const seconds = (Date.now() - started) / 1000;
    process.stdout.write(
      `${JSON.stringify({ ...result, date: parsed.data.date, seconds, rowsPerSecond: Math.round(result.inserted / seconds) }, null, 2)}\n`,
    );
  } finally {
    await pool.end();
  }
  return 0;
}
