import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import { withFileLock, writeFileAtomic } from "./ledger";

/** One line of the audit trail. `hash` covers every other field, `prev` included, so entries chain. */
export interface AuditEntry {
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

function headOf(e: AuditEntry | undefined): string | undefined {
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
function parseTrail(text: string): { entries: AuditEntry[]; torn?: string } {
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
export class AuditLog {
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
      const body: Omit<AuditEntry, "hash"> = {
        ...entry,
        at: entry.at ?? new Date().toISOString(),
        seq: (last?.seq ?? 0) + 1,
        ...(anchor ? { anchor } : {}),
        prev: last?.hash ?? genesis,
      };
      const full: AuditEntry = { ...body, hash: hashOf(body) } as AuditEntry;
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
      const problems: string[] = [];
      let entries: AuditEntry[] = [];
      let torn: string | undefined;
      try {
        ({ entries, torn } = this.read());
      } catch (err) {
        problems.push(`the file is not valid JSON lines: ${(err as Error).message}`);
      }
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
      const anchored = await this.anchored();
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
      return { ok: problems.length === 0, entries: entries.length, file: this.file, problems, ...(interrupted ? { interrupted } : {}) };
    });
  }
}
