// Which frontend serves which device type in a guest.
import type { Domain } from '../../src/domain/runtime.js';
import type { XenstoreClient } from '../../src/xenstore/client.js';
import type { DomainBootArgs } from '../../src/domain/bootargs.js';

export interface DeviceDriver {
  add(path: string): void;
  remove(path: string): void;
  shutdown(): Promise<void>;
}

export function frontendDrivers(dom: Domain, xs: XenstoreClient, args: DomainBootArgs, log: (l: string) => void): Record<string, DeviceDriver> {
  void dom;
  void xs;
  void args;
  void log;
  return {};
}
