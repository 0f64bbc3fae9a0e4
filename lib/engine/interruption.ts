import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/**
 * Whether the process that holds something (a backend lock, a scratch workspace, an operation in flight)
 * is still running. `dead` is only said with proof; anything else is `alive` or `unknown`.
 */
export type Liveness =
  | { state: "alive"; detail: string }
  | { state: "dead"; detail: string }
  | { state: "unknown"; detail: string };

/** Who took something, as recorded when it was taken. */
export interface Holder {
  pid: number;
  hostname: string;
  /** When it was taken (ISO 8601); a process started after this cannot be the holder. */
  since: string;
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

/**
 * Judges a holder conservatively. Dead means proven: on this host and the pid is gone, a zombie, a
 * process started after the holder took it (the pid was reused), or a process that is not `program`
 * (the pid was reused by something else). A holder on another host is `unknown`: a pid says nothing there.
 */
export function livenessOf(holder: Holder, program: RegExp): Liveness {
  const who = `pid ${holder.pid} on ${holder.hostname}`;
  if (holder.hostname !== os.hostname()) {
    return { state: "unknown", detail: `${who} (another host: this machine cannot tell whether it still runs)` };
  }
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

/** A Pulumi lock file of a `file://` backend and what is known of its holder. */
export interface BackendLock {
  file: string;
  holder: Holder;
  liveness: Liveness;
}

/** The Pulumi CLI, as it appears in `/proc/<pid>/cmdline`. */
export const pulumiCommand = /(^|\/)pulumi(\s|$)/;
/** A Node.js process (stackpin itself). */
export const nodeCommand = /(^|\/)node(js)?(\s|$)/;

/**
 * The locks Pulumi holds on a stack of a `file://` backend: `.pulumi/locks/<org>/<project>/<stack>/<uuid>.json`
 * with `{pid, username, hostname, timestamp}`. Other backends' locks are not readable here: empty.
 */
export function readBackendLocks(backendUrl: string, project: string, stack: string): BackendLock[] {
  if (!backendUrl.startsWith("file://")) return [];
  const root = path.join(backendUrl.slice("file://".length), ".pulumi", "locks");
  if (!fs.existsSync(root)) return [];
  const locks: BackendLock[] = [];
  for (const org of fs.readdirSync(root)) {
    const dir = path.join(root, org, project, stack);
    if (!fs.existsSync(dir)) continue;
    for (const name of fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
      const file = path.join(dir, name);
      let raw: { pid?: number; hostname?: string; timestamp?: string; username?: string } = {};
      try {
        raw = JSON.parse(fs.readFileSync(file, "utf8"));
      } catch {
        // A lock being written right now, or unreadable: its holder cannot be judged.
      }
      const holder: Holder = { pid: Number(raw.pid), hostname: String(raw.hostname ?? "?"), since: String(raw.timestamp ?? ""), username: raw.username };
      locks.push({ file, holder, liveness: livenessOf(holder, pulumiCommand) });
    }
  }
  return locks;
}

/** Removes one lock file (and the attributes file the blob store keeps beside it), nothing else. */
export function removeBackendLock(lock: BackendLock): void {
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
 * writing: a live write finishes within milliseconds.
 */
export function repairInterruptedWrites(backendUrl: string, project: string, stack: string): string[] {
  if (!backendUrl.startsWith("file://")) return [];
  const root = path.join(backendUrl.slice("file://".length), ".pulumi");
  if (readBackendLocks(backendUrl, project, stack).some((l) => l.liveness.state !== "dead")) return [];
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
