import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { deleteObject, getObject, listKeys, s3LocationOf } from "../records/s3-backend";
import { HolderPlace, judgeHolder, LeaseHolder, LocalFacts } from "./lease";

/**
 * Whether the process that holds something (a backend lock, a scratch workspace, an operation in flight)
 * is still running. `dead` is only said with proof; anything else is `alive` (with when its lease ends,
 * when it keeps one) or `unknown`.
 */
export type Liveness =
  | { state: "alive"; detail: string; expiresAt?: string }
  | { state: "dead"; detail: string }
  | { state: "unknown"; detail: string };

/** Who took something, as recorded when it was taken: the process, where it ran, and its lease. */
export interface Holder extends LeaseHolder {
  username?: string;
}

// /proc/<pid>/stat's start time is in clock ticks since boot, and boot time has whole-second precision:
// a process counts as started after the holder's timestamp only beyond this margin.
const startSlackMs = 2_000;
const clockTicks = 100;

function bootTimeMs(): number | undefined {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n").find((l) => l.startsWith("btime "));
  return line ? Number(line.split(" ")[1]) * 1000 : undefined;
}

function readOr(read: () => string): string | undefined {
  try {
    return read().trim() || undefined;
  } catch {
    return undefined;
  }
}

let here: HolderPlace | undefined;

/**
 * This machine as a holder records it: hostname, the kernel's boot id, and the inode of this process's
 * pid namespace. Two containers that share a hostname (host networking) differ in the pid namespace; a
 * reboot changes the boot id: a pid seen here is the holder's pid only when all three match.
 */
export function thisPlace(): HolderPlace {
  here ??= {
    hostname: os.hostname(),
    bootId: readOr(() => fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8")),
    pidNs: readOr(() => fs.readlinkSync("/proc/self/ns/pid")),
  };
  return here;
}

/** A holder taken now by this process: its pid, this machine, and the time. */
export function holderHere(extra: Partial<Holder> = {}): Holder {
  return { pid: process.pid, ...thisPlace(), since: new Date().toISOString(), ...extra };
}

/**
 * Whether the holder's pid, read on the holder's own machine, still runs the holder's program. Dead means
 * proven: the pid is gone, a zombie, a process started after the holder took it (the pid was reused), or
 * a process that is not `program` (the pid was reused by something else).
 */
export function processLiveness(holder: Holder, program: RegExp): Liveness {
  const who = `pid ${holder.pid} on ${holder.hostname}`;
  if (!Number.isInteger(holder.pid) || holder.pid <= 0) return { state: "unknown", detail: `${who}: not a process id` };
  let stat: string;
  let cmdline: string;
  try {
    stat = fs.readFileSync(`/proc/${holder.pid}/stat`, "utf8");
    cmdline = fs.readFileSync(`/proc/${holder.pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
  } catch {
    return { state: "dead", detail: `${who} is gone` };
  }
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (fields[0] === "Z" || fields[0] === "X") return { state: "dead", detail: `${who} has exited (zombie)` };
  const boot = bootTimeMs();
  const since = Date.parse(holder.since);
  if (boot !== undefined && !Number.isNaN(since)) {
    const startedAt = boot + (Number(fields[19]) / clockTicks) * 1000;
    if (startedAt > since + startSlackMs) {
      return { state: "dead", detail: `${who} is gone (the pid now belongs to a process started ${new Date(startedAt).toISOString()}, after ${holder.since})` };
    }
  }
  if (!program.test(cmdline)) return { state: "dead", detail: `${who} is gone (the pid now runs \`${cmdline.slice(0, 80)}\`)` };
  return { state: "alive", detail: `${who} is running (\`${cmdline.slice(0, 80)}\`)` };
}

/** The facts of this machine a holder is judged by, its processes read from /proc as running `program`. */
export function localFacts(program: RegExp, now = Date.now()): LocalFacts {
  return { ...thisPlace(), now, processState: (h) => processLiveness(h, program) };
}

/**
 * Judges a holder as a lease ({@link judgeHolder}): on its own machine (host, boot and pid namespace) by
 * its process, elsewhere by its lease; a holder elsewhere without a lease is `unknown`.
 */
export function livenessOf(holder: Holder, program: RegExp, now = Date.now()): Liveness {
  const j = judgeHolder(holder, localFacts(program, now));
  if (j.state === "gone") return { state: "dead", detail: j.detail };
  if (j.state === "held") return { state: "alive", detail: j.detail, expiresAt: j.expiresAt };
  return j;
}

/** A Pulumi lock on a stack (a file of a `file://` backend, an object of an `s3://` one) and what is known of its holder. */
export interface BackendLock {
  /** The lock's path, or its `s3://bucket/key`. */
  file: string;
  holder: Holder;
  liveness: Liveness;
  /** The mark or preview lease of the operation that took it, when one did. */
  of?: Holder;
}

/** The Pulumi CLI, as it appears in `/proc/<pid>/cmdline`. */
export const pulumiCommand = /(^|\/)pulumi(\s|$)/;
/** A Node.js process (stackpin itself). */
export const nodeCommand = /(^|\/)node(js)?(\s|$)/;

/** A Pulumi lock's holder as its lock records it: `{pid, username, hostname, timestamp}`. */
function lockHolder(text: string | undefined): Holder {
  let raw: { pid?: number; hostname?: string; timestamp?: string; username?: string } = {};
  try {
    raw = JSON.parse(text ?? "");
  } catch {
    // A lock being written right now, or unreadable: its holder cannot be judged.
  }
  return { pid: Number(raw.pid), hostname: String(raw.hostname ?? "?"), since: String(raw.timestamp ?? ""), username: raw.username };
}

// Pulumi takes its lock after stackpin wrote the in-flight mark of the operation that runs it.
const lockAfterMarkSlackMs = 2_000;

/**
 * Judges a Pulumi lock. Pulumi records no lease and no boot id or pid namespace; a lock taken on a mark's
 * host after the mark was written belongs to the operation that mark names (stackpin marks every engine
 * call that locks: previews with a lease of their own, updates, refreshes, destroys and recoveries with the
 * in-flight mark), so it is judged on that operation's machine and lease, by the lock's own pid. Any other
 * lock is judged without a place: unknown, since it cannot expire. `marks`: the stack's in-flight mark and
 * preview leases; the newest one that can have taken the lock is its operation's.
 */
export function judgeLock(holder: Holder, marks: Holder | Holder[] | undefined, now = Date.now()): Liveness & { of?: Holder } {
  const since = Date.parse(holder.since);
  const candidates = (Array.isArray(marks) ? marks : marks ? [marks] : []).filter(
    (m) => m.hostname === holder.hostname && !Number.isNaN(since) && since >= Date.parse(m.since) - lockAfterMarkSlackMs,
  );
  const mark = candidates.sort((a, b) => Date.parse(b.since) - Date.parse(a.since))[0];
  const placed: Holder = mark ? { ...holder, bootId: mark.bootId, pidNs: mark.pidNs, ttlMs: mark.ttlMs, renewedAt: mark.renewedAt ?? mark.since } : holder;
  const l = livenessOf(placed, pulumiCommand, now);
  if (l.state === "unknown" && !mark) {
    return { state: "unknown", detail: `${l.detail}; no stackpin operation on the stack took it` };
  }
  return { ...l, ...(mark ? { of: mark } : {}) };
}

/**
 * The locks Pulumi holds on a stack: `.pulumi/locks/<org>/<project>/<stack>/<uuid>.json` holding
 * `{pid, username, hostname, timestamp}`, in a `file://` backend's directory or an `s3://` backend's
 * bucket (under the URL's prefix). Each is judged by {@link judgeLock} against `marks`, the stack's
 * in-flight mark and preview leases. Other backends' locks are not readable here: empty.
 */
export async function readBackendLocks(backendUrl: string, project: string, stack: string, marks?: Holder | Holder[]): Promise<BackendLock[]> {
  const s3 = s3LocationOf(backendUrl);
  if (s3) {
    const locks: BackendLock[] = [];
    for (const key of await listKeys(s3, ".pulumi/locks/")) {
      const parts = key.split("/");
      if (parts.length !== 6 || parts[3] !== project || parts[4] !== stack || !parts[5].endsWith(".json")) continue;
      const holder = lockHolder((await getObject(s3, key))?.text);
      locks.push(judged(`${s3.url}/${key}`, holder, marks));
    }
    return locks;
  }
  return readFileBackendLocks(backendUrl, project, stack, marks);
}

function judged(file: string, holder: Holder, marks: Holder | Holder[] | undefined): BackendLock {
  const { of, ...liveness } = judgeLock(holder, marks);
  return { file, holder, liveness: liveness as Liveness, ...(of ? { of } : {}) };
}

/** {@link readBackendLocks} of a `file://` backend, read synchronously; empty for other backends. */
export function readFileBackendLocks(backendUrl: string, project: string, stack: string, marks?: Holder | Holder[]): BackendLock[] {
  if (!backendUrl.startsWith("file://")) return [];
  const root = path.join(backendUrl.slice("file://".length), ".pulumi", "locks");
  if (!fs.existsSync(root)) return [];
  const locks: BackendLock[] = [];
  for (const org of fs.readdirSync(root)) {
    const dir = path.join(root, org, project, stack);
    if (!fs.existsSync(dir)) continue;
    for (const name of fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
      const file = path.join(dir, name);
      let text: string | undefined;
      try {
        text = fs.readFileSync(file, "utf8");
      } catch {
        // Released meanwhile.
        continue;
      }
      locks.push(judged(file, lockHolder(text), marks));
    }
  }
  return locks;
}

/**
 * Removes one lock (and the attributes file the blob store keeps beside a file), nothing else. Pulumi
 * names each lock by its process's own id and never rewrites it: deleting that name deletes the lock that
 * was judged, never a successor's.
 */
export async function removeBackendLock(backendUrl: string, lock: BackendLock): Promise<void> {
  const s3 = s3LocationOf(backendUrl);
  if (s3) {
    await deleteObject(s3, lock.file.slice(s3.url.length + 1));
    return;
  }
  fs.rmSync(lock.file, { force: true });
  fs.rmSync(`${lock.file}.attrs`, { force: true });
}

/** Pulumi's plugins as they appear in `/proc/<pid>/cmdline`: the Node dynamic provider, resource and language plugins. */
export const pluginCommand = /@pulumi\/pulumi\/cmd\/dynamic-provider|(^|\/)pulumi-(resource|language|analyzer)-/;

/** The pids of running processes whose working directory is `dir` (or was, before it was removed). */
export function processesIn(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cwd = fs.readlinkSync(`/proc/${entry}/cwd`).replace(/ \(deleted\)$/, "");
      const state = fs.readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]?.[0];
      if (cwd === dir && state !== "Z") pids.push(Number(entry));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

/**
 * A `file://` backend (gocloud's fileblob) writes each object to a temporary file, then its attributes
 * file (`<object>.attrs`, which holds the MD5), then renames the temporary file into place. A process
 * killed in between leaves an empty or partial `.attrs` beside an intact object, and Pulumi then fails
 * every command on the stack with `failed to load checkpoint: EOF`; it also leaves the `.tmp` file.
 * This rewrites each unreadable attributes file of the stack's checkpoint, tags, history and backups
 * from its object (the MD5 recomputed) and removes the abandoned temporary files, returning one line per
 * repair. Only files untouched for a while are repaired, and nothing while a lock's holder may be
 * writing (judged against `marks`, the stack's in-flight mark and preview leases): a live write finishes
 * within milliseconds.
 */
export function repairInterruptedWrites(backendUrl: string, project: string, stack: string, marks?: Holder | Holder[]): string[] {
  if (!backendUrl.startsWith("file://")) return [];
  const root = path.join(backendUrl.slice("file://".length), ".pulumi");
  if (readFileBackendLocks(backendUrl, project, stack, marks).some((l) => l.liveness.state !== "dead")) return [];
  const quietMs = 1_000;
  const old = (f: string) => Date.now() - fs.statSync(f).mtimeMs > quietMs;
  const candidates: string[] = [];
  const stacksDir = path.join(root, "stacks", project);
  if (fs.existsSync(stacksDir)) {
    candidates.push(...fs.readdirSync(stacksDir).filter((f) => f.startsWith(`${stack}.`)).map((f) => path.join(stacksDir, f)));
  }
  const lockDirs = fs.existsSync(path.join(root, "locks")) ? fs.readdirSync(path.join(root, "locks")).map((org) => path.join("locks", org, project, stack)) : [];
  for (const kind of [path.join("history", project, stack), path.join("backups", project, stack), ...lockDirs]) {
    const dir = path.join(root, kind);
    if (fs.existsSync(dir)) candidates.push(...fs.readdirSync(dir).map((f) => path.join(dir, f)));
  }
  const repairs: string[] = [];
  for (const file of candidates) {
    // A write never renamed into place (checkpoint, tags, history or lock): its writer is gone.
    if (file.endsWith(".tmp") && old(file)) {
      fs.rmSync(file, { force: true });
      repairs.push(`removed ${path.relative(root, file)}, a write that never completed`);
      continue;
    }
    if (!file.endsWith(".attrs") || !old(file)) continue;
    const object = file.slice(0, -".attrs".length);
    try {
      JSON.parse(fs.readFileSync(file, "utf8"));
      continue;
    } catch {
      if (!fs.existsSync(object)) continue;
    }
    const md5 = crypto.createHash("md5").update(fs.readFileSync(object)).digest("base64");
    const attrs = {
      "user.cache_control": "",
      "user.content_disposition": "",
      "user.content_encoding": "",
      "user.content_language": "",
      "user.content_type": "text/plain; charset=utf-8",
      "user.metadata": null,
      md5,
    };
    fs.writeFileSync(file, JSON.stringify(attrs));
    repairs.push(`rewrote ${path.relative(root, file)}, left empty by a write that was killed (the object itself is intact)`);
  }
  return repairs;
}
