import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import { withFileLock, writeFileAtomic } from "./ledger";
import { getObject, S3Location, updateObject } from "./s3-backend";

/** One line of the audit trail. `hash` covers every other field, `prev` included, so entries chain. */
export interface AuditEntry {
  /**
   * The entry's own id, made once when it is appended (entries of an older stackpin have none): an append
   * retried after its write landed finds it in the trail and is not written twice.
   */
  id?: string;
  seq: number;
  at: string;
  stack: string;
  actor: string;
  op: string;
  from?: string;
  to?: string;
  /** `refused`: stopped before anything changed (a missing approval, a freeze); the stack's state is untouched. */
  result: "succeeded" | "failed" | "refused";
  detail?: string;
  /**
   * The anchor (`seq:hash`) found when this entry was appended: an append after entries were cut from the
   * end names an anchor that no longer matches the entry before it, so the cut stays visible.
   */
  anchor?: string;
  prev: string;
  hash: string;
}

/** What `audit verify` found. */
export interface AuditVerification {
  ok: boolean;
  entries: number;
  file: string;
  problems: string[];
  /**
   * Set when the newest entry is correctly chained but not anchored: an append was interrupted between
   * writing the entry and moving the anchor (a crash, not an edit). The next append anchors it.
   */
  interrupted?: string;
}

const genesis = "0".repeat(64);

function hashOf(entry: Omit<AuditEntry, "hash">): string {
  const canonical = JSON.stringify(Object.fromEntries(Object.entries(entry).sort(([a], [b]) => a.localeCompare(b))));
  return crypto.createHash("sha256").update(canonical).digest("hex");
}

export function headOf(e: AuditEntry | undefined): string | undefined {
  return e ? `${e.seq}:${e.hash}` : undefined;
}

/**
 * Where a stack's audit trail lives: beside the state for a file:// backend (so every machine sharing it
 * appends to one trail), else in the project's `.stackpin/audit`.
 */
export function auditFile(backendUrl: string, projectDir: string, project: string, stack: string): string {
  const base = backendUrl.startsWith("file://") ? path.join(backendUrl.slice("file://".length), ".stackpin-audit", project) : path.join(projectDir, ".stackpin", "audit");
  return path.join(base, `${stack}.jsonl`);
}

/** The trail's lines: entries, and a last line cut short by a crash mid-write (no newline, not JSON). */
export function parseTrail(text: string): { entries: AuditEntry[]; torn?: string } {
  const lines = text.split("\n");
  const tail = lines.pop() ?? "";
  const entries = lines.filter((l) => l.trim()).map((l) => JSON.parse(l) as AuditEntry);
  if (!tail.trim()) return { entries };
  try {
    return { entries: [...entries, JSON.parse(tail) as AuditEntry] };
  } catch {
    return { entries, torn: tail };
  }
}

/**
 * An append-only, tamper-evident log: each entry carries the hash of the one before it, and the newest
 * `seq:hash` is anchored in a file beside it (`<stack>.head`), so an edited, reordered, removed or
 * truncated entry is detected. Appends hold a lock across reading the last entry, writing the new one and
 * moving the anchor, so two processes never fork the chain; the entry is written before the anchor, so a
 * crash between the two leaves an entry that `verify` reports as an interrupted append, not as tampering.
 */
export class AuditLog implements AuditTrail {
  constructor(
    readonly file: string,
    private readonly options: {
      /** The stack, for messages. */
      stackName?: string;
      /** Where an older stackpin kept the anchor (a stack tag), read while the anchor file does not exist. */
      legacyAnchor?: () => Promise<string | undefined>;
    } = {},
  ) {}

  /** The file holding the newest anchored `seq:hash`. */
  get anchorFile(): string {
    return this.file.replace(/\.jsonl$/, "") + ".head";
  }

  /** The entries as written, oldest first. */
  entries(): AuditEntry[] {
    return this.read().entries;
  }

  private read(): { entries: AuditEntry[]; torn?: string } {
    if (!fs.existsSync(this.file)) return { entries: [] };
    return parseTrail(fs.readFileSync(this.file, "utf8"));
  }

  private async anchored(): Promise<string | undefined> {
    if (fs.existsSync(this.anchorFile)) return fs.readFileSync(this.anchorFile, "utf8").trim() || undefined;
    return this.options.legacyAnchor?.();
  }

  private lock<T>(fn: () => Promise<T>): Promise<T> {
    return withFileLock(`${this.file}.lock`, this.options.stackName ?? path.basename(this.file, ".jsonl"), fn);
  }

  /** Appends an entry chained to the last one and moves the anchor. */
  async append(entry: Omit<AuditEntry, "seq" | "prev" | "hash" | "at" | "anchor"> & { at?: string }): Promise<AuditEntry> {
    return this.lock(async () => {
      const { entries, torn } = this.read();
      if (torn !== undefined) {
        // A line cut short by a crash mid-write never was an entry: drop it before appending after it.
        fs.truncateSync(this.file, fs.statSync(this.file).size - Buffer.byteLength(torn));
      }
      const last = entries[entries.length - 1];
      const anchor = await this.anchored();
      const full = chainEntry(entry, last, anchor);
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      const fd = fs.openSync(this.file, "a", 0o644);
      try {
        fs.writeSync(fd, `${JSON.stringify(full)}\n`);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      writeFileAtomic(this.anchorFile, `${headOf(full)}\n`);
      return full;
    });
  }

  /**
   * Re-computes every hash and link, and compares the newest entry with the anchor. One entry past the
   * anchor, correctly chained, is an interrupted append (`interrupted`), not a problem.
   */
  async verify(): Promise<AuditVerification> {
    return this.lock(async () => {
      let read: { entries: AuditEntry[]; torn?: string } = { entries: [] };
      let readError: string | undefined;
      try {
        read = this.read();
      } catch (err) {
        readError = `the file is not valid JSON lines: ${(err as Error).message}`;
      }
      return verifyTrail(this.file, read, await this.anchored(), readError);
    });
  }
}

/**
 * Checks a trail read from wherever it is kept: every hash and link, and the newest entry against the
 * anchor. One entry past the anchor, correctly chained, is an interrupted append (`interrupted`).
 */
export function verifyTrail(file: string, read: { entries: AuditEntry[]; torn?: string }, anchored: string | undefined, readError?: string): AuditVerification {
  const problems: string[] = readError ? [readError] : [];
  const { entries, torn } = read;
  let prev = genesis;
  entries.forEach((e, i) => {
    const { hash, ...body } = e;
    if (e.seq !== i + 1) problems.push(`entry ${i + 1} has seq ${e.seq}: an entry was removed or reordered`);
    if (e.prev !== prev) problems.push(`entry ${e.seq} does not follow entry ${i}: an entry before it was removed or changed`);
    if (hashOf(body) !== hash) problems.push(`entry ${e.seq} was edited: its hash does not match its content`);
    // The anchor an entry saw is the entry before it, or the one before that after an interrupted append.
    if (e.anchor !== undefined && e.anchor !== headOf(entries[i - 1]) && e.anchor !== headOf(entries[i - 2])) {
      problems.push(`entry ${e.seq} was appended when the anchor named ${e.anchor}, which is not an entry before it: entries were removed from the end before it`);
    }
    prev = hash;
  });
  const last = entries[entries.length - 1];
  const head = headOf(last);
  let interrupted: string | undefined;
  if (anchored !== head) {
    const beforeLast = headOf(entries[entries.length - 2]);
    if (last && problems.length === 0 && anchored === beforeLast) {
      interrupted = `entry ${last.seq} (${last.op} at ${last.at}) is chained but was never anchored: an append was interrupted between writing it and anchoring it; the next append anchors it`;
    } else {
      problems.push(`the newest entry (${head ?? "none"}) is not the one anchored in the backend (${anchored ?? "none"}): entries were removed from the end or the file was replaced`);
    }
  }
  if (torn !== undefined && problems.length === 0) {
    interrupted = `${interrupted ? `${interrupted}; ` : ""}the last line is cut short (${torn.length} bytes, not an entry): an append was interrupted while writing it; the next append removes it`;
  }
  return { ok: problems.length === 0, entries: entries.length, file, problems, ...(interrupted ? { interrupted } : {}) };
}

/** The next entry of a trail whose newest entry is `last`, appended when the anchor named `anchor`. */
export function chainEntry(entry: Omit<AuditEntry, "seq" | "prev" | "hash" | "at" | "anchor"> & { at?: string }, last: AuditEntry | undefined, anchor: string | undefined): AuditEntry {
  const body: Omit<AuditEntry, "hash"> = {
    ...entry,
    id: entry.id ?? crypto.randomUUID(),
    at: entry.at ?? new Date().toISOString(),
    seq: (last?.seq ?? 0) + 1,
    ...(anchor ? { anchor } : {}),
    prev: last?.hash ?? genesis,
  };
  return { ...body, hash: hashOf(body) } as AuditEntry;
}

/** What `audit verify` and `audit show` need of a trail, wherever it is kept. */
export interface AuditTrail {
  /** A path or URL, for messages. */
  readonly file: string;
  entries(): AuditEntry[] | Promise<AuditEntry[]>;
  append(entry: Omit<AuditEntry, "seq" | "prev" | "hash" | "at" | "anchor"> & { at?: string }): Promise<AuditEntry>;
  verify(): Promise<AuditVerification>;
}

function seqOf(anchor: string | undefined): number {
  return Number(anchor?.split(":")[0] ?? 0) || 0;
}

/**
 * The audit trail of a stack on an `s3://` backend, in the state's bucket so every machine appends to and
 * verifies the same one: `.stackpin-audit/<project>/<stack>.jsonl` and its anchor `<stack>.head` (under
 * the backend URL's prefix). There is no lock: an append rewrites the trail object only if it is still the
 * version read (S3 `If-Match`, `If-None-Match: *` for the first), and starts again from a fresh read when
 * another machine appended first, so two appenders never fork the chain. The anchor is written after the
 * entry, and only moves forward (also conditionally), so a crash between the two leaves an interrupted
 * append, as on `file://`.
 */
export class S3AuditLog implements AuditTrail {
  private readonly trailKey: string;
  private readonly headKey: string;

  constructor(
    private readonly loc: S3Location,
    project: string,
    private readonly stackName: string,
  ) {
    this.trailKey = `.stackpin-audit/${project}/${stackName}.jsonl`;
    this.headKey = `.stackpin-audit/${project}/${stackName}.head`;
  }

  get file(): string {
    return `${this.loc.url}/${this.trailKey}`;
  }

  async entries(): Promise<AuditEntry[]> {
    return parseTrail((await getObject(this.loc, this.trailKey))?.text ?? "").entries;
  }

  private async anchored(): Promise<string | undefined> {
    return (await getObject(this.loc, this.headKey))?.text.trim() || undefined;
  }

  /** Moves the anchor to `head` unless it already names that entry or a newer one. */
  private async anchor(head: string): Promise<void> {
    await updateObject(this.loc, this.headKey, this.stackName, async (current) => {
      if (current && seqOf(current.text.trim()) >= seqOf(head)) return { result: undefined };
      return { text: `${head}\n`, result: undefined };
    });
  }

  /**
   * Appends an entry chained to the last one, then moves the anchor. The entry's id is made once, before
   * the first attempt: a write that landed but whose answer was lost (the SDK retries it and is refused by
   * it, 412) is found by its id on the next read and not appended again.
   */
  async append(entry: Omit<AuditEntry, "seq" | "prev" | "hash" | "at" | "anchor"> & { at?: string }): Promise<AuditEntry> {
    const id = entry.id ?? crypto.randomUUID();
    const full = await updateObject(this.loc, this.trailKey, this.stackName, async (current) => {
      const text = current?.text ?? "";
      const { entries, torn } = parseTrail(text);
      const written = entries.find((e) => e.id === id);
      if (written) return { result: written };
      const last = entries[entries.length - 1];
      let anchor = await this.anchored();
      // An entry another machine wrote but has not anchored yet (in flight, or it crashed) is anchored
      // first, so the anchor an entry names is always the one before it while appends go on everywhere.
      if (last && seqOf(anchor) < last.seq) {
        await this.anchor(headOf(last)!);
        anchor = await this.anchored();
      }
      const next = chainEntry({ ...entry, id }, last, anchor);
      // An object is replaced whole, so a torn line can only come from an edit: it is kept, for verify.
      const base = torn === undefined || text.endsWith("\n") ? text : `${text}\n`;
      return { text: `${base}${JSON.stringify(next)}\n`, result: next };
    });
    await this.anchor(headOf(full)!);
    return full;
  }

  /**
   * Reads the anchor, then the trail (an append writes them in the other order), and checks them. Entries
   * past the anchor may be appends in flight on other machines: they are read again before a mismatch is
   * reported.
   */
  async verify(): Promise<AuditVerification> {
    let result: AuditVerification | undefined;
    for (let attempt = 0; attempt < 10; attempt++) {
      const anchored = await this.anchored();
      let read: { entries: AuditEntry[]; torn?: string } = { entries: [] };
      let readError: string | undefined;
      try {
        read = parseTrail((await getObject(this.loc, this.trailKey))?.text ?? "");
      } catch (err) {
        readError = `the trail is not valid JSON lines: ${(err as Error).message}`;
      }
      result = verifyTrail(this.file, read, anchored, readError);
      const last = read.entries[read.entries.length - 1];
      const inFlight = !result.ok && !readError && last !== undefined && seqOf(anchored) > 0 && last.seq > seqOf(anchored);
      if (!inFlight) break;
      await new Promise((r) => setTimeout(r, 50 * (attempt + 1)));
    }
    return result!;
  }
}
