// A scriptable test domain: boots like any domain, then obeys JSON-line commands from the test
// on a Unix socket named in its boot arguments. It lets tests drive real grant and event-channel
// operations from a separate process (and fault in it, where the kernel must stop a write).
import { procStatus } from '../../support/proc.js';
import { closeSync, openSync } from 'node:fs';
import { Domain } from '../../../src/domain/runtime.js';
import { native } from '../../../src/native/index.js';
import { connect as netConnect } from 'node:net';
import { spawn } from 'node:child_process';
import { dropGuestPrivileges } from '../../../src/domain/sandbox.js';
import { GNTMAP_host_map, GNTMAP_readonly } from '../../../src/abi/grant.js';
import type { GrantMapping } from '../../../src/grant/mapper.js';
import { GrantError } from '../../../src/grant/mapper.js';
import { serveCommands, type Command } from '../serve.js';
import type { GntCopyOp } from '../../../src/hypercall/protocol.js';
import type { CopyRing } from '../../../src/grant/copy-ring.js';
import { GNTCOPY_RING_BYTES, RING_COUNT } from '../../../src/abi/gntcopy-ring.js';

let copyRing: CopyRing | undefined;


const dom = await Domain.boot();
const { control, dial } = dom.bootArgs<{ control: string; dial?: boolean }>();
const mappings = new Map<number, GrantMapping>();
let nextMap = 1;
const events = new Map<number, number>();

async function run(c: Command): Promise<unknown> {
  const n = (k: string) => Number(c[k]);
  switch (c.cmd) {
    case 'info':
      return { domid: dom.domid, name: dom.name, frames: dom.frames.total };
    case 'alloc':
      return { gfn: dom.frames.alloc() };
    case 'grant':
      return { ref: dom.grants.grantAccess(n('domid'), n('gfn'), Boolean(c.readonly)) };
    case 'setEntry':
      dom.grants.setEntry(n('ref'), n('domid'), n('gfn'), Boolean(c.readonly));
      return {};
    case 'endAccess':
      return { ok: dom.grants.endAccess(n('ref')) };
    case 'fill':
      dom.frames.view(n('gfn')).fill(n('value'));
      return {};
    case 'peek':
      return { value: dom.frames.view(n('gfn'))[n('offset')] };
    case 'map': {
      try {
        const m = await dom.mapper.map(n('dom'), c.refs as number[], { readonly: Boolean(c.readonly) });
        const id = nextMap++;
        mappings.set(id, m);
        return { id, first: m.bytes[0] };
      } catch (e) {
        if (e instanceof GrantError) return { status: e.status, statusName: e.statusName };
        throw e;
      }
    }
    case 'read':
      return { value: mappings.get(n('id'))!.bytes[n('offset')] };
    case 'write':
      // On a read-only mapping this store faults in the kernel and kills this process.
      mappings.get(n('id'))!.bytes[n('offset')] = n('value');
      return {};
    case 'unmap':
      await dom.mapper.unmap(mappings.get(n('id'))!);
      mappings.delete(n('id'));
      return {};
    case 'copy':
      return { statuses: await dom.mapper.copy(c.ops as never) };
    case 'copyRing': {
      // the same ops through a grant-copy ring
      copyRing ??= await dom.mapper.openCopyRing();
      const ops = c.ops as GntCopyOp[];
      ops.forEach((o, i) => copyRing!.set(i, o.source.ref, o.source.domid, o.source.offset, o.dest.ref, o.dest.domid, o.dest.offset, o.len, o.flags));
      await copyRing.run(ops.length);
      return { statuses: ops.map((_, i) => copyRing!.status(i)) };
    }
    case 'lieAboutCopyCount': {
      // a ring of its own, opened with the raw hypercall (no CopyRing, whose run() would refuse
      // the count): the count written where hv reads it, a kick, and no wait for done
      const { fds } = await dom.hc.call('gnttab_copy_ring', {});
      const [memfd, kick] = fds;
      const view = new DataView(native.mmap(memfd, GNTCOPY_RING_BYTES, true));
      view.setUint32(RING_COUNT, n('count'), true);
      native.eventfdSignal(kick);
      return {};
    }
    case 'openCopyRings': {
      let opened = 0;
      try {
        for (;;) {
          await dom.mapper.openCopyRing();
          opened++;
        }
      } catch (e) {
        return { opened, error: (e as Error).message };
      }
    }
    case 'allocUnbound': {
      const port = await dom.evtchn.allocUnbound(n('remoteDom'));
      dom.evtchn.on(port, () => events.set(port, (events.get(port) ?? 0) + 1));
      return { port };
    }
    case 'bind': {
      const port = await dom.evtchn.bindInterdomain(n('remoteDom'), n('remotePort'));
      dom.evtchn.on(port, () => events.set(port, (events.get(port) ?? 0) + 1));
      return { port };
    }
    case 'notify':
      for (let i = 0; i < (Number(c.times) || 1); i++) dom.evtchn.notify(n('port'));
      return {};
    case 'mask':
      dom.evtchn.mask(n('port'));
      return {};
    case 'unmask':
      dom.evtchn.unmask(n('port'));
      return {};
    case 'events':
      return { count: events.get(n('port')) ?? 0, pending: dom.evtchn.isPending(n('port')) };
    case 'closePort':
      await dom.evtchn.close(n('port'));
      return {};
    case 'hypercall': {
      const { result } = await dom.hc.call(c.op as never, c.args as never);
      return { result };
    }
    // Confinement checks: what the kernel lets this process reach.
    case 'tryOpen':
      try {
        closeSync(openSync(String(c.path), c.create ? 'wx' : c.write ? 'r+' : 'r'));
        return { ok: true };
      } catch (e) {
        return { ok: false, code: (e as NodeJS.ErrnoException).code };
      }
    case 'tryReopenGrant': {
      // Hostile: map a read-only grant by hand and try to reopen its descriptor read-write.
      const { result, fds } = await dom.hc.call('gnttab_map', { ops: [{ dom: n('dom'), ref: n('ref'), flags: GNTMAP_host_map | GNTMAP_readonly }] });
      try {
        if (result.results[0].status !== 0) return { ok: false, code: `GNTST ${result.results[0].status}` };
        try {
          closeSync(openSync(`/proc/self/fd/${fds[0]}`, 'r+'));
          return { ok: true };
        } catch (e) {
          return { ok: false, code: (e as NodeJS.ErrnoException).code };
        }
      } finally {
        for (const f of fds) native.close(f);
        await dom.hc.call('gnttab_unmap', { handles: result.results.map((r) => r.handle) });
      }
    }
    case 'tryConnect':
      return await new Promise((resolve) => {
        const s = netConnect(String(c.path));
        s.once('connect', () => {
          s.destroy();
          resolve({ ok: true });
        });
        s.once('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, code: e.code }));
      });
    case 'dropGuestPrivileges':
      dropGuestPrivileges(() => undefined);
      return {};
    case 'spawnChild': {
      // Hostile: leave a process behind, optionally trying to leave the process group too.
      const child = spawn('/usr/bin/sleep', ['300'], { stdio: 'ignore', detached: Boolean(c.detached) });
      return await new Promise((resolve) => {
        child.once('spawn', () => resolve({ ok: true, pid: child.pid }));
        child.once('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, code: e.code }));
      });
    }
    case 'trySignal':
      try {
        process.kill(n('pid'), 0);
        return { ok: true };
      } catch (e) {
        return { ok: false, code: (e as NodeJS.ErrnoException).code };
      }
    case 'status': {
      const st = procStatus('self');
      return { capEff: st.capEff, capBnd: st.capBnd, noNewPrivs: st.nnp, dumpable: native.sandboxStatus().dumpable };
    }
    case 'raw':
      // Hostile: push arbitrary bytes down the hypercall channel.
      native.sendmsg(3, new Uint8Array(c.bytes as number[]));
      return {};
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}


serveCommands(control, run, () => process.stdout.write(`probe ${dom.name} ready\n`), 'flat', dial === true);
