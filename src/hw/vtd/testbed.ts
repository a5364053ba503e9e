// A unit wired to sparse memory with an OS-side driver and tables, as tests and the bench need
// it: the same steps hv takes at boot (root table, optional queued invalidation, TE).

import type { ContextEntry } from '../../abi/vtd-entries.js';
import { TT_UNTRANSLATED } from '../../abi/vtd-entries.js';
import type { FaultInfo } from './faults.js';
import { SecondLevelTable } from '../../../iommu/vtd/pagetable.js';
import { BumpFrames, SparseMemory } from '../../memory/physmem.js';
import { RootTable } from '../../../iommu/vtd/root-table.js';
import { VtdDriver } from '../../../iommu/vtd/driver.js';
import type { InterruptMessage, VtdUnitOptions } from './unit.js';
import { VtdUnit } from './unit.js';

export interface TestbedOptions extends VtdUnitOptions {
  /** Bytes of physical memory; default 8 GiB (sparse, so only touched pages cost anything). */
  memSize?: number;
  /** Where table frames come from; default 1 MiB upward. */
  tablesAt?: number;
  queued?: boolean;
  /** Leave translation off after setting the root table. */
  noEnable?: boolean;
}

export interface Testbed {
  mem: SparseMemory;
  frames: BumpFrames;
  unit: VtdUnit;
  drv: VtdDriver;
  root: RootTable;
  faults: FaultInfo[];
  interrupts: InterruptMessage[];
  /** Creates second-level tables and a present context entry for bus/devfn. */
  attach(bus: number, devfn: number, did: number, opts?: Partial<ContextEntry> & { levels?: 3 | 4 }): SecondLevelTable;
  logs: string[];
}

export function makeTestbed(opts: TestbedOptions = {}): Testbed {
  const mem = new SparseMemory(opts.memSize ?? 2 ** 33);
  const frames = new BumpFrames(mem, opts.tablesAt ?? 0x100000);
  const faults: FaultInfo[] = [];
  const interrupts: InterruptMessage[] = [];
  const logs: string[] = [];
  const unit = new VtdUnit(mem, {
    ...opts,
    log: (m) => logs.push(m),
    onFault: (f) => faults.push(f),
    onInterrupt: (m) => interrupts.push(m),
  });
  const drv = new VtdDriver(unit, mem, frames);
  const root = new RootTable(mem, frames);
  drv.setRootTable(root.pa);
  if (opts.queued) drv.enableQueuedInvalidation();
  if (!opts.noEnable) drv.enableTranslation();
  const attach = (bus: number, devfn: number, did: number, o: Partial<ContextEntry> & { levels?: 3 | 4 } = {}): SecondLevelTable => {
    const levels = o.levels ?? 4;
    const table = new SecondLevelTable(mem, frames, levels, unit.caps.addressWidth);
    root.setContext(bus, devfn, {
      present: o.present ?? true,
      fpd: o.fpd ?? false,
      tt: o.tt ?? TT_UNTRANSLATED,
      slptptr: o.slptptr ?? table.root,
      aw: o.aw ?? levels - 2,
      did,
    });
    return table;
  };
  return { mem, frames, unit, drv, root, faults, interrupts, attach, logs };
}

export function sidOf(bus: number, dev: number, fn: number): number {
  return (bus << 8) | (dev << 3) | fn;
}
