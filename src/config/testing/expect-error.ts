// Test helper: run fn, require a ConfigError, and return it so a test can check where and what.
import { ConfigError } from '../errors.js';

export function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw new Error(`expected a ConfigError, got ${String(e)}`);
  }
  throw new Error('expected a ConfigError, but nothing was thrown');
}
