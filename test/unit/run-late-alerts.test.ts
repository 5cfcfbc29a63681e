// Which daily tasks are scheduled too late in the evening for their run-late alert to fire before midnight.
import t from 'tap';
import { loadConfig } from '../../src/config.ts';
import { LATEST_ALERTED_TIME, runLateAlertsThatCannotFire } from '../../src/ops/run-late-alerts.ts';

const base = { DATABASE_URL: 'postgres://u@localhost/db' };
// A Sunday: the 7 dates checked run to Saturday.
const from = '2031-03-09';

t.test('the default times leave every alert room to fire', async (t) => {
  t.same(runLateAlertsThatCannotFire(loadConfig(base), from), []);
  t.equal(LATEST_ALERTED_TIME, '23:27');
});

t.test('a daily task at 23:28 or later is named with its alert; 23:27 is not', async (t) => {
  const late = loadConfig({ ...base, CRON_NOTIFICAR_RECORRENCIAS_HOLD: '45 23 * * *' });
  t.same(runLateAlertsThatCannotFire(late, from), [
    { task: 'notificar_recorrencias_hold', alert: 'RecorrenciasNoticeRunLate', time: '23:45' },
  ]);
  const edge = loadConfig({
    ...base,
    CRON_PROCESSAR_RECORRENCIAS_DO_DIA: '27 23 * * *',
    CRON_RETENTAR_COBRANCAS_FALHADAS: '28 23 * * *',
  });
  t.same(runLateAlertsThatCannotFire(edge, from), [
    { task: 'retentar_cobrancas_falhadas', alert: 'RecorrenciasRetryRunLate', time: '23:28' },
  ]);
});

t.test('a schedule late on only some days is caught on those days', async (t) => {
  // Every day at 08:00 and 23:00: the alert follows the day's first run. Saturdays only, at 23:50: late.
  const twice = loadConfig({ ...base, CRON_PROCESSAR_RECORRENCIAS_DO_DIA: '0 8,23 * * *' });
  t.same(runLateAlertsThatCannotFire(twice, from), [], 'the first run of each day is 08:00');
  const saturday = loadConfig({ ...base, CRON_RETENTAR_COBRANCAS_FALHADAS: '50 23 * * 6' });
  t.same(runLateAlertsThatCannotFire(saturday, from), [
    { task: 'retentar_cobrancas_falhadas', alert: 'RecorrenciasRetryRunLate', time: '23:50' },
  ]);
});

t.test('the weekly cleanup has no time-of-day alert and is never named', async (t) => {
  const cleanup = loadConfig({ ...base, CRON_LIMPAR_RECORRENCIAS_ANTIGAS: '59 23 * * 0' });
  t.same(runLateAlertsThatCannotFire(cleanup, from), []);
});
