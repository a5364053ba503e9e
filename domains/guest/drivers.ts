// Which frontend serves which device type in a guest, and the bookkeeping of live devices.
import type { DomainBootArgs } from '../../src/domain/bootargs.js';
import type { Domain } from '../../src/domain/runtime.js';
import type { XenstoreClient } from '../../src/xenstore/client.js';
import { VbdFrontend } from './vbd-xenbus.js';
import { VifFrontend } from './vif-xenbus.js';

export interface DeviceDriver {
  add(path: string): void;
  remove(path: string): void;
  shutdown(): Promise<void>;
}

interface Closable {
  close(): Promise<void>;
}

function driver(type: string, start: (path: string) => Promise<Closable>, log: (l: string) => void): DeviceDriver {
  const live = new Map<string, Promise<Closable | null>>();
  return {
    add(path) {
      live.set(
        path,
        start(path).catch((e: Error) => {
          log(`${type} ${path}: ${e.message}`);
          return null;
        }),
      );
    },
    remove(path) {
      const d = live.get(path);
      live.delete(path);
      void d?.then((x) => x?.close());
    },
    async shutdown() {
      for (const d of live.values()) await (await d)?.close().catch(() => undefined);
      live.clear();
    },
  };
}

export function frontendDrivers(dom: Domain, xs: XenstoreClient, args: DomainBootArgs, log: (l: string) => void): Record<string, DeviceDriver> {
  return {
    vbd: driver('vbd', (p) => VbdFrontend.start(dom, xs, p, args, log), log),
    vif: driver('vif', (p) => VifFrontend.start(dom, xs, p, log), log),
  };
}
