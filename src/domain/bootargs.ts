/** What the toolstack tells a driver domain or guest at boot (hv carries it as opaque bytes). */
export interface DomainBootArgs {
  /** this domain's own xenstore socket */
  xenstore: string;
  stateDir: string;
  /** where guests put their NBD export sockets */
  nbdDir: string;
  /** drop privileges (no_new_privs + seccomp deny-list) once set up */
  seccomp: boolean;
  /** PCI functions passed through to this domain (driver domains) */
  devices: { bdf: string; type: string }[];
  /** blk driver domains serving VMs: where their vhost-user sockets go (Landlock lets them bind only there) */
  vhostDir?: string;
  /** net driver domains: host TAP to bridge the switch to */
  uplink?: string;
}
