// The toolstack: reads the system, asks hv for domains, writes their xenstore nodes, starts
// driver domains before the guests they serve, and restarts a crashed driver domain under the
// same domid so its frontends reconnect to the same backend paths. It holds no device and maps
// no guest memory (hv's policy would refuse it anyway).
import { existsSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { pack } from 'msgpackr';
import { XenbusState, parseXenbusState } from '../../src/abi/xenbus.js';
import { admitDomain, loadSystem, type SystemConfig, type SystemDomain } from '../../src/config/system.js';
import type { Domain } from '../../src/domain/runtime.js';
import type { HvEvent, HypercallOps, OpName } from '../../src/hypercall/protocol.js';
import { XenstoreClient, type XsOps } from '../../src/xenstore/client.js';
import type { DeviceRow, DomainRow } from '../../src/control/wire.js';
import { statePaths, vhostDir, vhostSocket, vmConsoleSocket, vmDir, vmQmpSocket, type StatePaths } from '../../src/control/paths.js';
import { qemuArgv } from '../../src/vm/qemu.js';
import { chooseAccel, type AccelChoice } from '../../src/vm/accel.js';
import { MAX_VBD_QUEUES, vhostDeviceKeys } from '../../src/vhost-user/xenstore-keys.js';
import { ensureImage, ensureMedium } from './images.js';
import { toPlatformInit } from '../../src/hypercall/pci.js';
import { bdfEqual, formatBdf } from '../../src/config/bdf.js';
import type { DomainBootArgs } from '../../src/domain/bootargs.js';
import { dompath, restorePerms, writeDomainNodes, writeVbd, writeVif, type DevicePaths, type Ends } from './xsnodes.js';
import type { DiskSpec } from '../../src/config/disk-spec.js';
import type { VifSpec } from '../../src/config/vif-spec.js';
import { confineFor, exportLink, guestExportDir, mayServe } from './confine.js';
import { vifNetns } from '../../src/config/vif-spec.js';
import { NetnsRecords, createGuestNetns, deleteGuestNetns } from '../../src/netns/netns.js';
import { checkMemory, type MigrationHost, type VmSource } from './migrate.js';
import { CpuPolicy, type CpuChoice } from './cpu-policy.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How long a domain gets to stop cleanly before it is destroyed. */
const SHUTDOWN_MS = 5000;


type ManagedDevice = {
  name: string;
  paths: DevicePaths;
  backendId: number;
  export?: string;
  devid: number;
  /** a VM's disk: no xenbus frontend, and these backend keys name its vhost-user socket */
  vhost?: Record<string, string>;
} & (
  | { type: 'vbd'; spec: DiskSpec }
  | { type: 'vif'; spec: VifSpec }
);

interface Managed {
  cfg: SystemDomain;
  domid: number;
  restarts: number;
  devices: ManagedDevice[];
  lastStart: number;
  dead: boolean;
  /** a VM: the accelerator chosen at its first start */
  accel?: AccelChoice;
  /** a VM: its CPU model, chosen at its first start (or brought by its migration) and kept */
  cpu?: CpuChoice;
  /** a VM: its config file as it was when the VM started here (or as a migration brought it), what a migration onwards sends */
  source?: { file: string; text: string; base: string };
  /** going for good (migrated away): its death removes it instead of restarting it */
  leaving?: boolean;
}

/** How long blkdom gets to open a VM disk's medium and listen before the VM starts anyway. */
const VHOST_LISTEN_MS = 30_000;
/** QEMU retries a lost vhost-user backend every second (a restarted blkdom). */
const VHOST_RECONNECT_S = 1;

/** Frames a domain gets for rings and buffers (3/64 of its memory), within hv limits. */
export function ioFramesFor(memoryMiB: number): number {
  return Math.max(64, Math.min(4096, memoryMiB * 12));
}

export class Toolstack implements MigrationHost {
  readonly state: StatePaths;
  private sys!: SystemConfig;
  private cpuPolicy: CpuPolicy | undefined;
  private xs!: XenstoreClient;
  private xenstoredDomid = -1;
  private readonly managed = new Map<string, Managed>();
  private stopping = false;
  /** host cleanups still running (namespaces being removed): `down` waits for them */
  private readonly cleanups = new Set<Promise<void>>();
  private built: Promise<void> | null = null;
  private buildError: Error | null = null;
  /** VMs whose migration to this host has not finished (only these may be called off) */
  readonly arriving = new Set<string>();
  /** the namespaces this system made: only those are ever deleted */
  private readonly netns: NetnsRecords;

  constructor(
    private readonly dom: Domain,
    stateDir: string,
    private readonly systemDir: string,
    readonly log: (l: string) => void,
  ) {
    this.state = statePaths(stateDir);
    this.netns = new NetnsRecords(this.state.dir);
    dom.hc.onEvent((ev) => this.onHvEvent(ev));
  }

  /** A hypercall on the CLI's behalf (pci assignable-*): hv's policy and checks apply. */
  async hypercall<K extends OpName>(op: K, args: HypercallOps[K]['args']): Promise<HypercallOps[K]['result']> {
    return (await this.dom.hc.call(op, args)).result;
  }

  get xenstoredPath(): string {
    return this.state.xenstored;
  }

  start(): Promise<void> {
    this.built ??= this.build().catch((e: Error) => {
      this.buildError = e;
      this.log(`dom0: building the system failed: ${e.message}`);
    });
    return this.built;
  }

  private async build(): Promise<void> {
    this.sys = loadSystem(this.systemDir);
    this.cpuPolicy = new CpuPolicy(this.sys.host, this.state.dir);
    mkdirSync(this.state.xenstoreDomains, { recursive: true, mode: 0o700 });
    mkdirSync(this.state.nbd, { recursive: true, mode: 0o700 });
    mkdirSync(this.state.vm, { recursive: true, mode: 0o700 });
    mkdirSync(this.state.vhost, { recursive: true, mode: 0o700 });
    await this.startXenstored();
    await this.xs.write('/local/domain/0/name', 'Domain-0');
    await this.xs.write('/local/domain/0/domid', '0');
    for (const d of this.sys.domains) for (const disk of d.disks) if (!disk.device) this.log(`dom0: ${ensureImage(disk)}`);
    for (const dev of this.sys.host.devices) if (dev.type === 'nvme') this.log(`dom0: ${ensureMedium(dev)}`);
    if (this.sys.host.devices.length > 0) {
      // hv parses no config: it gets the hardware list as plain data and checks it again.
      const { result } = await this.dom.hc.call('platform_init', toPlatformInit(this.sys.host));
      this.log(`dom0: platform: ${result.devices} PCI functions in ${result.groups} IOMMU groups`);
      for (const w of result.warnings) this.log(`dom0: platform: ${w}`);
    }
    for (const d of this.sys.domains) await this.startDomain(d);
  }

  private async startXenstored(): Promise<void> {
    const { result } = await this.dom.hc.call('domain_create', { name: 'xenstored', kind: 'xenstored', memoryMiB: 64, ioFrames: 0, grantFrames: 1 });
    this.xenstoredDomid = result.domid;
    await this.dom.hc.call('domain_unpause', {
      domid: result.domid,
      bootArgs: pack({ privilegedSocket: this.state.xenstored, domainSocketDir: this.state.xenstoreDomains }),
    });
    const end = Date.now() + 15_000;
    for (;;) {
      if (existsSync(this.state.xenstored)) {
        try {
          this.xs = await XenstoreClient.connect(this.state.xenstored, { onError: (e) => this.log(`dom0: xenstore: ${e.message}`) });
          return;
        } catch {
          /* not listening yet */
        }
      }
      if (Date.now() > end) throw new Error(`xenstored did not open ${this.state.xenstored} within 15 s`);
      await sleep(20);
    }
  }

  private writeDevice(tx: XsOps, fe: number, d: ManagedDevice, ends: Ends): Promise<DevicePaths> {
    // a VM's device has no frontend end to write: QEMU is its frontend
    const e = d.vhost ? { ...ends, frontend: false } : ends;
    return d.type === 'vif' ? writeVif(tx, fe, d.backendId, d.spec, e, d.vhost) : writeVbd(tx, fe, d.backendId, d.spec, e, d.vhost);
  }

  /**
   * The host side of a guest, made before it runs (what Xen's hotplug scripts do): its network
   * namespace(s), fresh, and its export directory with the links users connect to.
   */
  private async prepareGuestHost(cfg: SystemDomain): Promise<void> {
    for (const ns of guestNamespaces(cfg)) await createGuestNetns(ns, { records: this.netns, guest: cfg.name, confined: cfg.seccomp });
    mkdirSync(guestExportDir(this.state.nbd, cfg.name), { recursive: true, mode: 0o700 });
    for (const disk of cfg.disks) {
      const link = exportLink(this.state.nbd, cfg.name, disk.vdev);
      rmSync(link.path, { force: true });
      symlinkSync(link.target, link.path);
    }
  }

  private async startDomain(cfg: SystemDomain, domid?: number, previous?: Managed, beforeUnpause?: () => Promise<void>): Promise<Managed> {
    try {
      return await this.startDomainOnce(cfg, domid, previous, beforeUnpause);
    } catch (e) {
      // A guest that did not start leaves no namespace behind (a foreign one it was refused
      // is not recorded, so it stays untouched).
      if (cfg.role === 'guest') await this.removeNamespaces(cfg);
      throw e;
    }
  }

  /**
   * Driver domains that may serve VMs, and so listen for vhost-user frontends: every blk and net
   * domain, since a VM may arrive by migration that no config of this host names.
   */
  private servesVms(cfg: SystemDomain): boolean {
    return cfg.role === 'blk' || cfg.role === 'net';
  }

  private async startDomainOnce(cfg: SystemDomain, domid?: number, previous?: Managed, beforeUnpause?: () => Promise<void>): Promise<Managed> {
    if (cfg.role === 'vm') return this.startVm(cfg, domid, previous);
    if (cfg.role === 'guest') await this.prepareGuestHost(cfg);
    const vhost = this.servesVms(cfg) ? vhostDir(this.state, cfg.name) : undefined;
    if (vhost !== undefined) mkdirSync(vhost, { recursive: true, mode: 0o700 });
    const { result } = await this.dom.hc.call('domain_create', {
      name: cfg.name,
      kind: cfg.role,
      memoryMiB: cfg.memoryMiB,
      ioFrames: ioFramesFor(cfg.memoryMiB),
      grantFrames: cfg.role === 'guest' ? 8 : 1,
      ...(domid !== undefined ? { domid } : {}),
      ...(cfg.seccomp ? { confine: confineFor(cfg, this.sys, this.state.nbd, vhost !== undefined ? { vhostDir: vhost } : {}) } : {}),
    });
    const m: Managed = previous ?? { cfg, domid: result.domid, restarts: 0, devices: [], lastStart: Date.now(), dead: false };
    m.domid = result.domid;
    m.dead = false;
    m.lastStart = Date.now();
    this.managed.set(cfg.name, m);
    await this.xs.introduce(m.domid);
    await this.xs.transaction((tx) => writeDomainNodes(tx, m.domid, cfg.name, cfg.memoryMiB, cfg.role));
    if (!previous) await this.writeDevices(m);
    if (beforeUnpause) await beforeUnpause();
    // Passthrough before the domain runs (again after a restart: hv quarantined its devices).
    if (cfg.pci.length > 0) {
      await this.dom.hc.call('pci_assign', {
        domid: m.domid,
        devices: cfg.pci.map((p) => ({ bdf: formatBdf(p.bdf), allFunctions: p.allFunctions, permissive: p.permissive, seize: p.seize, rdmPolicy: p.rdmPolicy })),
      });
    }
    const boot: DomainBootArgs = {
      xenstore: `${this.state.xenstoreDomains}/domain-${m.domid}.sock`,
      stateDir: this.state.dir,
      nbdDir: cfg.role === 'guest' ? guestExportDir(this.state.nbd, cfg.name) : this.state.nbd,
      seccomp: cfg.seccomp,
      devices: cfg.assigned.map((b) => ({ bdf: formatBdf(b), type: this.sys.host.devices.find((h) => bdfEqual(h.bdf, b))?.type ?? 'unknown' })),
      ...(cfg.uplink ? { uplink: cfg.uplink.name } : {}),
      ...(vhost !== undefined ? { vhostDir: vhost } : {}),
    };
    await this.dom.hc.call('domain_unpause', { domid: m.domid, bootArgs: pack(boot) });
    this.log(`dom0: started ${cfg.role} domain '${cfg.name}' as dom${m.domid}`);
    return m;
  }

  /**
   * A real Linux VM: QEMU with a command line dom0 builds, run by hv under ringside-confine. Its
   * disks are vbds under blkdom's backend directory like any guest's, marked vhost-user; QEMU
   * starts once blkdom listens on each socket, and reconnects to it after a blkdom restart.
   */
  private async startVm(cfg: SystemDomain, domid?: number, previous?: Managed, incoming?: string): Promise<Managed> {
    const boot = cfg.vm;
    if (!boot) throw new Error(`${cfg.name}: a VM without boot settings`);
    for (const [what, p] of [['kernel', boot.kernel], ['ramdisk', boot.ramdisk]] as const)
      if (p !== undefined && !existsSync(p)) throw new Error(`${cfg.name}: ${what} ${p} does not exist (\`ringside vm-image\` builds a kernel and initramfs)`);
    const { accel, cpu: chosen } = previous?.accel && previous.cpu ? { accel: previous.accel, cpu: previous.cpu } : await this.cpu.settle(cfg.name, boot.cpu, await chooseAccel(boot.accel), boot.accel === 'auto');
    if (!previous) this.log(`dom0: ${cfg.name}: ${accel.accel.toUpperCase()} (${accel.why})`);
    const cpu = incoming !== undefined ? { model: chosen.model, why: 'the model it ran at the source, brought by its migration' } : chosen;
    if (!previous) this.log(`dom0: ${cfg.name}: CPU model ${cpu.model} (${cpu.why})`);
    const dir = vmDir(this.state, cfg.name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const queues = Math.min(cfg.vcpus, MAX_VBD_QUEUES);
    // sun_path holds 107 bytes: say so now rather than as a bind error in blkdom or QEMU
    const nicSocket = (v: VifSpec) => vhostSocket(this.state, v.backend, cfg.name, `vif${v.devid}`);
    for (const p of [vmConsoleSocket(this.state, cfg.name), ...cfg.disks.map((d) => vhostSocket(this.state, d.backend, cfg.name, d.vdev)), ...cfg.vifs.map(nicSocket)])
      if (Buffer.byteLength(p) > 107) throw new Error(`${cfg.name}: socket path ${p} is ${Buffer.byteLength(p)} bytes, more than the 107 a Unix socket address holds: use a shorter --state directory`);
    const argv = qemuArgv({
      accel: accel.accel,
      cpu: cpu.model,
      memoryMiB: cfg.memoryMiB,
      vcpus: cfg.vcpus,
      kernel: boot.kernel,
      initrd: boot.ramdisk,
      cmdline: boot.cmdline,
      disks: cfg.disks.map((d) => ({ kind: 'vhost-user', socket: vhostSocket(this.state, d.backend, cfg.name, d.vdev), queues, reconnectS: VHOST_RECONNECT_S })),
      nics: cfg.vifs.map((v) => ({ socket: nicSocket(v), mac: v.mac, mtu: v.mtu, reconnectS: VHOST_RECONNECT_S })),
      consoleSocket: vmConsoleSocket(this.state, cfg.name),
      qmpSocket: vmQmpSocket(this.state, cfg.name),
      ...(incoming !== undefined ? { incoming } : {}),
    });
    const { result } = await this.dom.hc.call('domain_create', {
      name: cfg.name,
      kind: 'vm',
      memoryMiB: cfg.memoryMiB,
      ioFrames: 0,
      grantFrames: 1,
      vm: { argv },
      ...(domid !== undefined ? { domid } : {}),
      ...(cfg.seccomp ? { confine: confineFor(cfg, this.sys, this.state.nbd, { vm: { dir, kvm: accel.accel === 'kvm' } }) } : {}),
    });
    const m: Managed = previous ?? { cfg, domid: result.domid, restarts: 0, devices: [], lastStart: Date.now(), dead: false, accel, cpu };
    // An edit to the file after the VM started must not change what a migration sends.
    if (!previous && incoming === undefined) m.source = this.configAsStarted(cfg);
    m.domid = result.domid;
    m.dead = false;
    m.lastStart = Date.now();
    this.managed.set(cfg.name, m);
    await this.xs.transaction((tx) => writeDomainNodes(tx, m.domid, cfg.name, cfg.memoryMiB, cfg.role));
    if (!previous) {
      await this.xs.transaction(async (tx) => {
        m.devices = [];
        for (const disk of cfg.disks) {
          const be = this.backendId(disk.backend);
          const socket = vhostSocket(this.state, disk.backend, cfg.name, disk.vdev);
          const vhost = vhostDeviceKeys(socket, queues);
          const paths = await writeVbd(tx, m.domid, be, disk, { backend: true, frontend: false }, vhost);
          m.devices.push({ type: 'vbd', spec: disk, devid: disk.devid, name: disk.vdev, paths, backendId: be, export: socket, vhost });
        }
        for (const vif of cfg.vifs) {
          const be = this.backendId(vif.backend);
          const socket = nicSocket(vif);
          const vhost = vhostDeviceKeys(socket, 1);
          const paths = await writeVif(tx, m.domid, be, vif, { backend: true, frontend: false }, vhost);
          m.devices.push({ type: 'vif', spec: vif, devid: vif.devid, name: vif.mac, paths, backendId: be, export: socket, vhost });
        }
      });
    }
    for (const d of m.devices) await this.waitListening(cfg.name, d);
    await this.dom.hc.call('domain_unpause', { domid: m.domid, bootArgs: new Uint8Array(0) });
    if (incoming !== undefined) return m;
    this.log(`dom0: started VM '${cfg.name}' as dom${m.domid} (${accel.accel}, ${cfg.disks.length} disk(s) and ${cfg.vifs.length} vif(s) over vhost-user; console: ringside console ${cfg.name})`);
    return m;
  }

  /** Waits until blkdom listens on a VM disk's socket (backend InitWait or later), or says why not. */
  private async waitListening(vm: string, d: ManagedDevice): Promise<void> {
    const end = Date.now() + VHOST_LISTEN_MS;
    for (;;) {
      const st = parseXenbusState(await this.xs.tryRead(`${d.paths.backend}/state`));
      const err = await this.xs.tryRead(`${d.paths.backend}/error`);
      if (err !== undefined && st !== XenbusState.InitWait && st !== XenbusState.Connected) throw new Error(`${vm}: disk ${d.name}: blkdom refused it: ${err}`);
      if (st === XenbusState.InitWait || st === XenbusState.Connected) return;
      if (Date.now() > end) throw new Error(`${vm}: disk ${d.name}: blkdom did not listen on ${d.export} within ${VHOST_LISTEN_MS / 1000} s (backend ${XenbusState[st]})`);
      await sleep(50);
    }
  }

  private backendId(name: string): number {
    const b = this.managed.get(name);
    if (!b) throw new Error(`backend domain '${name}' is not running (it must start before its frontends)`);
    return b.domid;
  }

  private async writeDevices(m: Managed): Promise<void> {
    const fe = m.domid;
    m.devices = [];
    await this.xs.transaction(async (tx) => {
      m.devices = [];
      for (const disk of m.cfg.disks) {
        const be = this.backendId(disk.backend);
        const paths = await writeVbd(tx, fe, be, disk);
        m.devices.push({ type: 'vbd', spec: disk, devid: disk.devid, name: disk.vdev, paths, backendId: be, export: exportLink(this.state.nbd, m.cfg.name, disk.vdev).path });
      }
      for (const v of m.cfg.vifs) {
        const be = this.backendId(v.backend);
        // the guest is told its namespace, default included: dom0 made it
        const vif = { ...v, netns: vifNetns(m.cfg.name, v) };
        const paths = await writeVif(tx, fe, be, vif);
        m.devices.push({ type: 'vif', spec: vif, devid: vif.devid, name: vif.mac, paths, backendId: be, export: `netns ${vif.netns}` });
      }
    });
  }

  /** Resolves when every device of every domain is Connected at both ends, or reports what is not. */
  async waitReady(timeoutMs: number): Promise<{ ready: boolean; problems: string[] }> {
    const end = Date.now() + timeoutMs;
    await Promise.race([this.start(), sleep(timeoutMs)]);
    for (;;) {
      if (this.buildError) return { ready: false, problems: [this.buildError.message] };
      const problems = this.built && this.sys ? await this.notReady() : ['still building'];
      if (problems.length === 0) return { ready: true, problems };
      if (Date.now() > end) return { ready: false, problems };
      await sleep(100);
    }
  }

  private async notReady(): Promise<string[]> {
    const out: string[] = [];
    if (!this.sys || this.managed.size < this.sys.domains.length) return ['domains still starting'];
    for (const m of this.managed.values()) {
      if (m.dead) out.push(`${m.cfg.name} is not running`);
      for (const d of m.devices) {
        const bs = parseXenbusState(await this.xs.tryRead(`${d.paths.backend}/state`));
        if (d.vhost) {
          // Connected once the VM's virtio-blk driver has started a queue
          if (bs !== XenbusState.Connected) out.push(`${m.cfg.name} vbd ${d.name}: vhost-user backend ${XenbusState[bs]}`);
          continue;
        }
        const fs = parseXenbusState(await this.xs.tryRead(`${d.paths.frontend}/state`));
        if (fs !== XenbusState.Connected || bs !== XenbusState.Connected)
          out.push(`${m.cfg.name} ${d.type} ${d.name}: frontend ${XenbusState[fs]}, backend ${XenbusState[bs]}`);
      }
    }
    return out;
  }

  private onHvEvent(ev: HvEvent): void {
    if (ev.event !== 'domain_died') return;
    if (this.stopping) {
      const m = [...this.managed.values()].find((x) => x.domid === ev.domid && !x.dead);
      if (m) {
        m.dead = true;
        this.track(this.cleanupHost(m));
      }
      return;
    }
    if (ev.domid === this.xenstoredDomid) {
      this.log(`dom0: xenstored died (${ev.reason}); the system cannot run without it: shutting down`);
      void this.down();
      return;
    }
    const m = [...this.managed.values()].find((x) => x.domid === ev.domid && !x.dead);
    if (!m) return;
    m.dead = true;
    if (m.leaving) {
      void this.xs
        .release(ev.domid)
        .catch(() => undefined)
        .then(() => this.removeDomainNodes(m))
        .then(() => this.track(this.cleanupHost(m)))
        .finally(() => {
          if (this.managed.get(m.cfg.name) === m) this.managed.delete(m.cfg.name);
        });
      return;
    }
    this.log(`dom0: ${m.cfg.name} (dom${ev.domid}) died: ${ev.reason}`);
    // Release first: xenstored strips the dead domid from every permission, and that must be
    // over before a restart writes the domain's nodes afresh.
    void this.xs
      .release(ev.domid)
      .catch(() => undefined)
      .then(() => {
        if (m.cfg.onCrash === 'restart') return this.restart(m, 'crashed');
        if (m.cfg.onCrash === 'destroy') return this.removeDomainNodes(m).then(() => this.track(this.cleanupHost(m)));
      })
      .catch((e: Error) => this.log(`dom0: handling the death of ${m.cfg.name} failed: ${e.message}`));
  }

  /**
   * Restarts a domain under its old domid. Its backend (or frontend) nodes stay; the state
   * node is reset so the other ends see it come back and reconnect.
   */
  async restart(m: Managed, why: string): Promise<void> {
    // Crash loops are throttled the way systemd would: back off when it dies right after start.
    const since = Date.now() - m.lastStart;
    if (since < 2000) await sleep(2000 - since);
    if (this.stopping) return;
    m.restarts++;
    this.log(`dom0: restarting ${m.cfg.name} as dom${m.domid} (${why}, restart ${m.restarts})`);
    await this.startDomain(m.cfg, m.domid, m, async () => {
      // Rewrite the ends this domain owns; the other ends see state go back to Initialising
      // and reconnect (frontends replay what was in flight).
      await this.xs.transaction(async (tx) => {
        for (const other of this.managed.values())
          for (const d of other.devices) {
            const ends: Ends = { backend: d.backendId === m.domid, frontend: other === m };
            if (ends.backend || ends.frontend) await this.writeDevice(tx, other.domid, d, ends);
            // The end that survived must let the restarted domain read it again.
            if (ends.backend && !ends.frontend) await restorePerms(tx, d.paths.frontend, `n${other.domid},r${m.domid}`);
            if (ends.frontend && !ends.backend) await restorePerms(tx, d.paths.backend, `n${d.backendId},r${m.domid}`);
          }
      });
    });
  }

  private track(p: Promise<void>): Promise<void> {
    this.cleanups.add(p);
    return p.finally(() => this.cleanups.delete(p));
  }

  /**
   * What a hotplug "offline" script does in Xen: a guest that is gone for good leaves no network
   * namespace behind. dom0 made it, dom0 removes it; it is empty by now (the TAP went with the
   * guest's descriptor).
   */
  private async cleanupHost(m: Managed): Promise<void> {
    await this.removeNamespaces(m.cfg);
    // a VM's console and QMP sockets; QEMU is gone with its process group
    if (m.cfg.role === 'vm') rmSync(vmDir(this.state, m.cfg.name), { recursive: true, force: true });
    // a blkdom's vhost-user sockets, once it is gone for good
    if (m.cfg.role !== 'guest' && m.cfg.role !== 'vm' && this.servesVms(m.cfg)) rmSync(vhostDir(this.state, m.cfg.name), { recursive: true, force: true });
  }

  private async removeNamespaces(cfg: SystemDomain): Promise<void> {
    for (const ns of guestNamespaces(cfg)) {
      try {
        if (await deleteGuestNetns(ns, this.netns)) this.log(`dom0: removed network namespace ${ns} of ${cfg.name}`);
      } catch (e) {
        this.log(`dom0: cannot remove network namespace ${ns} of ${cfg.name} (ringside down retries): ${(e as Error).message}`);
      }
    }
  }

  private async removeDomainNodes(m: Managed): Promise<void> {
    await this.xs.transaction(async (tx) => {
      for (const d of m.devices) {
        await tx.rm(d.paths.backend);
        // a VM's disk has no frontend end, and removing a missing node would abort the transaction
        if (!d.vhost) await tx.rm(d.paths.frontend);
      }
      await tx.rm(dompath(m.domid));
    }).catch((e: Error) => this.log(`dom0: removing the xenstore nodes of ${m.cfg.name} failed: ${e.message}`));
  }

  async destroy(name: string): Promise<string> {
    const m = this.managed.get(name);
    if (!m) throw new Error(`no domain named '${name}'; see 'ringside list'`);
    if (m.dead) throw new Error(`'${name}' is not running`);
    await this.dom.hc.call('domain_destroy', { domid: m.domid });
    return m.cfg.onCrash === 'restart' ? `destroyed ${name} (dom${m.domid}); on_crash=restart: dom0 brings it back` : `destroyed ${name} (dom${m.domid})`;
  }

  async restartByName(name: string): Promise<string> {
    const m = this.managed.get(name);
    if (!m) throw new Error(`no domain named '${name}'; see 'ringside list'`);
    if (!m.dead) {
      const onCrash = m.cfg.onCrash;
      // Kill it and let the death handler restart it as for a crash.
      m.cfg = { ...m.cfg, onCrash: 'restart' };
      const before = m.restarts;
      await this.dom.hc.call('domain_destroy', { domid: m.domid });
      await this.waitFor(() => m.restarts > before && !m.dead, 30_000);
      m.cfg = { ...m.cfg, onCrash };
    } else await this.restart(m, 'requested');
    return `restarted ${name} as dom${m.domid}`;
  }

  // ---- migration (MigrationHost) ----

  /** which CPU models this host offers VMs */
  get cpu(): CpuPolicy {
    if (!this.cpuPolicy) throw new Error('this host is still building its system');
    return this.cpuPolicy;
  }

  get hostName(): string {
    return this.sys?.host.name ?? 'localhost';
  }

  vmConfig(name: string): VmSource {
    const m = this.managed.get(name);
    if (!m || m.dead) throw new Error(`no running domain named '${name}'; see 'ringside list'`);
    if (m.cfg.role !== 'vm' || !m.accel || !m.cpu) throw new Error(`'${name}' is a ${m.cfg.role} domain; only VMs (type = "hvm") migrate`);
    if (!m.source) throw new Error(`${name}'s config as it started is not known here`);
    return { ...m.source, accel: m.accel.accel, cpu: m.cpu.model };
  }

  /** The VM's config file as `up` parsed it. */
  private configAsStarted(cfg: SystemDomain): { file: string; text: string; base: string } | undefined {
    const text = this.sys.sources[cfg.file];
    return text === undefined ? undefined : { file: cfg.file, text, base: dirname(cfg.file) };
  }

  async startIncoming(name: string, src: VmSource, incoming: string): Promise<number> {
    if (!this.sys) throw new Error('this host is still building its system');
    const cfg = admitDomain(this.sys, src.text, src.file, src.base);
    if (cfg.name !== name) throw new Error(`the config sent for '${name}' names '${cfg.name}'`);
    if (cfg.role !== 'vm' || !cfg.vm) throw new Error(`'${cfg.name}' is not a VM (type = "hvm"): only VMs migrate`);
    checkMemory(cfg.name, cfg.memoryMiB);
    for (const disk of cfg.disks) {
      const be = this.sys.domains.find((d) => d.name === disk.backend);
      if (be && disk.device === undefined && !mayServe(be, this.sys, disk.target, disk.access))
        throw new Error(`${cfg.name}: disk ${disk.vdev}: ${disk.backend} on host ${this.hostName} may not open ${disk.target} (it was started for other images): add its directory to ${disk.backend}'s storage = [ ... ] on this host`);
    }
    // The guest's CPU and devices must be what it had at the source: the same accelerator and
    // CPU model, which startVm refuses naming the features if this host cannot offer it.
    const m = await this.startVm({ ...cfg, vm: { ...cfg.vm, accel: src.accel, cpu: src.cpu } }, undefined, undefined, incoming);
    m.source = { file: src.file, text: src.text, base: src.base };
    return m.domid;
  }

  async dropVm(name: string, why: string): Promise<void> {
    const m = this.managed.get(name);
    if (!m) return;
    m.leaving = true;
    this.log(`dom0: ${name} (dom${m.domid}) goes: ${why}`);
    if (m.dead) {
      await this.removeDomainNodes(m);
      await this.track(this.cleanupHost(m));
      if (this.managed.get(name) === m) this.managed.delete(name);
      return;
    }
    await this.dom.hc.call('domain_destroy', { domid: m.domid }).catch(() => undefined);
    await this.waitFor(() => this.managed.get(name) !== m, 30_000).catch(() => this.log(`dom0: ${name} was not cleaned up within 30 s`));
  }

  domidOf(name: string): number | undefined {
    const m = this.managed.get(name);
    return m && !m.dead ? m.domid : undefined;
  }

  private async waitFor(pred: () => boolean, ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error('timed out');
      await sleep(50);
    }
  }

  async rows(): Promise<DomainRow[]> {
    const { result } = await this.dom.hc.call('domain_list', {});
    const now = Date.now();
    const out: DomainRow[] = [];
    for (const d of result.domains) {
      const m = [...this.managed.values()].find((x) => x.domid === d.domid && !x.dead);
      const role: DomainRow['role'] = d.domid === 0 ? 'control' : d.domid === this.xenstoredDomid ? 'xenstore' : m?.cfg.role === 'guest' || m?.cfg.role === 'vm' ? m.cfg.role : 'driver';
      const devices: DeviceRow[] = [];
      for (const dev of m?.devices ?? []) {
        devices.push({
          type: dev.type, frontend: m!.cfg.name, backend: [...this.managed.values()].find((x) => x.domid === dev.backendId)?.cfg.name ?? `dom${dev.backendId}`,
          devid: dev.devid, name: dev.name,
          frontendState: dev.vhost ? XenbusState.Unknown : parseXenbusState(await this.xs.tryRead(`${dev.paths.frontend}/state`)),
          backendState: parseXenbusState(await this.xs.tryRead(`${dev.paths.backend}/state`)),
          export: dev.export,
          transport: dev.vhost ? 'vhost-user' : dev.type === 'vbd' ? 'blkif' : 'netif',
        });
      }
      out.push({
        domid: d.domid, name: d.name, role, kind: d.kind, state: d.state, memoryMiB: d.memoryMiB,
        uptimeS: (now - d.startedAt) / 1000, pid: d.pid, restarts: m?.restarts ?? 0,
        grantsMapped: d.grantsMapped, evtchns: d.evtchns, copyBatches: d.copyBatches, copyOps: d.copyOps, devices,
        ...(m?.accel ? { accel: m.accel } : {}),
        ...(m?.cpu ? { cpu: m.cpu } : {}),
      });
    }
    return out.sort((a, b) => a.domid - b.domid);
  }

  /** Stops guests, then driver domains, then xenstored, then asks hv to shut down. */
  async down(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const all = [...this.managed.values()].filter((m) => !m.dead);
    // Guests first (they tear down their TAPs, namespaces and exports), then their backends.
    const stop = async (ms: Managed[]) => {
      for (const m of ms) await this.dom.hc.call('domain_shutdown', { domid: m.domid, timeoutMs: SHUTDOWN_MS }).catch(() => undefined);
      await this.waitFor(() => ms.every((m) => m.dead), SHUTDOWN_MS + 2000).catch(() => undefined);
    };
    const frontend = (m: Managed) => m.cfg.role === 'guest' || m.cfg.role === 'vm';
    await stop(all.filter(frontend));
    await stop(all.filter((m) => !frontend(m)));
    await Promise.all([...this.cleanups]);
    await this.xs?.close().catch(() => undefined);
    if (this.xenstoredDomid >= 0) await this.dom.hc.call('domain_destroy', { domid: this.xenstoredDomid }).catch(() => undefined);
    await this.dom.hc.call('hv_shutdown', {});
  }
}

/** The namespaces a guest's vifs live in (one, when it is confined). */
function guestNamespaces(cfg: SystemDomain): string[] {
  return [...new Set(cfg.vifs.map((v) => vifNetns(cfg.name, v)))];
}
