// One `disk = [...]` entry in xl-disk-configuration(5) form, e.g.
//   'backend=blkdom, vdev=xvda, target=guest1.img, format=raw, access=rw, size=64M'
//   'guest1.img,raw,xvda,rw'            (positional: target, format, vdev, access)
//   'phy:guest1.img,xvda,w'             (xl's deprecated three-item form)
// xl lets `target=` swallow the rest of the string so paths may contain commas; here it swallows
// only the following items that are not `key=value` or flags, so options may also follow it.

import { isAbsolute, resolve } from 'node:path';
import { quote, unknownHint, type ErrorWhere } from './errors.js';
import { SeenOptions, specFail, splitSpec } from './spec.js';
import { parseSize } from './units.js';
import { parseVdev } from './vdev.js';
import { formatBdf, parseBdf, type Bdf } from './bdf.js';

export type DiskAccess = 'r' | 'w';

export interface DiskSpec {
  /** Driver domain serving the disk (its `name`). */
  backend: string;
  vdev: string;
  /** Xen vbd number (xvda = 51712): the device id in xenstore. */
  devid: number;
  /** Image path, absolute (relative targets are resolved against the config file's directory);
   *  for a device target, `pci:DDDD:BB:DD.F`. */
  target: string;
  /** `target=pci:BB:DD.F`: the disk is the whole NVMe controller at this address, owned by the
   *  backend through the IOMMU (the device path); absent for a raw image served directly. */
  device: Bdf | undefined;
  /** The target exactly as written, for messages. */
  targetAsWritten: string;
  format: 'raw';
  /** Xenstore `mode`: r or w. */
  access: DiskAccess;
  /** Create the image with this size if it does not exist. */
  sizeBytes: number | undefined;
  discard: boolean;
  where: ErrorWhere;
}

const KEYS = ['backend', 'vdev', 'target', 'format', 'access', 'size', 'devtype'] as const;
const FLAGS = ['discard', 'no-discard'] as const;
const POSITIONAL = ['target', 'format', 'vdev', 'access'] as const;
const OTHER_FORMATS = ['qcow', 'qcow2', 'vhd', 'qed', 'vmdk'];
const MAX_PATH = 4096;

const sizeText0 = (named: Map<string, string>) => named.get('size');

export function parseDisk(text: string, where: ErrorWhere, baseDir: string): DiskSpec {
  const fail = (problem: string, hint?: string): never => specFail(where, problem, hint);
  const seen = new SeenOptions(where);
  const named = new Map<string, string>();
  const positional: string[] = [];
  let discard: boolean | undefined;
  let inTarget = false;

  for (const item of splitSpec(text, where)) {
    const isOption = item.key !== undefined && (KEYS as readonly string[]).includes(item.key);
    const isFlag = item.key === undefined && (FLAGS as readonly string[]).includes(item.value);
    if (inTarget && item.key === undefined && !isFlag && item.value !== 'cdrom') {
      // Part of a target path that contained a comma. A `key=value` piece is never glued on, so a
      // mistyped option after target= is reported rather than silently becoming part of the path.
      named.set('target', `${named.get('target')},${item.value}`);
      continue;
    }
    inTarget = false;
    if (isFlag) {
      seen.add('discard');
      discard = item.value === 'discard';
    } else if (item.key !== undefined) {
      if (!isOption) fail(`unknown disk option '${item.key}'`, unknownHint(item.key, [...KEYS, ...FLAGS]));
      seen.add(item.key);
      named.set(item.key, item.value);
      inTarget = item.key === 'target';
    } else if (item.value === 'cdrom' || item.value === 'devtype=cdrom') {
      fail('cdrom devices are not supported', 'blkdom serves read-write or read-only disks; use access=ro');
    } else {
      positional.push(item.value);
    }
  }
  if (text.trim() === '') fail('empty disk entry', "write e.g. 'backend=blkdom, vdev=xvda, target=disk.img'");
  assignPositional(positional, named, seen, where);

  const backend = named.get('backend');
  if (!backend) fail('missing backend=', 'add backend=<driver domain name>, e.g. backend=blkdom');

  const vdevText = named.get('vdev');
  if (!vdevText) fail('missing vdev=', 'add vdev=xvda (the disk name the guest sees)');
  const vdev = parseVdev(vdevText as string);
  if (typeof vdev === 'string') fail(vdev);

  let targetText = named.get('target') ?? '';
  let prefixFormat: string | undefined;
  const prefix = /^(?:tap2?:)?(aio|raw|file|phy|qdisk|qcow2?|vhd|qed|vmdk):/.exec(targetText);
  if (prefix) {
    if (OTHER_FORMATS.includes(prefix[1])) prefixFormat = prefix[1];
    targetText = targetText.slice(prefix[0].length);
  }
  if (targetText === '') fail('missing target=', 'add target=<raw image path>, e.g. target=guest1.img');
  let device: Bdf | undefined;
  if (targetText.startsWith('pci:')) {
    const b = parseBdf(targetText.slice(4));
    if (typeof b === 'string') fail(`target=${quote(targetText)}: ${b}`, 'write target=pci:BB:DD.F naming an nvme device of host.cfg');
    device = b as Bdf;
    if (sizeText0(named) !== undefined) fail('size= has no meaning for a device target', 'set the size on the nvme device in host.cfg');
  }
  if (targetText.length > MAX_PATH) fail(`target path is longer than ${MAX_PATH} characters`);

  const format = prefixFormat ?? (named.get('format') || 'raw');
  if (format !== 'raw') {
    const hint = OTHER_FORMATS.includes(format)
      ? 'blkdom serves raw images only; convert with: qemu-img convert -O raw IN OUT'
      : 'write format=raw';
    fail(`format ${quote(format)} is not supported`, hint);
  }

  const accessText = named.get('access') || 'rw';
  let access: DiskAccess;
  if (accessText === 'r' || accessText === 'ro') access = 'r';
  else if (accessText === 'w' || accessText === 'rw') access = 'w';
  else access = fail(`access=${quote(accessText)} is not r, ro, w or rw`, 'write access=rw or access=ro');

  const devtype = named.get('devtype');
  if (devtype !== undefined && devtype !== 'disk') fail(`devtype=${quote(devtype)} is not supported`, 'only devtype=disk');

  let sizeBytes: number | undefined;
  const sizeText = named.get('size');
  if (sizeText !== undefined) {
    const s = parseSize(sizeText);
    if (typeof s === 'string') fail(`size: ${s}`);
    sizeBytes = s as number;
  }

  const v = vdev as Exclude<typeof vdev, string>;
  return {
    backend: backend as string,
    vdev: v.name,
    devid: v.devid,
    target: device ? `pci:${formatBdf(device)}` : isAbsolute(targetText) ? targetText : resolve(baseDir, targetText),
    device,
    targetAsWritten: targetText,
    format: 'raw',
    access,
    sizeBytes,
    discard: discard ?? true,
    where,
  };
}

function assignPositional(values: string[], named: Map<string, string>, seen: SeenOptions, where: ErrorWhere): void {
  if (values.length === 0) return;
  // xl's deprecated `TARGET,VDEV,ACCESS` form: recognisable because the second item is a disk name.
  if (values.length === 3 && POSITIONAL.every((k) => !named.has(k)) && typeof parseVdev(values[1].replace(/:cdrom$/, '')) !== 'string') {
    values = [values[0], '', values[1], values[2]];
  }
  const free = POSITIONAL.filter((k) => !named.has(k));
  if (values.length > free.length) {
    specFail(where, `too many positional values (${values.map((v) => quote(v, 20)).join(', ')})`, `positional values fill ${free.join(', ') || 'nothing (all are set by name)'} in that order; name the others, e.g. vdev=xvda`);
  }
  values.forEach((v, i) => {
    seen.add(free[i]);
    if (v !== '') named.set(free[i], v);
  });
}
