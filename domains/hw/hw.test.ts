// The hardware process at its boundary: hv's requests are trusted to come from hv, not to be
// well formed. Every malformed or hostile one gets a refusal naming what was wrong, hw keeps no
// descriptor it refused, and it still answers afterwards. It exits when hv closes its end.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pack } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../../src/native/index.js';
import { NIC_BAR_SIZE } from '../../src/abi/nic.js';
import { REG } from '../../src/abi/vtd-registers.js';
import { DIST, requireBuilt } from '../../test/support/platform.js';
import { HV_AREA_BYTES } from '../../src/hw/phys-map.js';
import { HW_OP, REP, REP_MAX, REQ, REQ_MAX, STATUS_NAMES, getText, type HwInit } from '../../src/hw/wire.js';

interface Reply {
  seq: number;
  status: string;
  text: string;
  value: bigint;
}

class RawHw {
  readonly child: ChildProcess;
  readonly rpc: number;
  readonly events: number;
  private seq = 0;
  private readonly rep = new Uint8Array(REP_MAX);

  /** `wrap`: a command line hw runs under (setpriv, to start it without capabilities) */
  constructor(wrap: string[] = []) {
    requireBuilt();
    const [rpc, rpcChild] = native.seqpacketPair();
    const [events, eventsChild] = native.seqpacketPair();
    const argv = [...wrap, process.execPath, join(DIST, 'domains', 'hw.js')];
    this.child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'inherit', rpcChild, eventsChild] });
    native.close(rpcChild);
    native.close(eventsChild);
    native.setNonblock(rpc, false);
    native.setRecvTimeout(rpc, 30_000);
    this.rpc = rpc;
    this.events = events;
  }

  /** Sends raw bytes; the reply, or a failure if hw did not answer. */
  raw(bytes: Uint8Array, fds: number[] = []): Reply {
    native.sendmsg(this.rpc, bytes, fds);
    const r = native.recvmsg(this.rpc, this.rep, true);
    if (r === null || r.len === 0) throw new Error(`hw did not answer (${r === null ? 'timeout' : 'closed'})`);
    const dv = new DataView(this.rep.buffer);
    return {
      seq: dv.getUint32(REP.seq, true),
      status: STATUS_NAMES[dv.getInt32(REP.status, true)] ?? 'unknown',
      text: getText(this.rep, REP.text, dv.getUint32(REP.textLen, true)),
      value: dv.getBigUint64(REP.value, true),
    };
  }

  req(op: number, a = 0, b = 0, c = 0, fds: number[] = [], body?: Uint8Array): Reply {
    const msg = new Uint8Array(REQ.size + (body?.length ?? 0));
    if (body) msg.set(body, REQ.size);
    const dv = new DataView(msg.buffer);
    dv.setUint32(REQ.op, op, true);
    dv.setUint32(REQ.seq, ++this.seq, true);
    dv.setUint32(REQ.a, a, true);
    dv.setUint32(REQ.b, b, true);
    dv.setUint32(REQ.c, c, true);
    return this.raw(msg, fds);
  }

  /** Descriptors hw holds right now. */
  openFds(): number {
    return readdirSync(`/proc/${this.child.pid}/fd`).length;
  }

  close(): Promise<number | null> {
    const exited = new Promise<number | null>((r) => {
      if (this.child.exitCode !== null) r(this.child.exitCode);
      else this.child.once('exit', (code) => r(code));
    });
    native.close(this.rpc);
    native.close(this.events);
    return exited;
  }
}

const NIC_ONLY: HwInit = {
  iommu: { enabled: true, addressWidth: 48, cachingMode: false },
  devices: [{ sid: 0x100, name: '0000:01:00.0', kind: 'nic', mac: [2, 0, 0, 0, 0, 1], wire: { kind: 'none' } }],
};

describe('hw at its boundary', () => {
  let hw: RawHw | null = null;
  const temp: number[] = [];
  afterEach(async () => {
    for (const fd of temp.splice(0)) native.close(fd);
    if (hw && hw.child.exitCode === null) {
      hw.child.kill('SIGKILL');
      await hw.close();
    }
    hw = null;
  });
  const area = () => {
    const fd = native.memfdCreate('test-area', HV_AREA_BYTES);
    temp.push(fd);
    return fd;
  };

  it('refuses malformed and hostile requests with a reason, keeps no refused descriptor, and goes on answering', () => {
    const h = (hw = new RawHw());
    // before INIT
    expect(h.raw(Uint8Array.of(1, 2, 3))).toMatchObject({ seq: 0, status: 'EINVAL', text: expect.stringMatching(/3 bytes is shorter than the 32-byte header/) });
    expect(h.req(99)).toMatchObject({ status: 'EINVAL', text: 'unknown request 99' });
    expect(h.req(HW_OP.MMIO_READ, REG.CAP, 8)).toMatchObject({ status: 'EINVAL', text: expect.stringMatching(/INIT comes first/) });
    expect(h.req(HW_OP.INIT, 0, 0, 0, [], pack(NIC_ONLY))).toMatchObject({ status: 'EINVAL', text: expect.stringMatching(/came with 0 descriptors/) });
    expect(h.req(HW_OP.INIT, 0, 0, 0, [area()], Uint8Array.of(0xc1, 0xff))).toMatchObject({ status: 'EINVAL' });
    const relative = { ...NIC_ONLY, devices: [{ sid: 1, name: '0000:00:00.1', kind: 'nvme', medium: 'disk.img' }] };
    expect(h.req(HW_OP.INIT, 0, 0, 0, [area()], pack(relative))).toMatchObject({ status: 'EINVAL', text: expect.stringMatching(/medium must be an absolute path/) });
    const looped = { ...NIC_ONLY, devices: [{ ...NIC_ONLY.devices[0], wire: { kind: 'cable', peerSid: 0x100 } }] };
    expect(h.req(HW_OP.INIT, 0, 0, 0, [area()], pack(looped))).toMatchObject({ status: 'EINVAL', text: expect.stringMatching(/cable of 0000:01:00.0 does not end/) });
    const small = native.memfdCreate('test-small', 4096);
    temp.push(small);
    expect(h.req(HW_OP.INIT, 0, 0, 0, [small], pack(NIC_ONLY))).toMatchObject({ status: 'EIO', text: expect.stringMatching(/disagree on the address map/) });

    expect(h.req(HW_OP.INIT, 0, 0, 0, [area()], pack(NIC_ONLY)).status).toBe('OK');
    expect(h.req(HW_OP.INIT, 0, 0, 0, [area()], pack(NIC_ONLY))).toMatchObject({ status: 'EINVAL', text: 'hw is initialised already' });
    const before = h.openFds();

    // registers: only aligned 4- and 8-byte accesses inside the page
    expect(h.req(HW_OP.MMIO_READ, 0x1001, 4)).toMatchObject({ status: 'EINVAL', text: expect.stringMatching(/not an aligned 4-byte register/) });
    expect(h.req(HW_OP.MMIO_READ, 0x2000, 8).status).toBe('EINVAL');
    expect(h.req(HW_OP.MMIO_WRITE, REG.GCMD, 3)).toMatchObject({ status: 'EINVAL', text: 'register access of 3 bytes (4 or 8)' });
    // frames: out of order, past the address map, not one page, too many for a domain
    const page = native.memfdCreate('test-frame', 4096);
    const twoPages = native.memfdCreate('test-frame2', 8192);
    temp.push(page, twoPages);
    const dup = (fd: number) => {
      const d = native.dup(fd);
      temp.push(d);
      return d;
    };
    expect(h.req(HW_OP.DOMAIN_FRAMES, 3, 10, 5, [dup(page)])).toMatchObject({ status: 'EINVAL', text: expect.stringMatching(/out of order/) });
    expect(h.req(HW_OP.DOMAIN_FRAMES, 0x8000, 1, 0, [dup(page)])).toMatchObject({ status: 'EINVAL', text: expect.stringMatching(/outside the address map/) });
    expect(h.req(HW_OP.DOMAIN_FRAMES, 3, 1, 0, [dup(twoPages)])).toMatchObject({ status: 'EINVAL', text: expect.stringMatching(/not one page/) });
    expect(h.req(HW_OP.DOMAIN_FRAMES, 3, 5000, 0, [dup(page)])).toMatchObject({ status: 'EINVAL', text: expect.stringMatching(/exceed a domain's 4096/) });
    expect(h.req(HW_OP.DOMAIN_FRAMES, 3, 1, 0, [dup(page), dup(page)])).toMatchObject({ status: 'EINVAL', text: expect.stringMatching(/run past its 1/) });
    // devices: unknown index, wrong descriptor count, a register page of the wrong size
    const transport = (barSize: number) => {
      const fds = [native.memfdCreate('test-bar', barSize), native.eventfd(), native.eventfd()];
      temp.push(...fds);
      return fds;
    };
    expect(h.req(HW_OP.ATTACH, 7, 0, 0, transport(NIC_BAR_SIZE))).toMatchObject({ status: 'EINVAL', text: 'device 7 does not exist (hw has 1)' });
    expect(h.req(HW_OP.ATTACH, 0, 0, 0, transport(NIC_BAR_SIZE).slice(0, 2))).toMatchObject({ status: 'EINVAL', text: expect.stringMatching(/came with 2 descriptors/) });
    expect(h.req(HW_OP.ATTACH, 0, 0, 0, transport(4096 * 16))).toMatchObject({ status: 'EIO', text: expect.stringMatching(/register page is 65536 bytes/) });
    expect(h.req(HW_OP.BUS_MASTER, 1, 1)).toMatchObject({ status: 'EINVAL', text: 'device 1 does not exist (hw has 1)' });
    expect(h.req(HW_OP.DOMAIN_DEAD, 4, 0, 0, [dup(page)])).toMatchObject({ status: 'EINVAL', text: expect.stringMatching(/came with 1 descriptors/) });
    // a TAP for a NIC whose wire is no TAP, or for no device at all
    expect(h.req(HW_OP.TAP_WIRE, 0, 0, 0, [dup(page)])).toMatchObject({ status: 'EINVAL', text: '0000:01:00.0 is not wired to a TAP' });
    expect(h.req(HW_OP.TAP_WIRE, 3, 0, 0, [dup(page)])).toMatchObject({ status: 'EINVAL', text: 'device 3 does not exist (hw has 1)' });
    expect(h.req(HW_OP.TAP_WIRE, 0)).toMatchObject({ status: 'EINVAL', text: expect.stringMatching(/came with 0 descriptors/) });
    // a refused descriptor is closed, never kept
    expect(h.openFds()).toBe(before);

    // and the unit still answers
    expect(h.child.exitCode).toBeNull();
    const cap = h.req(HW_OP.MMIO_READ, REG.CAP, 8);
    expect(cap.status).toBe('OK');
    expect(Number((cap.value >> 16n) & 0x3fn) + 1).toBe(48); // MGAW
    expect(h.req(HW_OP.DOMAIN_FRAMES, 3, 1, 0, [dup(page)]).status).toBe('OK');
    expect(h.req(HW_OP.ATTACH, 0, 0, 0, transport(NIC_BAR_SIZE)).status).toBe('OK');
    expect(h.req(HW_OP.STATS).status).toBe('OK');
    // a page nothing moves data into: none in flight, whatever number hv asks about
    expect(h.req(HW_OP.IN_FLIGHT, (3 << 12) | 0).value).toBe(0n);
    expect(h.req(HW_OP.IN_FLIGHT, 0xffffffff).value).toBe(0n);
  });

  it('refuses a hardware list larger than one request carries, by name, and a request that size fits a default socket buffer', () => {
    const h = (hw = new RawHw());
    // a SOCK_SEQPACKET message must fit SO_SNDBUF (about 208 KiB by default)
    expect(REQ_MAX).toBeLessThanOrEqual(128 << 10);
    const long = `/${'m'.repeat(3900)}`;
    const big = {
      ...NIC_ONLY,
      devices: [...NIC_ONLY.devices, ...Array.from({ length: 40 }, (_, i) => ({ sid: 0x200 + i, name: `0000:02:${(i + 1).toString(16).padStart(2, '0')}.0`, kind: 'nvme', medium: `${long}${i}` }))],
    };
    const body = pack(big);
    expect(body.length).toBeGreaterThan(REQ_MAX);
    expect(h.req(HW_OP.INIT, 0, 0, 0, [area()], body)).toMatchObject({ status: 'EINVAL', text: expect.stringMatching(/INIT: the hardware list is more than the \d+ bytes/) });
    expect(h.req(HW_OP.INIT, 0, 0, 0, [area()], pack(NIC_ONLY)).status).toBe('OK');
  });

  it('is undumpable from its first instruction: a process of its uid without capabilities cannot read its /proc files', () => {
    // both without capabilities, so that only dumpability decides (as between hw and a domain)
    const noCaps = ['setpriv', '--bounding-set=-all', '--inh-caps=-all'];
    const h = (hw = new RawHw(noCaps));
    expect(h.req(99).status).toBe('EINVAL'); // hw is up and serving
    const probe = spawnSync(noCaps[0], [...noCaps.slice(1), 'head', '-c', '1', `/proc/${h.child.pid}/environ`], { encoding: 'utf8' });
    expect(probe.error).toBeUndefined();
    expect(probe.stderr).toMatch(/Permission denied/);
    expect(probe.status).not.toBe(0);
  });

  it('exits when hv closes its end', async () => {
    const h = (hw = new RawHw());
    expect(h.req(HW_OP.INIT, 0, 0, 0, [area()], pack(NIC_ONLY)).status).toBe('OK');
    expect(await h.close()).toBe(0);
  });
});
