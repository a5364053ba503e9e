// Typed face of the C++ addon (native/). The addon is found by walking up from this module, so
// the same code works from the TypeScript sources (tests) and from the esbuild bundles in dist/.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface RecvResult {
  /** bytes received; 0 means the peer closed */
  len: number;
  fds: number[];
  /** the message or its descriptors did not fit: the caller must drop it */
  truncated: boolean;
}

export interface Watcher {
  pause(): void;
  resume(): void;
  close(): void;
  ref(): void;
  unref(): void;
}

export interface WatcherCtor {
  /** mode 'eventfd': the counter is drained in C and passed as `count`; 'readable': count is 1 */
  new (fd: number, mode: 'eventfd' | 'readable', cb: (count: number) => void): Watcher;
}

export interface Addon {
  PAGE_SIZE: number;
  memfdCreate(name: string, size: number): number;
  mmap(fd: number, length: number, writable: boolean, offset?: number): ArrayBuffer;
  mmapFrames(fds: number[], writable: boolean): ArrayBuffer;
  munmap(buf: ArrayBuffer): void;
  isMapped(buf: ArrayBuffer): boolean;
  futexWait(buf: ArrayBuffer, byteOffset: number, expected: number, timeoutMs?: number): 'ok' | 'not-equal' | 'timed-out';
  futexWake(buf: ArrayBuffer, byteOffset: number, count?: number): number;
  reopen(fd: number, readOnly: boolean): number;
  dup(fd: number): number;
  close(fd: number): void;
  fdSize(fd: number): number;
  fdAccessMode(fd: number): 'r' | 'w' | 'rw';
  setNonblock(fd: number, on?: boolean): void;
  eventfd(): number;
  eventfdSignal(fd: number): void;
  eventfdRead(fd: number): number;
  seqpacketPair(): [number, number];
  sendmsg(fd: number, data: Uint8Array, fds?: number[]): number;
  /** wait: sleep on a blocking descriptor until a message or SO_RCVTIMEO (then null) */
  recvmsg(fd: number, buf: Uint8Array, wait?: boolean): RecvResult | null;
  setRecvTimeout(fd: number, ms: number): void;
  readFd(fd: number, buf: Uint8Array): number | null;
  writeFd(fd: number, buf: Uint8Array, length?: number): number | null;
  setParentDeathSignal(sig?: number): boolean;
  /** fallocate(PUNCH_HOLE | KEEP_SIZE): the range reads back as zeroes and frees its blocks */
  punchHole(fd: number, offset: number, length: number): void;
  noNewPrivs(): void;
  /** applies a role's seccomp table (native/seccomp-roles.h); returns how many syscalls it denies */
  seccompRole(role: 'driver' | 'driver-vhost' | 'guest' | 'xenstored'): number;
  sandboxStatus(): { noNewPrivs: boolean; seccomp: number; dumpable: boolean };
  setUndumpable(): void;
  tapOpen(name: string, opts?: { vnetHdr?: boolean }): { fd: number; name: string };
  tapSetOffload(fd: number, flags: { csum?: boolean; tso4?: boolean; tso6?: boolean }): void;
  /** a non-blocking listening Unix stream socket bound at `path` (sun_path holds 107 bytes) */
  unixListen(path: string, backlog?: number): number;
  /** the next queued connection (non-blocking), or null */
  accept(fd: number): number | null;
  /** a connected, non-blocking Unix stream socket to `path` */
  unixConnect(path: string): number;
  Watcher: WatcherCtor;
}

function findAddon(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'native', 'build', 'Release', 'ringside.node');
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new Error('ringside native addon not found (native/build/Release/ringside.node): run `npm ci` or `npm run build:native`');
}

const require = createRequire(import.meta.url);
const addonPath = findAddon();
export const native: Addon = require(addonPath) as Addon;

/** native/build/Release: the addon and the ringside-confine launcher built beside it. */
export function nativeBuildDir(): string {
  return dirname(addonPath);
}
export const PAGE_SIZE = 4096;

/** An error thrown by the addon carries the errno name in `code`. */
export function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}
