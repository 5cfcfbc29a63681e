// What the operator functions (shared by the admin API and the command line) need: the same handles the
// task runners get.
import type { TaskDeps } from '../tasks/task.ts';

export type OpsDeps = TaskDeps;
