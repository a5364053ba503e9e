// hw entry point: the emulated silicon hv owns. It is not a domain (no domid, no hypercalls):
// hv starts it with two sockets, sends it the hardware list and the memory it may DMA into, and
// programs its VT-d unit through register reads and writes. It dies with hv (PDEATHSIG) and exits
// when hv closes its end. Once its media and TAPs are open it drops privileges as driver
// domains do, so a device model that is tricked into misbehaving stays boxed in.
import { native } from '../../src/native/index.js';
import { dropDriverPrivileges } from '../../src/domain/sandbox.js';
import { HwServer } from './server.js';
import { HW_EVENT_FD, HW_RPC_FD } from './wire.js';

native.setParentDeathSignal(9);
const server: HwServer = new HwServer(HW_RPC_FD, HW_EVENT_FD, {
  onHvGone: () => process.exit(0),
  onInitialised: () => dropDriverPrivileges((l) => server.log(l)),
});
process.on('uncaughtException', (e) => {
  // stderr reaches hv's log through the pipe hv reads; the socket may be what failed
  process.stderr.write(`hw: fatal: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
