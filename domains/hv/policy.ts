// Who may do what. hv consults this table before every privileged operation; a denial is
// logged with the domain, the operation and the reason, and counted for `ringside top`.

export type Caller = { domid: number; name: string; privileged: boolean };

type Rule = (caller: Caller, detail: PolicyDetail) => string | null;
export type PolicyDetail = { targetDom?: number };

const toolstackOnly: Rule = (c) => (c.privileged ? null : 'only the control domain may manage domains');

const RULES: Record<string, Rule> = {
  domain_create: toolstackOnly,
  domain_unpause: toolstackOnly,
  domain_destroy: toolstackOnly,
  domain_shutdown: toolstackOnly,
  domain_list: toolstackOnly,
  hv_shutdown: toolstackOnly,
  hv_info: toolstackOnly,
  platform_init: toolstackOnly,
  pci_list: toolstackOnly,
  pci_assignable_add: toolstackOnly,
  pci_assignable_remove: toolstackOnly,
  pci_assignable_list: toolstackOnly,
  pci_assign: toolstackOnly,
  pci_release: toolstackOnly,
  pci_faults: toolstackOnly,
  // the control domain drives no device: pci_device_open is for the owner, and dom0 owns none
  pci_device_open: (c) => (c.privileged ? 'the control domain drives no device (disaggregation policy)' : null),
  // The control domain holds no data path: it never maps another domain's frames.
  gnttab_map: (c, d) =>
    c.privileged && d.targetDom !== undefined && d.targetDom !== c.domid
      ? 'the control domain maps no guest memory (disaggregation policy)'
      : null,
  gnttab_copy_ring: (c) => (c.privileged ? 'the control domain copies no guest memory (disaggregation policy)' : null),
  gnttab_copy: (c, d) =>
    c.privileged && d.targetDom !== undefined && d.targetDom !== c.domid
      ? 'the control domain copies no guest memory (disaggregation policy)'
      : null,
};

export class Policy {
  denials = 0;
  constructor(private readonly log: (line: string) => void) {}

  /** Returns null when allowed, else the logged reason. */
  check(op: string, caller: Caller, detail: PolicyDetail = {}): string | null {
    const rule = RULES[op];
    const why = rule ? rule(caller, detail) : null;
    if (why) {
      this.denials++;
      const target = detail.targetDom !== undefined ? ` target dom${detail.targetDom}` : '';
      this.log(`policy: denied dom${caller.domid} (${caller.name}) ${op}${target}: ${why}`);
    }
    return why;
  }
}
