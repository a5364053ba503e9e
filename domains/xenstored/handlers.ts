// Turns each xenstore request (message types from xs_wire.h, semantics from docs/misc/xenstore.txt) into
// an operation and its reply. Malformed arguments are answered with EINVAL before anything is touched,
// and tree requests go through operations.ts whether or not they are inside a transaction.
import {
  canonicalPath,
  domainPath,
  joinStrings,
  parseDecimal,
  splitStrings,
  XsType,
  xsTypeName,
  type CanonicalPath,
  type XsMessage,
} from '../../src/xenstore/wire.js';
import { formatPerm, parsePerm, type XsPerm } from '../../src/xenstore/perms.js';
import type { Connection, Reply } from './connection.js';
import type { XenstoredCore } from './core.js';
import { XsOpError } from './operror.js';
import { isOwner, canRead } from './permissions.js';
import { Transaction } from './transaction.js';
import type { ChangeEvent } from './change.js';
import {
  checkNewPerms,
  opDirectory,
  opDirectoryPart,
  opGetPerms,
  opMkdir,
  opRead,
  opRm,
  opSetPerms,
  opWrite,
  type OpContext,
} from './operations.js';

// Highest domid a real domain can have (DOMID_FIRST_RESERVED - 1).
const DOMID_MAX_REAL = 0x7fef;
const OK = Buffer.from('OK\0', 'latin1');

const ok = (type: number, after?: () => void): Reply => ({ type, payload: OK, after });

// ---- argument parsing: every malformed request is EINVAL, never an exception of another kind ----------

function strings(msg: XsMessage): string[] {
  const { strings: list, rest } = splitStrings(msg.payload);
  if (rest.length > 0) throw new XsOpError('EINVAL', 'unterminated string');
  return list;
}

function exactly(msg: XsMessage, n: number): string[] {
  const list = strings(msg);
  if (list.length !== n) throw new XsOpError('EINVAL', `expected ${n} argument(s), got ${list.length}`);
  return list;
}

function atLeast(msg: XsMessage, n: number): string[] {
  const list = strings(msg);
  if (list.length < n) throw new XsOpError('EINVAL', `expected at least ${n} argument(s)`);
  return list;
}

function resolve(conn: Connection, raw: string, allowSpecial = false): CanonicalPath {
  const p = canonicalPath(raw, conn.domid, allowSpecial);
  if (!p) throw new XsOpError('EINVAL', 'invalid path');
  return p;
}

function domidArg(s: string, allowZero = false): number {
  const d = parseDecimal(s, DOMID_MAX_REAL);
  if (d === undefined || (d === 0 && !allowZero)) throw new XsOpError('EINVAL', `bad domid '${s.slice(0, 16)}'`);
  return d;
}

function requirePrivileged(conn: Connection): void {
  if (!conn.privileged) throw new XsOpError('EACCES');
}

// ---- tree requests, optionally inside a transaction ----------------------------------------------------

function lookupTx(conn: Connection, txId: number): Transaction | undefined {
  if (txId === 0) return undefined;
  const tx = conn.transactions.get(txId);
  if (!tx) throw new XsOpError('ENOENT', `no transaction ${txId}`);
  return tx;
}

// Outside a transaction events are collected and fired after the reply; inside, they wait for commit.
function opContext(core: XenstoredCore, conn: Connection, tx: Transaction | undefined, fired: ChangeEvent[]): OpContext {
  return {
    view: tx ?? core.store,
    who: conn.identity,
    quotas: core.quotas,
    emit: (ev) => (tx ? tx.events.push(ev) : fired.push(ev)),
  };
}

function treeRequest(
  core: XenstoredCore,
  conn: Connection,
  msg: XsMessage,
  run: (ctx: OpContext) => Buffer,
): Reply {
  const tx = lookupTx(conn, msg.txId);
  const fired: ChangeEvent[] = [];
  const payload = run(opContext(core, conn, tx, fired));
  const after = fired.length > 0 ? () => fired.forEach((ev) => core.watches.fire(ev)) : undefined;
  return { type: msg.type, payload, after };
}

function parsePerms(list: readonly string[]): XsPerm[] {
  return list.map((s) => {
    const p = parsePerm(s);
    if (!p) throw new XsOpError('EINVAL', `bad permission '${s.slice(0, 16)}'`);
    return p;
  });
}

function getSpecialPerms(core: XenstoredCore, conn: Connection, name: string): readonly XsPerm[] {
  const perms = core.specialPerms.get(name);
  if (!perms) throw new XsOpError('ENOENT');
  if (!canRead(conn.identity, perms)) throw new XsOpError('EACCES');
  return perms;
}

function setPerms(core: XenstoredCore, conn: Connection, msg: XsMessage): Reply {
  const [raw, ...rest] = atLeast(msg, 2);
  const path = resolve(conn, raw, true);
  const perms = parsePerms(rest);
  if (path.abs.startsWith('@')) {
    const cur = core.specialPerms.get(path.abs);
    if (!cur) throw new XsOpError('ENOENT');
    if (!isOwner(conn.identity, cur)) throw new XsOpError('EACCES');
    lookupTx(conn, msg.txId);
    checkNewPerms({ view: core.store, who: conn.identity, quotas: core.quotas, emit: () => undefined }, cur, perms);
    core.specialPerms.set(path.abs, perms);
    return ok(msg.type);
  }
  return treeRequest(core, conn, msg, (ctx) => {
    opSetPerms(ctx, path.abs, perms);
    return OK;
  });
}

// ---- watches -----------------------------------------------------------------------------------------

function watch(core: XenstoredCore, conn: Connection, msg: XsMessage): Reply {
  const [raw, token] = exactly(msg, 2);
  const path = resolve(conn, raw, true);
  if (!conn.privileged && core.domainUsage(conn.domid).watches >= core.quotas.watchesPerDomain) {
    throw new XsOpError('E2BIG', `more than ${core.quotas.watchesPerDomain} watches`);
  }
  if (!core.watches.add(conn, path.abs, token, path.relative)) throw new XsOpError('EEXIST');
  // Xen fires every new watch once, with the path as the client gave it.
  return ok(msg.type, () => conn.sendWatchEvent(raw, token));
}

function unwatch(core: XenstoredCore, conn: Connection, msg: XsMessage): Reply {
  const [raw, token] = exactly(msg, 2);
  const path = resolve(conn, raw, true);
  if (!core.watches.remove(conn, path.abs, token)) throw new XsOpError('ENOENT');
  return ok(msg.type);
}

// ---- transactions -----------------------------------------------------------------------------------

function transactionStart(core: XenstoredCore, conn: Connection, msg: XsMessage): Reply {
  if (lookupTx(conn, msg.txId)) throw new XsOpError('EBUSY', 'transactions do not nest');
  if (msg.payload.length > 1 || (msg.payload.length === 1 && msg.payload[0] !== 0)) throw new XsOpError('EINVAL');
  if (!conn.privileged && core.domainUsage(conn.domid).transactions >= core.quotas.transactionsPerDomain) {
    throw new XsOpError('ENOSPC', `more than ${core.quotas.transactionsPerDomain} transactions`);
  }
  const id = core.allocTxId(conn);
  conn.transactions.set(id, new Transaction(id, core.store, conn.privileged ? undefined : core.quotas.transactionNodes));
  return { type: msg.type, payload: Buffer.from(`${id}\0`, 'latin1') };
}

function transactionEnd(core: XenstoredCore, conn: Connection, msg: XsMessage): Reply {
  const tx = lookupTx(conn, msg.txId);
  if (!tx) throw new XsOpError('ENOENT', 'TRANSACTION_END outside a transaction');
  const [arg] = exactly(msg, 1);
  if (arg !== 'T' && arg !== 'F') throw new XsOpError('EINVAL', 'TRANSACTION_END takes T or F');
  conn.transactions.delete(tx.id);
  if (arg === 'F') return ok(msg.type);
  if (tx.conflicts()) throw new XsOpError('EAGAIN');
  // Counts may have moved outside the transaction since its operations were checked.
  if (!conn.privileged) {
    for (const [owner, growth] of tx.growth()) {
      if (core.store.owned(owner) + growth > core.quotas.nodesPerDomain) {
        throw new XsOpError('ENOSPC', `commit would exceed ${core.quotas.nodesPerDomain} nodes for dom${owner}`);
      }
    }
  }
  tx.commit();
  const events = tx.events;
  return ok(msg.type, () => events.forEach((ev) => core.watches.fire(ev)));
}

// ---- domains ---------------------------------------------------------------------------------------

async function introduce(core: XenstoredCore, conn: Connection, msg: XsMessage): Promise<Reply> {
  requirePrivileged(conn);
  // domid, mfn, event-channel port; older toolstacks append a path, which is ignored.
  const list = strings(msg);
  if (list.length < 3 || list.length > 4) throw new XsOpError('EINVAL');
  const domid = domidArg(list[0]);
  for (const n of [list[1], list[2]]) {
    if (!/^[0-9]{1,20}$/.test(n)) throw new XsOpError('EINVAL', 'mfn and port must be decimal');
  }
  try {
    await core.introduce(domid, list[1], list[2]);
  } catch (e) {
    core.log(`dom${domid}: introduce failed: ${e instanceof Error ? e.message : String(e)}`);
    throw new XsOpError('EIO');
  }
  return ok(msg.type);
}

async function release(core: XenstoredCore, conn: Connection, msg: XsMessage): Promise<Reply> {
  requirePrivileged(conn);
  const domid = domidArg(exactly(msg, 1)[0]);
  if (!(await core.release(domid))) throw new XsOpError('ENOENT');
  return ok(msg.type);
}

function getDomainPath(msg: XsMessage): Reply {
  const d = parseDecimal(exactly(msg, 1)[0], 0xffff);
  if (d === undefined) throw new XsOpError('EINVAL');
  return { type: msg.type, payload: Buffer.from(`${domainPath(d)}\0`, 'latin1') };
}

function isDomainIntroduced(core: XenstoredCore, msg: XsMessage): Reply {
  const domid = domidArg(exactly(msg, 1)[0], true);
  const yes = domid === 0 || core.domains.has(domid);
  return { type: msg.type, payload: Buffer.from(yes ? 'T\0' : 'F\0', 'latin1') };
}

function setTarget(core: XenstoredCore, conn: Connection, msg: XsMessage): Reply {
  requirePrivileged(conn);
  const [a, b] = exactly(msg, 2);
  const domid = domidArg(a);
  const target = domidArg(b);
  const rec = core.domains.get(domid);
  if (!rec || !core.domains.has(target)) throw new XsOpError('ENOENT');
  rec.target = target;
  return ok(msg.type);
}

function resume(core: XenstoredCore, conn: Connection, msg: XsMessage): Reply {
  requirePrivileged(conn);
  if (!core.domains.has(domidArg(exactly(msg, 1)[0]))) throw new XsOpError('ENOENT');
  return ok(msg.type);
}

function resetWatches(core: XenstoredCore, conn: Connection, msg: XsMessage): Reply {
  core.watches.removeAll(conn);
  conn.transactions.clear();
  return ok(msg.type);
}

// ---- dispatch -----------------------------------------------------------------------------------------

export function handleMessage(core: XenstoredCore, conn: Connection, msg: XsMessage): Reply | Promise<Reply> {
  switch (msg.type) {
    case XsType.READ: {
      const path = resolve(conn, exactly(msg, 1)[0]);
      return treeRequest(core, conn, msg, (ctx) => opRead(ctx, path.abs));
    }
    case XsType.WRITE: {
      const nul = msg.payload.indexOf(0);
      if (nul < 0) throw new XsOpError('EINVAL', 'unterminated path');
      const path = resolve(conn, msg.payload.toString('latin1', 0, nul));
      const value = msg.payload.subarray(nul + 1);
      return treeRequest(core, conn, msg, (ctx) => {
        opWrite(ctx, path.abs, value);
        return OK;
      });
    }
    case XsType.MKDIR: {
      const path = resolve(conn, exactly(msg, 1)[0]);
      return treeRequest(core, conn, msg, (ctx) => {
        opMkdir(ctx, path.abs);
        return OK;
      });
    }
    case XsType.RM: {
      const path = resolve(conn, exactly(msg, 1)[0]);
      return treeRequest(core, conn, msg, (ctx) => {
        opRm(ctx, path.abs);
        return OK;
      });
    }
    case XsType.DIRECTORY: {
      const path = resolve(conn, exactly(msg, 1)[0]);
      return treeRequest(core, conn, msg, (ctx) => opDirectory(ctx, path.abs));
    }
    case XsType.DIRECTORY_PART: {
      const [raw, off] = exactly(msg, 2);
      const path = resolve(conn, raw);
      const offset = parseDecimal(off, 0xffffffff);
      if (offset === undefined) throw new XsOpError('EINVAL', 'bad offset');
      return treeRequest(core, conn, msg, (ctx) => opDirectoryPart(ctx, path.abs, offset));
    }
    case XsType.GET_PERMS: {
      const path = resolve(conn, exactly(msg, 1)[0], true);
      if (path.abs.startsWith('@')) {
        lookupTx(conn, msg.txId);
        return { type: msg.type, payload: joinStrings(getSpecialPerms(core, conn, path.abs).map(formatPerm)) };
      }
      return treeRequest(core, conn, msg, (ctx) => joinStrings(opGetPerms(ctx, path.abs).map(formatPerm)));
    }
    case XsType.SET_PERMS:
      return setPerms(core, conn, msg);
    case XsType.WATCH:
      return watch(core, conn, msg);
    case XsType.UNWATCH:
      return unwatch(core, conn, msg);
    case XsType.TRANSACTION_START:
      return transactionStart(core, conn, msg);
    case XsType.TRANSACTION_END:
      return transactionEnd(core, conn, msg);
    case XsType.INTRODUCE:
      return introduce(core, conn, msg);
    case XsType.RELEASE:
      return release(core, conn, msg);
    case XsType.GET_DOMAIN_PATH:
      return getDomainPath(msg);
    case XsType.IS_DOMAIN_INTRODUCED:
      return isDomainIntroduced(core, msg);
    case XsType.SET_TARGET:
      return setTarget(core, conn, msg);
    case XsType.RESUME:
      return resume(core, conn, msg);
    case XsType.RESET_WATCHES:
      return resetWatches(core, conn, msg);
    default:
      conn.noteOnce('type', `unsupported message type ${xsTypeName(msg.type)}`);
      throw new XsOpError('ENOSYS');
  }
}
