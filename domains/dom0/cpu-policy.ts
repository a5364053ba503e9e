// Which CPU model a VM runs, decided once when it first starts and kept for its life: the model
// its config names if this host offers it, or for cpu = "baseline" the most capable model this
// host and every peer in host.cfg offer (each peer's dom0 answers for its own host). A migration's
// destination checks the model it is sent the same way, before it creates anything.
import { statePaths } from '../../src/control/paths.js';
import { tryConnect } from '../../src/control/unix.js';
import { clipPeerText as clip, request } from '../../src/control/wire.js';
import { baselineModel, checkMask, missingFeatures, probeHostCpu, type HostCpu } from '../../src/vm/cpu.js';
import type { AccelChoice } from '../../src/vm/accel.js';
import type { Accelerator } from '../../src/vm/qemu.js';

export interface CpuChoice {
  model: string;
  why: string;
}

/** The model a VM names is not one this host can offer under the accelerator tried. */
export class CpuModelUnfit extends Error {
  constructor(
    vm: string,
    host: string,
    readonly reason: string,
  ) {
    super(`${vm}: host ${host} cannot run it: ${reason}`);
  }
}

/** how long a peer's dom0 gets to say which models its host offers */
const PEER_MS = 30_000;

export class CpuPolicy {
  private readonly probes = new Map<Accelerator, Promise<HostCpu>>();

  constructor(
    private readonly host: { name: string; cpuMask: readonly string[]; peers: readonly string[] },
    private readonly ownState: string,
    private readonly probe: (accel: Accelerator) => Promise<HostCpu> = probeHostCpu,
  ) {}

  /** QEMU's model table under `accel`, probed once; the mask is checked against it. */
  private cpu(accel: Accelerator): Promise<HostCpu> {
    let p = this.probes.get(accel);
    if (!p) {
      p = this.probe(accel).then((h) => {
        checkMask(h, this.host.cpuMask);
        return h;
      });
      // a failed probe (QEMU missing, a bad mask) is asked again next time, not cached
      p.catch(() => this.probes.delete(accel));
      this.probes.set(accel, p);
    }
    return p;
  }

  /** For each model, the features this host lacks to run it ([] = it can). */
  async check(accel: Accelerator, models: readonly string[]): Promise<Record<string, string[]>> {
    const h = await this.cpu(accel);
    return Object.fromEntries(models.map((m) => [m, missingFeatures(h, this.host.cpuMask, m).missing]));
  }

  /**
   * The accelerator and model together. accel = "auto" takes KVM once a guest runs under it, but
   * KVM may still not offer the model's features (nested KVM often hides some): such a VM runs
   * under TCG rather than not at all, and the reason says so. A model named for KVM is refused.
   */
  async settle(vm: string, asked: string, accel: AccelChoice, auto: boolean): Promise<{ accel: AccelChoice; cpu: CpuChoice }> {
    try {
      return { accel, cpu: await this.choose(vm, asked, accel.accel) };
    } catch (e) {
      if (!auto || accel.accel !== 'kvm' || !(e instanceof CpuModelUnfit)) throw e;
      // TCG emulates what KVM lacks; if it cannot either, its own refusal is the one to show
      const cpu = await this.choose(vm, asked, 'tcg');
      return { accel: { accel: 'tcg', why: `${accel.why}, but ${e.reason}, so TCG` }, cpu };
    }
  }

  /** The model `vm` gets here: what its config asks for, or the pool's baseline. */
  async choose(vm: string, asked: string, accel: Accelerator): Promise<CpuChoice> {
    const h = await this.cpu(accel);
    if (asked !== 'baseline') {
      const m = missingFeatures(h, this.host.cpuMask, asked);
      if (m.missing.length > 0) throw new CpuModelUnfit(vm, this.host.name, m.why);
      return { model: asked, why: `cpu = "${asked}"` };
    }
    const candidates = [...h.models.keys()];
    if (!candidates.some((m) => missingFeatures(h, this.host.cpuMask, m).missing.length === 0))
      throw new CpuModelUnfit(vm, this.host.name, `cpu = "baseline": no CPU model runs under ${accel.toUpperCase()} here`);
    const others: Record<string, string[]>[] = [];
    for (const peer of this.host.peers) {
      if (statePaths(peer).dir === statePaths(this.ownState).dir) continue;
      others.push(await askPeer(peer, accel, candidates));
    }
    const model = baselineModel(h, this.host.cpuMask, others);
    const pool = this.host.peers.length > 0 ? `host ${this.host.name} and its ${others.length} peer(s) in host.cfg` : `host ${this.host.name} (host.cfg lists no peers)`;
    return { model, why: `cpu = "baseline": ${model}, the most capable model ${pool} all offer` };
  }
}

async function askPeer(peer: string, accel: Accelerator, models: string[]): Promise<Record<string, string[]>> {
  const sock = await tryConnect(statePaths(peer).control);
  if (!sock) throw new Error(`cpu = "baseline" levels across host.cfg's peers, and no ringside host answers at ${peer}: start it, or take it out of peers`);
  try {
    // A peer that never answers is cut off: the destroyed socket fails the request.
    const timer = setTimeout(() => sock.destroy(new Error(`did not say which CPU models it offers within ${PEER_MS / 1000} s`)), PEER_MS);
    // The peer is another host: its answer is read as hostile, and every failure names it.
    let r;
    try {
      r = await request(sock, { op: 'cpu-check', accel, models }).finally(() => clearTimeout(timer));
    } catch (e) {
      throw new Error(`the peer host at ${peer}: ${clip((e as Error).message)}`);
    }
    if (!r.ok) throw new Error(`the peer host at ${peer} could not say which CPU models it offers: ${clip(String(r.error))}`);
    // A model it says nothing about, or says something unreadable about, counts as missing.
    const out: Record<string, string[]> = {};
    const missing = r.cpuMissing;
    if (typeof missing === 'object' && missing !== null)
      for (const m of models) {
        const v = (missing as Record<string, unknown>)[m];
        if (Array.isArray(v) && v.every((f) => typeof f === 'string')) out[m] = (v as string[]).slice(0, 64);
      }
    return out;
  } finally {
    sock.destroy();
  }
}
