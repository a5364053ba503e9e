// hw's devices as the owners see them: a model that breaks stops alone, a model that cannot be
// built leaves nothing behind, and a previous owner's page reads all-ones once the old model has
// nothing in flight.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { waitFor } from '../../src/testing/until.js';
import { native } from '../../src/native/index.js';
import { NvmeModel } from '../../src/hw/nvme.js';
import { CQE, NVME_CC_EN, NVME_CFS, NVME_CSTS_CFS, NVME_CSTS_RDY, NVME_OP, NVME_REG, NVME_SC, SQE, statusCode } from '../../src/abi/nvme.js';
import { HeldMedium, makeRig, type Rig } from '../../src/hw/testrig.js';
import { NIC_CTRL_EN, NIC_FATAL, NIC_REG, NIC_STATUS_FATAL } from '../../src/abi/nic.js';
import { VtdUnit } from '../../src/hw/vtd/unit.js';
import { HwDevices } from './devices.js';
import { HwDmaMemory } from './dma-memory.js';
import { HV_AREA_BYTES } from '../../src/hw/phys-map.js';
import type { HwInit } from '../../src/hw/wire.js';

interface TestTransport {
  /** what attach takes (and closes) */
  fds: number[];
  /** the owner's view of the page, still mapped after hw let go of it */
  regs: Int32Array;
  doorbell: number;
  irq: number;
}


/**
 * An owner driving the controller by hand through its register page: one 8-entry queue pair in
 * the rig's driver memory, and writes of one page.
 */
function owner(t: TestTransport, rig: Rig): { enable(): void; write(slba: number, fill: number): void; completed(): number | null } {
  const sq = rig.driverMem.alloc(1);
  const cq = rig.driverMem.alloc(1);
  const buf = rig.driverMem.alloc(1);
  const sqDv = new DataView(sq.bytes.buffer, sq.bytes.byteOffset, 4096);
  const cqDv = new DataView(cq.bytes.buffer, cq.bytes.byteOffset, 4096);
  let tail = 0;
  let head = 0;
  const r = t.regs;
  return {
    enable() {
      r[NVME_REG.AQA >> 2] = 7 | (7 << 16);
      r[NVME_REG.ASQ >> 2] = sq.iova;
      r[NVME_REG.ACQ >> 2] = cq.iova;
      r[NVME_REG.CC >> 2] = NVME_CC_EN;
      native.eventfdSignal(t.doorbell);
    },
    write(slba, fill) {
      buf.bytes.fill(fill);
      const at = tail * 64;
      for (let i = 0; i < 64; i += 4) sqDv.setUint32(at + i, 0, true);
      sqDv.setUint32(at + SQE.CDW0, NVME_OP.WRITE | (tail << 16), true);
      sqDv.setUint32(at + SQE.NSID, 1, true);
      sqDv.setUint32(at + SQE.PRP1, buf.iova, true);
      sqDv.setUint32(at + SQE.CDW10, slba, true);
      sqDv.setUint32(at + SQE.CDW12, 7, true); // 8 blocks: the page
      tail++;
      r[NVME_REG.SQ0TDBL >> 2] = tail;
      native.eventfdSignal(t.doorbell);
    },
    /** the status of the next completion, or null while there is none */
    completed() {
      const st = cqDv.getUint16(head * 16 + CQE.STATUS, true);
      if ((st & 1) !== 1) return null;
      head++;
      r[NVME_REG.CQ0HDBL >> 2] = head;
      return statusCode(st);
    },
  };
}

function mappings(name: string): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes(`/memfd:${name}`)).length;
}

describe('hw devices', () => {
  let dir: string;
  let mem: HwDmaMemory;
  let devs: HwDevices;
  let logs: string[];
  const owned: TestTransport[] = [];
  let area: number;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'hwdev-'));
    area = native.memfdCreate('hwdev-area', HV_AREA_BYTES);
    mem = new HwDmaMemory(area);
    logs = [];
    const init: HwInit = {
      iommu: { enabled: true, addressWidth: 48, cachingMode: false },
      devices: [
        { sid: 0x100, name: '0000:01:00.0', kind: 'nvme', medium: join(dir, 'disk.img'), sizeBytes: 1 << 20 },
        { sid: 0x200, name: '0000:02:00.0', kind: 'nic', mac: [2, 0, 0, 0, 0, 1], wire: { kind: 'none' } },
      ],
    };
    devs = new HwDevices(init, new VtdUnit(mem), mem, (l) => logs.push(l));
  });
  afterEach(() => {
    vi.restoreAllMocks();
    devs.close();
    mem.close();
    native.close(area);
    for (const t of owned.splice(0)) {
      native.munmap(t.regs.buffer as ArrayBuffer);
      native.close(t.doorbell);
      native.close(t.irq);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  function transport(name = 'hwdev-bar'): TestTransport {
    const bar = native.memfdCreate(name, 4096);
    const regs = new Int32Array(native.mmap(bar, 4096, true));
    const doorbell = native.eventfd();
    const irq = native.eventfd();
    const t = { fds: [bar, native.dup(doorbell), native.dup(irq)], regs, doorbell, irq };
    owned.push(t);
    return t;
  }

  it('an exception in one device model stops that device (fatal status, logged by name) and hw serves the others', async () => {
    const nvme = transport();
    devs.attach(0, nvme.fds);
    vi.spyOn(NvmeModel.prototype, 'kick').mockImplementationOnce(() => {
      throw new Error('a bug in the model');
    });
    native.eventfdSignal(nvme.doorbell);
    await waitFor(() => (nvme.regs[NVME_REG.CSTS >> 2] & NVME_CSTS_CFS) !== 0);
    expect(nvme.regs[NVME_REG.CFS_REASON >> 2]).toBe(NVME_CFS.INTERNAL);
    expect(logs.join('\n')).toMatch(/0000:01:00\.0: device model failed \(a bug in the model\)/);
    // the NIC next to it still hears its doorbell: a ring configuration it refuses
    const nic = transport();
    devs.attach(1, nic.fds);
    devs.setBusMaster(1, true);
    nic.regs[NIC_REG.CTRL >> 2] = NIC_CTRL_EN;
    native.eventfdSignal(nic.doorbell);
    await waitFor(() => (nic.regs[NIC_REG.STATUS >> 2] & NIC_STATUS_FATAL) !== 0);
    expect(nic.regs[NIC_REG.FATAL_REASON >> 2]).toBe(NIC_FATAL.BAD_RING_CONFIG);
  });

  it('a model that cannot be built leaves no descriptor, mapping or watcher behind', () => {
    const t = transport('hwdev-ctor-bar');
    const fdsBefore = readdirSync('/proc/self/fd').length;
    expect(mappings('hwdev-ctor-bar')).toBe(1); // the owner's own
    vi.spyOn(NvmeModel.prototype, 'reset').mockImplementationOnce(() => {
      throw new Error('cannot build');
    });
    expect(() => devs.attach(0, t.fds)).toThrow(/cannot build/);
    expect(readdirSync('/proc/self/fd').length).toBe(fdsBefore - 3);
    expect(mappings('hwdev-ctor-bar')).toBe(1);
  });

  it("a previous owner's page reads all-ones, and its interrupt fires, only once the old model has nothing in flight", () => {
    const first = transport();
    devs.attach(0, first.fds);
    let idle: (() => void) | null = null;
    vi.spyOn(NvmeModel.prototype, 'whenIdle').mockImplementationOnce((cb: () => void) => {
      idle = cb; // transfers still running
    });
    const second = transport();
    devs.attach(0, second.fds);
    expect(first.regs[NVME_REG.CSTS >> 2]).toBe(0);
    expect(native.eventfdRead(first.irq)).toBe(0);
    let retired = false;
    devs.whenRetired(() => (retired = true));
    expect(retired).toBe(false);
    (idle as unknown as () => void)();
    expect(first.regs.every((v) => v === -1)).toBe(true);
    expect(native.eventfdRead(first.irq)).toBe(1);
    expect(retired).toBe(true);
    // the new owner's page is live
    expect(second.regs[NVME_REG.CSTS >> 2]).toBe(0);
    // a NIC moves nothing after its doorbell returns: its old page goes at once
    const nicA = transport();
    devs.attach(1, nicA.fds);
    devs.attach(1, transport().fds);
    expect(nicA.regs[NIC_REG.STATUS >> 2]).toBe(-1);
    // and when hw stops, every owner's page goes the same way
    devs.close();
    expect(second.regs[NVME_REG.CSTS >> 2]).toBe(-1);
    expect(native.eventfdRead(second.irq)).toBe(1);
  });

  it("a new owner's controller comes up only once the previous owner's writes returned, so none lands over its data", async () => {
    const rig = makeRig({ bdf: '01:00.0' });
    const held = new HeldMedium();
    const path = join(dir, 'held.img');
    const init: HwInit = {
      iommu: { enabled: true, addressWidth: 48, cachingMode: false },
      devices: [{ sid: rig.sid, name: '0000:01:00.0', kind: 'nvme', medium: path, sizeBytes: 1 << 20 }],
    };
    const hd = new HwDevices(init, rig.unit, rig.mem, (l) => logs.push(l), { mediumIo: held });
    try {
      hd.setBusMaster(0, true);
      const first = transport();
      hd.attach(0, first.fds);
      const a = owner(first, rig);
      a.enable();
      await waitFor(() => (first.regs[NVME_REG.CSTS >> 2] & NVME_CSTS_RDY) !== 0);
      a.write(0, 0xaa);
      await held.heldCount(1); // the old owner's write is on the (slow) medium
      // pci_assign to another owner: a fresh transport and model on the same medium
      const second = transport();
      hd.attach(0, second.fds);
      const kick = vi.spyOn(NvmeModel.prototype, 'kick');
      const b = owner(second, rig);
      b.enable();
      await waitFor(() => kick.mock.calls.length > 0); // the new model heard the enable
      expect(second.regs[NVME_REG.CSTS >> 2] & NVME_CSTS_RDY).toBe(0);
      expect(first.regs[NVME_REG.CSTS >> 2]).not.toBe(-1);
      held.holding = false;
      held.release(0);
      await waitFor(() => (second.regs[NVME_REG.CSTS >> 2] & NVME_CSTS_RDY) !== 0);
      expect(held.held[0].landed).toBe(true);
      expect(first.regs.every((v) => v === -1)).toBe(true);
      b.write(0, 0xbb);
      let sc: number | null = null;
      await waitFor(() => (sc = b.completed()) !== null);
      expect(sc).toBe(NVME_SC.SUCCESS);
      expect(readFileSync(path).subarray(0, 4096).every((v) => v === 0xbb)).toBe(true);
      expect(rig.faults).toEqual([]);
    } finally {
      held.releaseAll(); // a failed assertion must not leave the medium's descriptor waiting
      hd.close();
    }
  });
});
