// The xenstore keys that make a vbd a VM's disk: dom0 writes them beside libxl's params, mode and
// dev in the backend directory, and blkdom serves that vbd over vhost-user instead of blkif.
export const TRANSPORT_KEY = 'ringside/transport';
export const SOCKET_KEY = 'ringside/socket';
export const QUEUES_KEY = 'ringside/queues';
/** at most this many virtqueues per disk */
export const MAX_VBD_QUEUES = 16;

export function vhostVbdKeys(socket: string, queues: number): Record<string, string> {
  return { [TRANSPORT_KEY]: 'vhost-user', [SOCKET_KEY]: socket, [QUEUES_KEY]: String(queues) };
}
