import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

/** One line of the audit trail. `hash` covers every other field, `prev` included, so entries chain. */
export interface AuditEntry {
  seq: number;
  at: string;
  stack: string;
  actor: string;
  op: string;
  from?: string;
  to?: string;
  result: "succeeded" | "failed";
  detail?: string;
  prev: string;
  hash: string;
}

/** What `audit verify` found. */
export interface AuditVerification {
  ok: boolean;
  entries: number;
  file: string;
  problems: string[];
}

/** Where the audit head (last seq and hash) is anchored, outside the file: the stack's tags in the backend. */
export interface AuditAnchor {
  read(): Promise<string | undefined>;
  write(head: string): Promise<void>;
}

const genesis = "0".repeat(64);

function hashOf(entry: Omit<AuditEntry, "hash">): string {
  const canonical = JSON.stringify(Object.fromEntries(Object.entries(entry).sort(([a], [b]) => a.localeCompare(b))));
  return crypto.createHash("sha256").update(canonical).digest("hex");
}

/**
 * Where a stack's audit trail lives: beside the state for a file:// backend (so every machine sharing it
 * appends to one trail), else in the project's `.stackpin/audit`.
 */
export function auditFile(backendUrl: string, projectDir: string, project: string, stack: string): string {
  const base = backendUrl.startsWith("file://") ? path.join(backendUrl.slice("file://".length), ".stackpin-audit", project) : path.join(projectDir, ".stackpin", "audit");
  return path.join(base, `${stack}.jsonl`);
}

/**
 * An append-only, tamper-evident log: each entry carries the hash of the one before it, and the newest
 * `seq:hash` is anchored in the backend, so an edited, reordered, removed or truncated entry is detected.
 */
export class AuditLog {
  constructor(
    readonly file: string,
    private readonly anchor: AuditAnchor,
  ) {}

  /** The entries as written, oldest first. */
  entries(): AuditEntry[] {
    return this.read();
  }

  private read(): AuditEntry[] {
    if (!fs.existsSync(this.file)) return [];
    return fs
      .readFileSync(this.file, "utf8")
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as AuditEntry);
  }

  /** Appends an entry chained to the last one and moves the anchor. */
  async append(entry: Omit<AuditEntry, "seq" | "prev" | "hash" | "at"> & { at?: string }): Promise<AuditEntry> {
    const entries = this.read();
    const last = entries[entries.length - 1];
    const body = { ...entry, at: entry.at ?? new Date().toISOString(), seq: (last?.seq ?? 0) + 1, prev: last?.hash ?? genesis };
    const full: AuditEntry = { ...body, hash: hashOf(body) };
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    fs.appendFileSync(this.file, `${JSON.stringify(full)}\n`);
    await this.anchor.write(`${full.seq}:${full.hash}`);
    return full;
  }

  /** Re-computes every hash and link, and compares the newest entry with the anchor. */
  async verify(): Promise<AuditVerification> {
    const problems: string[] = [];
    let entries: AuditEntry[] = [];
    try {
      entries = this.read();
    } catch (err) {
      problems.push(`the file is not valid JSON lines: ${(err as Error).message}`);
    }
    let prev = genesis;
    entries.forEach((e, i) => {
      const { hash, ...body } = e;
      if (e.seq !== i + 1) problems.push(`entry ${i + 1} has seq ${e.seq}: an entry was removed or reordered`);
      if (e.prev !== prev) problems.push(`entry ${e.seq} does not follow entry ${i}: an entry before it was removed or changed`);
      if (hashOf(body) !== hash) problems.push(`entry ${e.seq} was edited: its hash does not match its content`);
      prev = hash;
    });
    const anchored = await this.anchor.read();
    const last = entries[entries.length - 1];
    const head = last ? `${last.seq}:${last.hash}` : undefined;
    if (anchored !== head) {
      problems.push(`the newest entry (${head ?? "none"}) is not the one anchored in the backend (${anchored ?? "none"}): entries were removed from the end or the file was replaced`);
    }
    return { ok: problems.length === 0, entries: entries.length, file: this.file, problems };
  }
}
