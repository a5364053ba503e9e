// Where things are: the package root (found from this module, bundled or not), the embedded
// default system, and a system's state directory with its sockets and logs.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'examples'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the ringside package root (package.json next to examples/)');
    dir = up;
  }
}

export const defaultSystem = () => join(packageRoot(), 'examples', 'default');
export const hvBundle = () => join(packageRoot(), 'dist', 'domains', 'hv.js');

export { statePaths, type StatePaths } from '../control/paths.js';
