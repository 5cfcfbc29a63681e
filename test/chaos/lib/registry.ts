// The scenarios by name, for the command-line entry points and the short tier.
import { frozenWorkerScenario } from './scenario-frozen-worker.ts';
import { randomScenario } from './scenario-random.ts';
import type { ScenarioContext, ScenarioResult } from './scenario-common.ts';
import {
  afterExecutionScenario,
  crashPointsScenario,
  postgresScenario,
  schedulerRaceScenario,
} from './scenarios.ts';

export const SCENARIOS = {
  random: randomScenario,
  'crash-points': crashPointsScenario,
  postgres: postgresScenario,
  'scheduler-race': schedulerRaceScenario,
  'frozen-worker': frozenWorkerScenario,
  'after-execution': afterExecutionScenario,
} satisfies Record<string, (ctx: ScenarioContext) => Promise<ScenarioResult>>;

export type ScenarioName = keyof typeof SCENARIOS;
