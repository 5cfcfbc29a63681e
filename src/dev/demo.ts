// The development demo `npm start` runs once the service is up: on an empty database it seeds a small set
// of recurrences due today (some with cards the fake gateway declines), runs processar_recorrencias_do_dia,
// waits for the charges to settle and prints a one-screen summary.
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'slonik';
import { z } from 'zod';
import { withCommandDeps } from '../commands/command-deps.ts';
import { countUnfinishedJobs } from '../db/jobs.ts';
import { seedRecurrences } from '../db/seed.ts';
import { recurrenceStats } from '../db/stats.ts';
import { businessDate } from '../domain/dates.ts';
import { formatCents } from '../domain/money.ts';
import { CHARGE_QUEUE } from '../queue/task-names.ts';
import type { RoleContext } from '../roles/context.ts';
import { runPeriodicTask } from '../tasks/periodic-runner.ts';
import { processarRecorrenciasDoDia } from '../tasks/processar-recorrencias-do-dia.ts';

export async function runDemo(ctx: RoleContext): Promise<void> {
  await withCommandDeps(ctx, async (deps) => {
    const today = businessDate(deps.now(), deps.config.timeZone);
    const existing = await deps.pool.oneFirst(
      sql.type(z.object({ n: z.number() }))`SELECT count(*)::int AS n FROM checkout_recorrencias`,
    );
    if (existing === 0) {
      await seedRecurrences(deps.pool, { count: 36, date: today, sellers: 4, seed: 7 });
      await seedRecurrences(deps.pool, {
        count: 3,
        date: today,
        sellers: 4,
        seed: 8,
        tokenPrefix: 'tok_recusa_reversivel_',
      });
      await seedRecurrences(deps.pool, {
        count: 2,
        date: today,
        sellers: 4,
        seed: 9,
        tokenPrefix: 'tok_recusa_irreversivel_',
      });
      ctx.log.info({ recurrences: 41, date: today }, 'empty database: demo recurrences seeded');
    }
    const run = await runPeriodicTask(processarRecorrenciasDoDia, deps, {
      date: today,
      force: false,
      jobId: null,
      attempt: 1,
      signal: ctx.signal,
    });
    const deadline = Date.now() + 60_000;
    while ((await countUnfinishedJobs(deps.pool, CHARGE_QUEUE)) > 0 && Date.now() < deadline) {
      ctx.signal.throwIfAborted();
      await sleep(250);
    }
    const stats = await recurrenceStats(deps.pool, today);
    const t = stats.tentativas_na_data;
    const byStatus = Object.entries(stats.por_status)
      .map(([status, n]) => `${status} ${n}`)
      .join('   ');
    const lines = [
      `── recorrencias: demo for business date ${today} ${'─'.repeat(30)}`,
      `processar_recorrencias_do_dia: ${run.status === 'succeeded' ? JSON.stringify(run.counts) : `skipped (${run.reason})`}`,
      `charges on ${today}:  approved ${t.aprovada.quantidade} (${formatCents(t.aprovada.valor_centavos)})   ` +
        `declined ${t.recusada.quantidade} (${formatCents(t.recusada.valor_centavos)})   ` +
        `rejected ${t.rejeitada.quantidade}   pending ${t.pendente.quantidade}`,
      `recurrences:  ${byStatus}`,
      `on hold ${stats.em_hold}   waiting for a retry ${stats.aguardando_retentativa}   still due ${stats.devidas_na_data}`,
      '─'.repeat(78),
    ];
    process.stdout.write(`\n${lines.join('\n')}\n\n`);
  });
}
