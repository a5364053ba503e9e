// A system is a directory: one xl.cfg-style file per domain (`*.cfg`) plus the platform's hardware
// list `host.cfg` (optional: without it the platform has an IOMMU and no devices). Loading parses
// every file, then checks the rules that span them and settles the start order.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { crossCheck, type SystemDomain } from './crosscheck.js';
import { parseDomain, type DomainConfig } from './domain.js';
import { ConfigError } from './errors.js';
import { emptyHost, parseHost, type HostConfig } from './host.js';
import { MAX_CONFIG_BYTES, parseXlCfg } from './xlcfg.js';

export type { DomainRole, SystemDomain } from './crosscheck.js';

export interface SystemConfig {
  dir: string;
  host: HostConfig;
  /** In start order: every driver domain before the domains it serves. */
  domains: SystemDomain[];
  /** each domain file's text as it was parsed, by path: what a migration sends, whatever the file says later */
  sources: Record<string, string>;
}

export const HOST_FILE = 'host.cfg';
export const MAX_DOMAINS = 256;

/** Loads `dir/*.cfg`; throws ConfigError naming file, line and key on the first problem. */
export function loadSystem(dir: string): SystemConfig {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError({ file: dir, line: 0 }, `cannot read the system directory (${code})`, 'give the directory holding the *.cfg files');
  }
  const files: Record<string, Uint8Array> = {};
  for (const name of names.filter(isCfgName).sort()) {
    const bytes = readCfg(join(dir, name), true);
    if (bytes) files[name] = bytes;
  }
  return loadSystemFromFiles(files, dir);
}

/** Same as loadSystem over in-memory files (name -> contents), for tests and embedded systems. */
export function loadSystemFromFiles(files: Record<string, string | Uint8Array>, dir = '.'): SystemConfig {
  const names = Object.keys(files).filter(isCfgName).sort();
  const domainNames = names.filter((n) => n !== HOST_FILE);
  if (domainNames.length === 0) {
    throw new ConfigError({ file: dir, line: 0 }, 'no domain configs (*.cfg) in the system directory', 'add one file per domain, e.g. guest1.cfg with name = "guest1"');
  }
  if (domainNames.length > MAX_DOMAINS) {
    throw new ConfigError({ file: dir, line: 0 }, `${domainNames.length} domain configs; at most ${MAX_DOMAINS} are supported`, 'split the system');
  }
  const host = HOST_FILE in files ? parseHost(parseXlCfg(files[HOST_FILE], join(dir, HOST_FILE), dir)) : emptyHost();
  const domains: DomainConfig[] = domainNames.map((n) => parseDomain(parseXlCfg(files[n], join(dir, n), dir)));
  const sources: Record<string, string> = {};
  for (const n of domainNames) sources[join(dir, n)] = typeof files[n] === 'string' ? (files[n] as string) : Buffer.from(files[n] as Uint8Array).toString('utf8');
  return { dir, host, domains: crossCheck(domains, host), sources };
}

/**
 * A domain that arrives at a running system (an incoming migration): its file, parsed with its
 * relative paths resolved against `base`, checked together with the system's own domains (its
 * backends must be here, its PCI functions free). A domain of the same name in the system's files
 * is the one arriving: it is checked in that one's place.
 */
export function admitDomain(sys: SystemConfig, text: string, file: string, base: string): SystemDomain {
  const d = parseDomain(parseXlCfg(text, file, base));
  const others: DomainConfig[] = sys.domains.filter((x) => x.name !== d.name).map((x) => ({ ...x, role: x.role === 'blk' || x.role === 'net' ? x.role : undefined }));
  const all = crossCheck([...others, d], sys.host);
  return all.find((x) => x.name === d.name) as SystemDomain;
}

/** One domain file on its own (e.g. for `ringside pci check guest.cfg`); no cross-file checks. */
export function loadDomainFile(path: string): DomainConfig {
  return parseDomain(parseXlCfg(readCfg(path) as Uint8Array, path));
}

export function loadHostFile(path: string): HostConfig {
  return parseHost(parseXlCfg(readCfg(path) as Uint8Array, path));
}

/** Reads a config file with the size limit applied before reading; `skipOthers` skips non-files. */
function readCfg(path: string, skipOthers = false): Uint8Array | undefined {
  try {
    const st = statSync(path);
    if (!st.isFile()) {
      if (skipOthers) return undefined;
      throw new ConfigError({ file: path, line: 0 }, 'not a regular file', 'give a config file');
    }
    if (st.size > MAX_CONFIG_BYTES) throw new ConfigError({ file: path, line: 0 }, `file is ${st.size} bytes, more than the ${MAX_CONFIG_BYTES}-byte limit`, 'is this really a config file?');
    return readFileSync(path);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError({ file: path, line: 0 }, `cannot read the file (${(e as NodeJS.ErrnoException).code ?? 'error'})`, 'check the path and its permissions');
  }
}

function isCfgName(name: string): boolean {
  return name.endsWith('.cfg') && !name.startsWith('.');
}
