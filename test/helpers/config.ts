// Reads the problems a ConfigError names, so tests can assert which variables were refused.
import { ConfigError } from '../../src/config.ts';

export function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}
