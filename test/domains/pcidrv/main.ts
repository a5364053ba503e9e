// A driver domain for the IOMMU integration tests: opens its assigned PCI devices through the real
// drivers (src/drivers) and, for the attack tests, programs the NVMe controller by hand with any
// DMA address the test names. Commands arrive as JSON lines on the socket in its boot arguments.
import { Domain } from '../../../src/domain/runtime.js';
import { openNvme, type NvmeDriver } from '../../../src/drivers/nvme.js';
import { openNic, type NicDriver } from '../../../src/drivers/nic.js';
import { domainMemory, PciPort } from '../../../src/drivers/port.js';
import { newPacketMeta } from '../../../src/packet/meta.js';
import { CQE, NVME_CC_EN, NVME_CSTS_RDY, NVME_REG as R, SQE, statusCode } from '../../../src/abi/nvme.js';
import { serveCommands, type Command } from '../serve.js';

const dom = await Domain.boot();
const { control } = dom.bootArgs<{ control: string }>();
let nvme: NvmeDriver | null = null;
const nics = new Map<string, { d: NicDriver; rx: number[][] }>();

const pattern = (seed: number, len: number) => new Uint8Array(len).map((_, i) => (seed + i * 13) & 0xff);
const io = (f: (cb: (e: Error | null) => void) => void) => new Promise<void>((res, rej) => f((e) => (e ? rej(e) : res())));

/** A hand-driven controller: one 8-entry queue pair, commands with whatever PRP1 the test wants. */
let rawQ: { port: PciPort; sq: DataView; cq: DataView; tail: number; head: number; phase: number; regs: Int32Array } | null = null;
async function rawOpen(bdf: string) {
  const port = await PciPort.open(dom, bdf);
  const mem = domainMemory(dom);
  const sq = mem.alloc(1);
  const cq = mem.alloc(1);
  const regs = new Int32Array(port.bar.buffer);
  Atomics.store(regs, R.CC >> 2, 0);
  port.ring();
  Atomics.store(regs, R.AQA >> 2, 7 | (7 << 16));
  Atomics.store(regs, R.ASQ >> 2, sq.iova);
  Atomics.store(regs, R.ACQ >> 2, cq.iova);
  Atomics.store(regs, R.CC >> 2, NVME_CC_EN);
  port.ring();
  for (let i = 0; i < 500 && (Atomics.load(regs, R.CSTS >> 2) & NVME_CSTS_RDY) === 0; i++) await new Promise((r) => setTimeout(r, 2));
  rawQ = { port, regs, sq: new DataView(sq.bytes.buffer, sq.bytes.byteOffset, 4096), cq: new DataView(cq.bytes.buffer, cq.bytes.byteOffset, 4096), tail: 0, head: 0, phase: 1 };
  return { csts: Atomics.load(regs, R.CSTS >> 2) };
}

async function rawCmd(op: number, prp1: number, slba: number, nlb: number) {
  const q = rawQ!;
  const e = q.tail * 64;
  for (let i = 0; i < 64; i += 4) q.sq.setUint32(e + i, 0, true);
  q.sq.setUint32(e + SQE.CDW0, op | (0x42 << 16), true);
  q.sq.setUint32(e + SQE.NSID, 1, true);
  q.sq.setUint32(e + SQE.PRP1, prp1 >>> 0, true);
  q.sq.setUint32(e + SQE.PRP1 + 4, Math.floor(prp1 / 2 ** 32), true);
  q.sq.setUint32(e + SQE.CDW10, slba, true);
  q.sq.setUint32(e + SQE.CDW12, nlb, true);
  q.tail = (q.tail + 1) % 8;
  Atomics.store(q.regs, R.SQ0TDBL >> 2, q.tail);
  q.port.ring();
  for (let i = 0; i < 1000; i++) {
    const c = q.head * 16;
    const st = q.cq.getUint16(c + CQE.STATUS, true);
    if ((st & 1) === q.phase) {
      q.head = (q.head + 1) % 8;
      if (q.head === 0) q.phase ^= 1;
      Atomics.store(q.regs, R.CQ0HDBL >> 2, q.head);
      return { status: statusCode(st), dw0: q.cq.getUint32(c + CQE.DW0, true), cid: q.cq.getUint16(c + CQE.CID, true) };
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  return { status: -1, csts: Atomics.load(q.regs, R.CSTS >> 2) };
}

async function run(c: Command): Promise<unknown> {
  const n = (k: string) => Number(c[k]);
  switch (c.cmd) {
    case 'nvmeOpen':
      nvme = await openNvme(dom, String(c.bdf), { depth: 8, slotPages: 16 });
      return { size: nvme.size };
    case 'nvmeWrite': {
      await io((cb) => nvme!.write(pattern(n('seed'), n('len')), 0, n('len'), n('pos'), cb));
      if (c.flush) await io((cb) => nvme!.flush(cb));
      return {};
    }
    case 'nvmeVerify': {
      const buf = new Uint8Array(n('len'));
      await io((cb) => nvme!.read(buf, 0, buf.length, n('pos'), cb));
      const want = pattern(n('seed'), n('len'));
      return { equal: buf.every((v, i) => v === want[i]) };
    }
    case 'nvmeClose':
      await nvme?.close();
      nvme = null;
      return {};
    case 'rawOpen':
      return rawOpen(String(c.bdf));
    case 'rawCmd':
      return rawCmd(n('op'), n('prp1'), n('slba'), n('nlb'));
    case 'mapDevice': {
      // GNTMAP_device_map only (1), plus readonly (4) when asked: the device, not the CPU, gets the frame
      const flags = 1 | (c.readonly ? 4 : 0);
      const { result } = await dom.hc.call('gnttab_map', { ops: [{ dom: n('dom'), ref: n('ref'), flags }] });
      return result.results[0];
    }
    case 'unmap':
      return (await dom.hc.call('gnttab_unmap', { handles: [n('handle')] })).result;
    case 'hypercall':
      return { result: (await dom.hc.call(c.op as never, c.args as never)).result };
    case 'nicOpen': {
      const nic = { d: await openNic(dom, String(c.bdf), { ringSize: 16 }), rx: [] as number[][] };
      nics.set(String(c.bdf), nic);
      nic.d.onReadable(() => {
        const mem = new Uint8Array(4096);
        nic.d.receive({ mem, reserve: () => 0, commit: (off, len) => nic.rx.push(Array.from(mem.subarray(off, off + len))) }, 16);
      });
      return { mac: Array.from(nic.d.mac) };
    }
    case 'nicSend': {
      const mem = pattern(n('seed'), n('len'));
      return { ok: nics.get(String(c.bdf))!.d.transmit({ mem, off: 0, len: mem.length, meta: newPacketMeta() }) };
    }
    case 'nicReceived':
      return { frames: nics.get(String(c.bdf))!.rx.map((f) => ({ len: f.length, first: f[0], last: f[f.length - 1] })) };
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}

serveCommands(control, run, () => process.stdout.write(`pcidrv ${dom.name} ready\n`));
