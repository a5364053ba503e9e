// `ringside pci` end to end through the built CLI: the checker's verdicts and exit status against
// the sysfs fixtures and against a system's platform, the list, the assignable-pool requests (to a
// stand-in control socket), and usage errors.
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { encodeFrame, FrameReader } from '../control/wire.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(ROOT, 'dist', 'ringside.js');
const FIXTURES = join(ROOT, 'iommu', 'sysfs', 'fixtures');
const execFileP = promisify(execFile);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function ringside(...args: string[]): Promise<Run> {
  try {
    const r = await execFileP(process.execPath, [CLI, ...args], { timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : -1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

interface CheckJson {
  viable: boolean;
  source: string;
  checks: { domain: string; report: { viable: boolean; groups: { findings: { code: string; message: string; fix?: string }[] }[]; findings: { code: string }[] } }[];
}

const codes = (j: CheckJson): string[] => j.checks.flatMap((c) => [...c.report.findings.map((f) => f.code), ...c.report.groups.flatMap((g) => g.findings.map((f) => f.code))]);

describe('ringside pci', () => {
  if (!existsSync(CLI)) throw new Error('dist/ringside.js is not built: run `npm run build` first');
  const work = mkdtempSync(join(tmpdir(), 'ringside-pci-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  let n = 0;
  const cfg = (pci: string, name = 'pt'): string => {
    const p = join(work, `d${n++}.cfg`);
    writeFileSync(p, `name = "${name}"\ndriver_domain = 1\nrole = "net"\npci = [ ${pci} ]\n`);
    return p;
  };

  describe('check --sysfs against the fixtures', () => {
    it('nic-alone: viable, exit 0', async () => {
      const r = await ringside('pci', 'check', '--sysfs', join(FIXTURES, 'nic-alone'), cfg('"03:00.0"'));
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/all requested devices can be assigned/);
      expect(r.stdout).toMatch(/IOMMU group 2: viable/);
    });

    it('nic-sibling-bound: not viable because the group sibling is on igb, exit 1, says how to rebind', async () => {
      const r = await ringside('pci', 'check', '--sysfs', join(FIXTURES, 'nic-sibling-bound'), cfg('"01:00.0"'));
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/NOT viable/);
      expect(r.stdout).toMatch(/0000:01:00\.1.*igb/);
      expect(r.stdout).toMatch(/fix: .*vfio-pci/);
    });

    it('rmrr-direct: refused under the default strict policy, viable with a warning under relaxed', async () => {
      const strict = await ringside('pci', 'check', '--sysfs', join(FIXTURES, 'rmrr-direct'), cfg('"03:00.0"'));
      expect(strict.code).toBe(1);
      expect(strict.stdout).toMatch(/RMRR/);
      expect(strict.stdout).toMatch(/rdm_policy=relaxed/);
      const relaxed = await ringside('pci', 'check', '--sysfs', join(FIXTURES, 'rmrr-direct'), cfg('"03:00.0,rdm_policy=relaxed"'));
      expect(relaxed.code).toBe(0);
      expect(relaxed.stdout).toMatch(/warning: .*RMRR/);
    });

    it('iommu-off: tells how to turn the IOMMU on', async () => {
      const r = await ringside('pci', 'check', '--json', '--sysfs', join(FIXTURES, 'iommu-off'), cfg('"03:00.0"'));
      expect(r.code).toBe(1);
      const j = JSON.parse(r.stdout) as CheckJson;
      expect(j.viable).toBe(false);
      expect(j.source).toBe('sysfs');
      expect(codes(j)).toContain('iommu-off');
      expect(r.stdout).toMatch(/intel_iommu=on/);
    });

    it('bridge-in-group: the endpoint is viable, the root port itself is refused', async () => {
      const ok = await ringside('pci', 'check', '--sysfs', join(FIXTURES, 'bridge-in-group'), cfg('"02:00.0"'));
      expect(ok.code).toBe(0);
      const port = await ringside('pci', 'check', '--sysfs', join(FIXTURES, 'bridge-in-group'), cfg('"00:1c.0"'));
      expect(port.code).toBe(1);
      expect(port.stdout).toMatch(/is a bridge, not an endpoint/);
    });

    it('no-reset: refused, with the reason', async () => {
      const r = await ringside('pci', 'check', '--sysfs', join(FIXTURES, 'no-reset'), cfg('"05:00.0"'));
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/no reset_method/);
    });

    it('several files: one verdict each, exit 1 if any is not viable', async () => {
      const r = await ringside('pci', 'check', '--json', '--sysfs', join(FIXTURES, 'nic-sibling-bound'), cfg('"01:00.0"', 'a'), cfg('"07:00.0"', 'b'));
      expect(r.code).toBe(1);
      const j = JSON.parse(r.stdout) as CheckJson;
      expect(j.checks.map((c) => c.domain)).toEqual(['a', 'b']);
      expect(codes(j)).toContain('unknown-device');
    });
  });

  describe('check against a system platform', () => {
    // a non-ACS root port puts both NIC functions in one IOMMU group
    const sys = join(work, 'sys');
    mkdirSync(sys);
    writeFileSync(
      join(sys, 'host.cfg'),
      'iommu = "vtd"\ndevices = [\n "bdf=00:00.0, type=host-bridge",\n "bdf=00:01.0, type=root-port, acs=0",\n' +
        ' "bdf=01:00.0, type=nic, parent=00:01.0, wire=none",\n "bdf=01:00.1, type=nic, parent=00:01.0, wire=none",\n]\n',
    );
    writeFileSync(join(sys, 'nd.cfg'), 'name = "nd"\ndriver_domain = 1\nrole = "net"\npci = [ "01:00.0" ]\npci_seize = 1\n');

    it('a driver domain taking half an IOMMU group is refused and told what to do', async () => {
      const r = await ringside('pci', 'check', '--system', sys);
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/IOMMU group 1: not viable/);
      expect(r.stdout).toMatch(/also holds 0000:01:00\.1/);
      expect(r.stdout).toMatch(/fix: /);
    });

    it('taking the whole slot (01:00.*) is viable', async () => {
      const r = await ringside('pci', 'check', '--system', sys, '--json', cfg('"01:00.*,seize=1"', 'nd'));
      const j = JSON.parse(r.stdout) as CheckJson;
      expect(j.viable).toBe(true);
      expect(r.code).toBe(0);
    });

    it('without seize a device not in the assignable pool is refused with the command to run', async () => {
      const r = await ringside('pci', 'check', '--system', sys, cfg('"01:00.*"', 'nd'));
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/ringside pci assignable-add 0000:01:00\.0/);
    });

    it('a device another domain of the system owns is reported as taken', async () => {
      const r = await ringside('pci', 'check', '--system', join(ROOT, 'examples', 'default'), cfg('"02:00.0,seize=1"', 'thief'));
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/is assigned to domain \d+/);
      expect(r.stdout).toMatch(/domain ids in this check/);
    });
  });

  it('pci list of the default example names each function and the domain configured to own it', async () => {
    const r = await ringside('pci', 'list', '--json');
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as { bdf: string; description: string; owner: string; configuredFor: string | null }[];
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.some((d) => d.description === 'Host bridge' && d.owner === 'platform')).toBe(true);
    expect(rows.some((d) => d.configuredFor === 'netdom')).toBe(true);
    const t = await ringside('pci', 'list');
    expect(t.stdout).toMatch(/^BDF\s+ID\s+CLASS\s+GROUP\s+OWNER\s+FAULTS\s+CONFIGURED FOR/);
    expect(t.stdout).toMatch(/netdom/);
  });

  it('pci list --sysfs reads a host tree', async () => {
    const r = await ringside('pci', 'list', '--sysfs', join(FIXTURES, 'nic-sibling-bound'));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/0000:01:00\.1\s+8086:1521\s+Ethernet controller\s+5\s+igb/);
  });

  it('answers bad arguments with exit status 2 and what was wrong', async () => {
    const cases: [string[], RegExp][] = [
      [['pci'], /say what to do/],
      [['pci', 'frob'], /unknown command 'frob'/],
      [['pci', 'list', '--bogus'], /Unknown option '--bogus'/],
      [['pci', 'list', 'a', 'b'], /unexpected argument 'b'/],
      [['pci', 'list', '--sysfs', join(work, 'nowhere')], /--sysfs .*no .*sys\/bus\/pci\/devices/],
      [['pci', 'check', '--sysfs'], /argument missing/],
      [['pci', 'assignable-add'], /name the device/],
      [['pci', 'assignable-add', '1:2:3'], /not a PCI address/],
      [['pci', 'assignable-remove', '01:00.0', 'extra'], /unexpected argument 'extra'/],
      [['pci', 'assignable-list', '01:00.0'], /unexpected argument/],
    ];
    for (const [args, msg] of cases) {
      const r = await ringside(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(msg);
    }
  });

  it('a config mistake names the file and line (exit 1)', async () => {
    const bad = join(work, 'bad.cfg');
    writeFileSync(bad, 'name = "x"\ndriver_domain = 1\npci = [ "zz:00.0" ]\n');
    const r = await ringside('pci', 'check', bad);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad\.cfg:3/);
  });

  describe('assignable pool (to a stand-in control domain)', () => {
    // The ops dom0 is to answer; see PciControlRequest in pci.ts.
    async function fakeDom0(answer: (req: Record<string, unknown>) => unknown): Promise<{ state: string; seen: Record<string, unknown>[]; server: Server }> {
      const state = mkdtempSync(join(work, 'state-'));
      const seen: Record<string, unknown>[] = [];
      const server = createServer((s) => {
        const reader = new FrameReader();
        s.on('data', (d: Buffer) =>
          reader.push(d, (v) => {
            seen.push(v as Record<string, unknown>);
            s.write(encodeFrame(answer(v as Record<string, unknown>)));
          }),
        );
      });
      await new Promise<void>((r) => server.listen(join(state, 'control.sock'), r));
      return { state, seen, server };
    }

    it('sends {op: pci, action, bdf} with the BDF in full form and prints the answer', async () => {
      const f = await fakeDom0((req) =>
        req.action === 'assignable-list' ? { ok: true, devices: ['0000:01:00.0'] } : { ok: true, warnings: ['0000:01:00.0 could not be reset now'] },
      );
      try {
        const add = await ringside('pci', 'assignable-add', '1:00.0', '--state', f.state);
        expect(add.code).toBe(0);
        expect(add.stdout).toMatch(/0000:01:00\.0 is assignable/);
        expect(add.stderr).toMatch(/warning: 0000:01:00\.0 could not be reset now/);
        const list = await ringside('pci', 'assignable-list', '--state', f.state, '--json');
        expect(JSON.parse(list.stdout)).toEqual({ devices: ['0000:01:00.0'] });
        const rm = await ringside('pci', 'assignable-remove', '0000:01:00.0', '--state', f.state);
        expect(rm.code).toBe(0);
        expect(f.seen).toEqual([
          { op: 'pci', action: 'assignable-add', bdf: '0000:01:00.0' },
          { op: 'pci', action: 'assignable-list' },
          { op: 'pci', action: 'assignable-remove', bdf: '0000:01:00.0' },
        ]);
      } finally {
        f.server.close();
      }
    });

    it("passes dom0's refusal on (exit 1) and explains a dom0 without the op", async () => {
      const f = await fakeDom0((req) =>
        req.action === 'assignable-add' ? { ok: false, error: '0000:01:00.0 is assigned to domain 3; it is already out of the host\'s hands' } : { ok: false, error: 'unknown op "pci"' },
      );
      try {
        const add = await ringside('pci', 'assignable-add', '01:00.0', '--state', f.state);
        expect(add.code).toBe(1);
        expect(add.stderr).toMatch(/assigned to domain 3/);
        const old = await ringside('pci', 'assignable-remove', '01:00.0', '--state', f.state);
        expect(old.code).toBe(1);
        expect(old.stderr).toMatch(/does not support PCI operations/);
      } finally {
        f.server.close();
      }
    });

    it('pci faults prints what hv attributed: device, owner, IOVA, reason, grant', async () => {
      const fault = {
        at: Date.UTC(2026, 10, 22, 7, 0, 1, 250), bdf: '0000:01:00.0', sid: 0x100, domid: 2, owner: 'domain 2', iova: 0x100003000,
        reason: 5, reasonText: 'write to a read-only page', write: true, disposition: 'recorded', grant: { grantor: 4, ref: 17, iova: 0x100003000 },
      };
      const f = await fakeDom0((req) => (req.action === 'faults' ? { ok: true, faults: [fault] } : { ok: false, error: 'unexpected' }));
      try {
        const r = await ringside('pci', 'faults', '--state', f.state);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/07:00:01\.250\s+0000:01:00\.0\s+dom2\s+write\s+0x100003000\s+0x5 write to a read-only page\s+dom4 ref 17\s+recorded/);
        const j = await ringside('pci', 'faults', '--state', f.state, '--json');
        expect(JSON.parse(j.stdout)).toEqual([fault]);
        expect(f.seen).toEqual([{ op: 'pci', action: 'faults' }, { op: 'pci', action: 'faults' }]);
      } finally {
        f.server.close();
      }
    });

    it('says so when no system is running', async () => {
      const r = await ringside('pci', 'assignable-list', '--state', join(work, 'no-system'));
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/no running system/);
    });
  });
});
