// The INIT body, checked field by field: hv checked the hardware list already, but hw treats
// every message as hostile, so a bug in hv becomes a clear refusal rather than a crash here.
import { isAbsolute } from 'node:path';
import type { HwDeviceSpec, HwInit } from '../../src/hw/wire.js';

const MAX_DEVICES = 1024;
const MAX_MEDIUM = 2 ** 44;

function fail(what: string): never {
  throw new RangeError(`INIT: ${what}`);
}

function record(v: unknown, at: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`${at} must be a map`);
  return v as Record<string, unknown>;
}

function uint(v: unknown, at: string, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) fail(`${at} must be an integer 0..${max}`);
  return v;
}

function flag(v: unknown, at: string): boolean {
  if (typeof v !== 'boolean') fail(`${at} must be true or false`);
  return v;
}

export function checkInit(body: unknown): HwInit {
  const o = record(body, 'body');
  const io = record(o.iommu, 'iommu');
  const aw = io.addressWidth;
  if (aw !== 39 && aw !== 48) fail('iommu.addressWidth must be 39 or 48');
  const iommu = { enabled: flag(io.enabled, 'iommu.enabled'), addressWidth: aw as 39 | 48, cachingMode: flag(io.cachingMode, 'iommu.cachingMode') };
  if (!Array.isArray(o.devices) || o.devices.length > MAX_DEVICES) fail(`devices must be a list of at most ${MAX_DEVICES}`);
  const devices = (o.devices as unknown[]).map((d, i) => device(record(d, `devices[${i}]`), `devices[${i}]`));
  const sids = new Set<number>();
  for (const d of devices) {
    if (sids.has(d.sid)) fail(`source id 0x${d.sid.toString(16)} is listed twice`);
    sids.add(d.sid);
  }
  for (const d of devices) {
    const w = d.wire;
    if (w?.kind !== 'cable') continue;
    const p = devices.find((x) => x.sid === w.peerSid);
    if (p === undefined || p === d || p.kind !== 'nic' || p.wire?.kind !== 'cable' || p.wire.peerSid !== d.sid) fail(`cable of ${d.name} does not end at a NIC cabled back to it`);
  }
  return { iommu, devices };
}

function device(o: Record<string, unknown>, at: string): HwDeviceSpec {
  const sid = uint(o.sid, `${at}.sid`, 0xffff);
  if (typeof o.name !== 'string' || !/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(o.name)) fail(`${at}.name must be a PCI address like 0000:01:00.0`);
  const name = o.name;
  if (o.kind === 'nvme') {
    const m = o.medium;
    if (typeof m !== 'string' || !isAbsolute(m) || m.length > 4096 || m.includes('\0')) fail(`${at}.medium must be an absolute path`);
    const d: HwDeviceSpec = { sid, name, kind: 'nvme', medium: m };
    if (o.sizeBytes !== undefined) d.sizeBytes = uint(o.sizeBytes, `${at}.sizeBytes`, MAX_MEDIUM);
    return d;
  }
  if (o.kind !== 'nic') fail(`${at}.kind must be nvme or nic`);
  const mac = o.mac;
  if (!Array.isArray(mac) || mac.length !== 6) fail(`${at}.mac must be six bytes`);
  const d: HwDeviceSpec = { sid, name, kind: 'nic', mac: mac.map((b, j) => uint(b, `${at}.mac[${j}]`, 255)) };
  const w = record(o.wire ?? { kind: 'none' }, `${at}.wire`);
  if (w.kind === 'tap') {
    if (typeof w.name !== 'string' || !/^[A-Za-z0-9_.-]{1,15}$/.test(w.name)) fail(`${at}.wire.name must be an interface name of 1-15 characters`);
    d.wire = { kind: 'tap', name: w.name };
  } else if (w.kind === 'cable') {
    d.wire = { kind: 'cable', peerSid: uint(w.peerSid, `${at}.wire.peerSid`, 0xffff) };
  } else if (w.kind === 'none') {
    d.wire = { kind: 'none' };
  } else fail(`${at}.wire.kind must be none, tap or cable`);
  if (o.offloads !== undefined) {
    if (typeof o.offloads !== 'boolean') fail(`${at}.offloads must be true or false`);
    d.offloads = o.offloads;
  }
  return d;
}
