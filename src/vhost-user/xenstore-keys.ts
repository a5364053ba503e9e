// The xenstore keys that make a vbd or vif a VM's device: dom0 writes them beside libxl's keys in
// the backend directory, and blkdom or netdom serves that device over vhost-user instead of a
// Xen ring.
export const TRANSPORT_KEY = 'ringside/transport';
export const SOCKET_KEY = 'ringside/socket';
export const QUEUES_KEY = 'ringside/queues';
/** at most this many virtqueues per disk */
export const MAX_VBD_QUEUES = 16;

export function vhostDeviceKeys(socket: string, queues: number): Record<string, string> {
  return { [TRANSPORT_KEY]: 'vhost-user', [SOCKET_KEY]: socket, [QUEUES_KEY]: String(queues) };
}
