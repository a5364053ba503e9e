// Kernel module facts read straight from the .ko files of an unpacked linux-image package: Debian's
// package ships no modules.dep (depmod makes it at install time, and we never install the kernel),
// so each module's dependencies come from its ELF `.modinfo` section (`depends=a,b`).

/** Module names compare with '-' and '_' equal, as the kernel does. */
export function moduleName(fileOrName: string): string {
  const base = fileOrName.slice(fileOrName.lastIndexOf('/') + 1);
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

/** The bytes of one ELF64 little-endian section, or undefined when the file has none of that name. */
export function elfSection(elf: Uint8Array, name: string): Uint8Array | undefined {
  const bad = (why: string): never => {
    throw new Error(`not a valid ELF64 module: ${why}`);
  };
  if (elf.length < 64 || elf[0] !== 0x7f || elf[1] !== 0x45 || elf[2] !== 0x4c || elf[3] !== 0x46) bad('no ELF magic');
  if (elf[4] !== 2 || elf[5] !== 1) bad('not 64-bit little-endian');
  const dv = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  const shoff = Number(dv.getBigUint64(0x28, true));
  const shentsize = dv.getUint16(0x3a, true);
  const shnum = dv.getUint16(0x3c, true);
  const shstrndx = dv.getUint16(0x3e, true);
  if (shentsize < 64 || shstrndx >= shnum || shoff + shnum * shentsize > elf.length) bad('section headers outside the file');
  const header = (i: number) => {
    const at = shoff + i * shentsize;
    const off = Number(dv.getBigUint64(at + 0x18, true));
    const size = Number(dv.getBigUint64(at + 0x20, true));
    if (off + size > elf.length) bad(`section ${i} outside the file`);
    return { nameOff: dv.getUint32(at, true), off, size };
  };
  const strtab = header(shstrndx);
  const want = new TextEncoder().encode(name + '\0');
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    const at = strtab.off + h.nameOff;
    if (at + want.length > strtab.off + strtab.size) continue;
    if (want.every((b, k) => elf[at + k] === b)) return elf.subarray(h.off, h.off + h.size);
  }
  return undefined;
}

/** The modules a .ko needs loaded first, from `depends=` in its .modinfo section. */
export function moduleDepends(ko: Uint8Array): string[] {
  const info = elfSection(ko, '.modinfo');
  if (!info) throw new Error('not a kernel module: no .modinfo section');
  for (const field of new TextDecoder().decode(info).split('\0'))
    if (field.startsWith('depends=')) return field.slice(8).split(',').filter(Boolean).map(moduleName);
  return [];
}

/**
 * The order to insmod `wanted` and everything they need: each module after its dependencies, and
 * otherwise in the order asked for. A dependency outside `known` or a cycle is an error.
 */
export function loadOrder(wanted: readonly string[], dependsOf: (module: string) => readonly string[] | undefined): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (m: string, chain: string[]) => {
    if (state.get(m) === 'done') return;
    if (state.get(m) === 'visiting') throw new Error(`modules depend on each other in a cycle: ${[...chain, m].join(' -> ')}`);
    const deps = dependsOf(m);
    if (deps === undefined) throw new Error(chain.length ? `${chain.at(-1)} depends on ${m}, which the kernel package does not have` : `the kernel package has no module ${m}`);
    state.set(m, 'visiting');
    for (const d of deps) visit(d, [...chain, m]);
    state.set(m, 'done');
    order.push(m);
  };
  for (const m of wanted) visit(m, []);
  return order;
}
