// A driver domain's `xl devd`: one backend instance for every device directory the toolstack
// writes under our backend/<kind>, closed when the directory goes. Each device's
// `ringside/transport` key picks the Xen-ABI backend (blkif, netif) or the vhost-user one for a
// VM, so blkdom and netdom only say what those two are. A device whose backend fails to start is
// logged and left alone; the others keep being served.
import type { XenstoreClient } from '../xenstore/client.js';
import { TRANSPORT_KEY } from '../vhost-user/xenstore-keys.js';
import { DeviceDirWatcher } from './device.js';

export interface ServedDevice {
  close(): unknown;
}

export interface BackendDirOptions {
  /** e.g. /local/domain/<us>/backend/vbd */
  dir: string;
  /** the device kind in messages: vbd, vif */
  kind: string;
  /** who is logging: blkdom, netdom */
  who: string;
  /** the Xen-ABI transport's name, the default when the key is absent: blkif, netif */
  native: string;
  startNative(path: string): Promise<ServedDevice>;
  startVhostUser(path: string): Promise<ServedDevice>;
  log: (line: string) => void;
}

export async function serveBackendDir(xs: XenstoreClient, o: BackendDirOptions): Promise<DeviceDirWatcher> {
  const served = new Map<string, Promise<ServedDevice | null>>();
  const start = async (path: string): Promise<ServedDevice> => {
    const transport = (await xs.tryRead(`${path}/${TRANSPORT_KEY}`)) ?? o.native;
    if (transport === 'vhost-user') return o.startVhostUser(path);
    if (transport !== o.native) throw new Error(`${path}/${TRANSPORT_KEY} = ${JSON.stringify(transport.slice(0, 40))}: expected ${o.native} or vhost-user`);
    return o.startNative(path);
  };
  // backend/<kind>/<frontend domid>/<devid>
  const watcher = new DeviceDirWatcher(
    xs,
    o.dir,
    2,
    (path) => {
      served.set(
        path,
        start(path).catch((e: Error) => {
          o.log(`${o.who}: ${o.kind} ${path}: ${e.message}`);
          return null;
        }),
      );
    },
    (path) => {
      const d = served.get(path);
      served.delete(path);
      void d?.then((x) => x?.close());
      o.log(`${o.who}: ${o.kind} ${path} removed`);
    },
  );
  await watcher.start();
  return watcher;
}
