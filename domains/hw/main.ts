// hw entry point: the emulated silicon hv owns. It is not a domain (no domid, no hypercalls):
// hv starts it with two sockets, sends it the hardware list and the memory it may DMA into, and
// programs its VT-d unit through register reads and writes. It dies with hv (PDEATHSIG) and exits
// when hv closes its end. Once its media and TAPs are open it drops privileges as driver
// domains do, so a device model that is tricked into misbehaving stays boxed in.
import { native } from '../../src/native/index.js';
import { dropDriverPrivileges } from '../../src/domain/sandbox.js';
import { HwServer } from './server.js';
import { HW_EVENT_FD, HW_RPC_FD } from '../../src/hw/wire.js';

// hw maps every domain's memory: no process of the same uid may open /proc/<hw>/mem or /fd, or
// find it in a core dump. First, before it maps anything.
native.setUndumpable();
native.setParentDeathSignal(9);
const server: HwServer = new HwServer(HW_RPC_FD, HW_EVENT_FD, {
  onHvGone: () => process.exit(0),
  onInitialised: () => dropDriverPrivileges((l) => server.log(l)),
});
process.on('uncaughtException', (e) => {
  // stderr reaches hv's log through the pipe hv reads; the socket may be what failed
  process.stderr.write(`hw: fatal: ${e.stack ?? e.message}\n`);
  try {
    // owners whose device has nothing in flight learn at once that it is gone
    server.close();
  } catch {
    // exiting is all that is left
  }
  process.exit(1);
});
