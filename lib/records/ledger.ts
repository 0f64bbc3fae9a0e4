import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { UpdateSummary } from "@pulumi/pulumi/automation";
import type { InFlightMark, StackOutput } from "../engine/types";
import type { ReadinessReport } from "../planning/readiness";
import { Holder, holderHere, livenessOf, nodeCommand } from "../engine/interruption";
import { ConcurrentOperationError } from "../errors";
import { updateKey, toHistoryEntries } from "./history-record";
import { deleteObject, getObject, listKeys, putObject, S3Location, s3LocationOf, updateObject } from "./s3-backend";

/** What the records need of an open stack: which it is, and its tags and history (a reader or an engine stack). */
export interface RecordsEngine {
  /** Which stack: the backend, project and stack name. */
  readonly target: { backendUrl: string; projectName: string; stackName: string };
  /** Stack tags, as stored in the backend. */
  tags(): Promise<Record<string, string>>;
  /** The backend's whole update history, newest first. */
  history(): Promise<UpdateSummary[]>;
  /** Sets stack tags. */
  setTags(tags: Record<string, string>): Promise<void>;
  /** Removes a stack tag. */
  removeTag(key: string): Promise<void>;
}

/** A deploy freeze, as stored in the backend. */
export interface Freeze {
  reason: string;
  by: string;
  at: string;
}

/** The verification outcome of one update, keyed in {@link StackRecords.verifications} by the update's id. */
export interface VerificationRecord {
  /** `passed`, or `failed: <reason>`. */
  outcome: string;
  /** When it was recorded; the newest {@link maxVerifications} are kept. */
  at: string;
  /** The version the update applied, for people reading the file. */
  version?: string;
}

/** stackpin's own records of a stack: one document in the backend's storage, beside the state. */
export interface StackRecords {
  /** Bumped by every write; a write whose base generation is no longer on disk is refused (compare-and-swap). */
  generation: number;
  /** Verification outcomes by update id (the id stackpin writes into the update's record, never its position). */
  verifications: Record<string, VerificationRecord>;
  /** The deploy freeze in force. */
  freeze?: Freeze;
  /** `watch --record-baseline` values, by {@link baselineKey} of the rule's name. */
  baselines: Record<string, number>;
  /** True once the stack tags of an older stackpin (`stackpin:verify:N`, freeze, baselines) were moved in. */
  migratedFromTags?: boolean;
  /**
   * The mark an update or destroy leaves while it runs (who, what, since): an update killed before it
   * ended is recognised by it even when it left no lock and no pending operation behind.
   */
  inFlight?: InFlightMark;
  /** The newest answer of `check` (or of `watch`'s readiness checks): whether each way back works, leg by leg. */
  readiness?: ReadinessReport;
  /** What stackpin applied last, written once after each apply (an older stackpin kept it in stack tags). */
  live?: LiveRecord;
  /**
   * On `s3://`: the ids of the newest writes (at most {@link recentWrites}), newest first. A write whose
   * answer was lost is retried by the SDK and refused (412) by itself; finding its id here, the retry knows
   * it landed, and does not apply its change a second time.
   */
  writes?: string[];
}

/** How many write ids the records document keeps on `s3://` (see {@link StackRecords.writes}). */
export const recentWrites = 20;

/** stackpin's bookkeeping of the last apply: one records write, instead of a stack tag each. */
export interface LiveRecord {
  /** The version applied last (`stackpin:version`); `(destroyed)` after a destroy. */
  version: string;
  /** Who applied it (`stackpin:applied-by`). */
  appliedBy?: string;
  /** The newest version that passed verification (`stackpin:verified-version`). */
  verifiedVersion?: string;
  /** The id of the update that applied it (the key of its history entry). */
  updateId?: string;
  /** The stack outputs that update left, secrets masked: `status` reads them instead of asking the engine while that update is the newest. */
  outputs?: Record<string, StackOutput>;
  at: string;
}

/** The `stackpin:*` names the bookkeeping had as stack tags, for `status` and backends whose records are tags. */
export function liveTags(live: LiveRecord | undefined): Record<string, string> {
  if (!live) return {};
  return {
    "stackpin:version": live.version,
    ...(live.appliedBy ? { "stackpin:applied-by": live.appliedBy.slice(0, tagValueLimit) } : {}),
    ...(live.verifiedVersion ? { "stackpin:verified-version": live.verifiedVersion } : {}),
  };
}

/** How many verification outcomes a stack keeps: older ones are pruned on write. */
export const maxVerifications = 100;

const lockTimeoutMs = 30_000;
// A records lock is held for one read-modify-write (with the stale-plan check, one CLI call): a holder
// elsewhere that has kept it this long is gone.
const fileLockTtlMs = 120_000;
// A lock file that is still empty this long after it was made was left by a writer killed between creating
// and writing it (writing takes microseconds).
const emptyLockStaleMs = 10_000;

function emptyRecords(): StackRecords {
  return { generation: 0, verifications: {}, baselines: {} };
}

/** The key a rule's baseline is kept under: its name in lowercase words joined by dashes. */
export function baselineKey(rule: string): string {
  return rule.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** Writes a file so that a reader sees the old content or the new, never a part (temp file, fsync, rename). */
export function writeFileAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`;
  const fd = fs.openSync(tmp, "w", 0o644);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/**
 * Runs `fn` holding an exclusive lock file (created with O_EXCL, naming this process, its machine and a
 * lease). A holder proven gone (the `livenessOf` rules: on its own machine its process has exited,
 * elsewhere its lease has lapsed) is broken; a live one is waited for up to 30 s, then
 * {@link ConcurrentOperationError}. The lock is for short critical sections (a read-modify-write of a
 * small file), never for a whole operation: its lease is never renewed.
 */
export async function withFileLock<T>(lockFile: string, stackName: string, fn: () => T | Promise<T>): Promise<T> {
  fs.mkdirSync(path.dirname(lockFile), { recursive: true });
  const token = crypto.randomUUID();
  const me = JSON.stringify({ ...holderHere({ ttlMs: fileLockTtlMs }), token });
  const deadline = Date.now() + lockTimeoutMs;
  let delay = 2;
  for (;;) {
    try {
      const fd = fs.openSync(lockFile, "wx", 0o644);
      try {
        fs.writeSync(fd, me);
      } finally {
        fs.closeSync(fd);
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const raw = readText(lockFile);
    if (raw === undefined) continue;
    let holder: Holder | undefined;
    try {
      holder = JSON.parse(raw) as Holder;
    } catch {
      holder = undefined;
    }
    const liveness = holder ? livenessOf(holder, nodeCommand) : undefined;
    const stale = holder ? liveness?.state === "dead" : Date.now() - (fs.statSync(lockFile, { throwIfNoEntry: false })?.mtimeMs ?? Date.now()) > emptyLockStaleMs;
    if (stale) {
      // Only the file just judged: another process may have broken it and taken the lock meanwhile.
      if (readText(lockFile) === raw) fs.rmSync(lockFile, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new ConcurrentOperationError(stackName, {
        holder: `${lockFile} is held by ${liveness?.detail ?? "a process that has not written its name yet"}`,
        hint: "if that process is gone on another host, remove the lock file",
      });
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 100);
  }
  try {
    return await fn();
  } finally {
    // Removed only while it is still ours: a holder judged gone by mistake must not delete its successor's.
    if (readText(lockFile)?.includes(token)) fs.rmSync(lockFile, { force: true });
  }
}

/** Where stackpin's records of a stack live, and how they are read and changed. */
export interface RecordStore {
  /** A path or URL for messages. */
  readonly where: string;
  read(): Promise<StackRecords>;
  /**
   * Reads, applies `change`, and writes, as one step no other writer can interleave with. `check` runs in
   * that step before `change` (under the lock, or on each compare-and-swap attempt): what it raises ends
   * the update with nothing written.
   */
  update(change: (records: StackRecords) => void, options?: RecordUpdateOptions): Promise<StackRecords>;
}

/** Options of {@link RecordStore.update}. */
export interface RecordUpdateOptions {
  /** A check of the world that must hold when the write happens (the stale-plan check before an in-flight mark). */
  check?: () => Promise<void>;
}

function prune(records: StackRecords): void {
  const keys = Object.entries(records.verifications).sort(([, a], [, b]) => b.at.localeCompare(a.at));
  for (const [key] of keys.slice(maxVerifications)) delete records.verifications[key];
}

/**
 * The records of a stack on a `file://` backend: `<backend>/.stackpin/<project>/<stack>.json`, changed
 * only under `<stack>.json.lock` and replaced atomically, so two processes never lose each other's writes.
 */
export class FileRecordStore implements RecordStore {
  constructor(
    readonly where: string,
    private readonly stackName: string,
    /** Called inside the lock the first time the document is written: moves an older stackpin's tags in. */
    private readonly migrate?: (records: StackRecords) => Promise<void>,
  ) {}

  async read(): Promise<StackRecords> {
    const raw = readText(this.where);
    if (raw === undefined) return emptyRecords();
    return { ...emptyRecords(), ...(JSON.parse(raw) as StackRecords) };
  }

  async update(change: (records: StackRecords) => void, options: RecordUpdateOptions = {}): Promise<StackRecords> {
    return withFileLock(`${this.where}.lock`, this.stackName, async () => {
      await options.check?.();
      const records = await this.read();
      const base = records.generation;
      if (!records.migratedFromTags) {
        await this.migrate?.(records);
        records.migratedFromTags = true;
      }
      change(records);
      prune(records);
      // Compare-and-swap: the lock makes this hold; it catches a writer that broke the lock by mistake.
      const onDisk = (await this.read()).generation;
      if (onDisk !== base) throw new Error(`${this.where} changed while it was locked (generation ${base} -> ${onDisk}); nothing was written`);
      records.generation = base + 1;
      writeFileAtomic(this.where, `${JSON.stringify(records, null, 2)}\n`);
      return records;
    });
  }
}

/**
 * The records of a stack on an `s3://` backend: `.stackpin/<project>/<stack>.json` in the state's bucket
 * (under the backend URL's prefix), so every machine reads and writes the same document. There is no lock
 * file: each write is a compare-and-swap by S3 conditional write (`If-Match` on the ETag read,
 * `If-None-Match: *` to create), retried from a fresh read when another writer got in first. Each write
 * leaves its id in the document ({@link StackRecords.writes}), so one whose answer was lost is not applied twice.
 */
export class S3RecordStore implements RecordStore {
  private readonly key: string;

  constructor(
    private readonly loc: S3Location,
    project: string,
    private readonly stackName: string,
    private readonly migrate?: (records: StackRecords) => Promise<void>,
  ) {
    this.key = `.stackpin/${project}/${stackName}.json`;
  }

  get where(): string {
    return `${this.loc.url}/${this.key}`;
  }

  private parse(text: string | undefined): StackRecords {
    return text === undefined ? emptyRecords() : { ...emptyRecords(), ...(JSON.parse(text) as StackRecords) };
  }

  async read(): Promise<StackRecords> {
    return this.parse((await getObject(this.loc, this.key))?.text);
  }

  async update(change: (records: StackRecords) => void, options: RecordUpdateOptions = {}): Promise<StackRecords> {
    // Made once for all attempts: an attempt that finds it in the document was preceded by one that landed.
    const writeId = crypto.randomUUID();
    return updateObject(this.loc, this.key, this.stackName, async (current) => {
      const records = this.parse(current?.text);
      if (records.writes?.includes(writeId)) return { result: records };
      await options.check?.();
      if (!records.migratedFromTags) {
        await this.migrate?.(records);
        records.migratedFromTags = true;
      }
      change(records);
      prune(records);
      records.generation += 1;
      records.writes = [writeId, ...(records.writes ?? [])].slice(0, recentWrites);
      return { text: `${JSON.stringify(records, null, 2)}\n`, result: records };
    });
  }
}

const verifyPrefix = "stackpin:verify:";
const baselinePrefix = "stackpin:baseline:";
const freezeTag = "stackpin:freeze";
const inFlightTag = "stackpin:in-flight";
/** Pulumi Cloud's limits on stack tags; the diy backends have none, but a stack may move. */
export const tagNameLimit = 40;
export const tagValueLimit = 256;

function shortTagName(prefix: string, key: string): string {
  const name = `${prefix}${key}`;
  if (name.length <= tagNameLimit) return name;
  const hash = crypto.createHash("sha256").update(key).digest("hex").slice(0, 8);
  return `${prefix}${key.slice(0, tagNameLimit - prefix.length - 9)}-${hash}`;
}

function fitFreeze(f: Freeze): string {
  const text = JSON.stringify(f);
  if (text.length <= tagValueLimit) return text;
  return JSON.stringify({ ...f, reason: f.reason.slice(0, Math.max(0, f.reason.length - (text.length - tagValueLimit) - 1)) + "…" });
}

/** Parses the records an older stackpin kept in stack tags. Verification tags are keyed by revision. */
function recordsFromTags(tags: Record<string, string>): { freeze?: Freeze; baselines: Record<string, number>; byRevision: Record<number, string>; byKey: Record<string, string>; inFlight?: InFlightMark; live?: LiveRecord } {
  const baselines: Record<string, number> = {};
  const byRevision: Record<number, string> = {};
  const byKey: Record<string, string> = {};
  let freeze: Freeze | undefined;
  for (const [k, v] of Object.entries(tags)) {
    if (k.startsWith(baselinePrefix)) baselines[k.slice(baselinePrefix.length)] = Number(v);
    else if (k.startsWith(verifyPrefix)) {
      const key = k.slice(verifyPrefix.length);
      if (/^\d+$/.test(key)) byRevision[Number(key)] = v;
      else byKey[key] = v;
    } else if (k === freezeTag) {
      try {
        freeze = JSON.parse(v) as Freeze;
      } catch {
        freeze = { reason: v, by: "unknown", at: "unknown" };
      }
    }
  }
  let inFlight: InFlightMark | undefined;
  if (tags[inFlightTag]) {
    try {
      inFlight = JSON.parse(tags[inFlightTag]) as InFlightMark;
    } catch {
      inFlight = { what: tags[inFlightTag], pid: 0, hostname: "?", since: "" };
    }
  }
  const live: LiveRecord | undefined = tags["stackpin:version"]
    ? { version: tags["stackpin:version"], appliedBy: tags["stackpin:applied-by"], verifiedVersion: tags["stackpin:verified-version"], at: "" }
    : undefined;
  return { freeze, baselines, byRevision, byKey, inFlight, live };
}

/**
 * The records of a stack on a backend whose storage stackpin does not reach (`gs://`, `azblob://`,
 * Pulumi Cloud): stack tags, one per record, within Pulumi Cloud's limits. Pulumi writes each
 * tag with an unlocked read-modify-write of the whole tag set, so two writers at once can lose one
 * record: a documented limitation of these backends.
 */
export class TagRecordStore implements RecordStore {
  constructor(private readonly engine: RecordsEngine) {}

  get where(): string {
    return "stack tags";
  }

  async read(): Promise<StackRecords> {
    const tags = await this.engine.tags();
    const legacy = recordsFromTags(tags);
    return {
      generation: 0,
      verifications: Object.fromEntries(Object.entries(legacy.byKey).map(([k, v]) => [k, { outcome: v, at: "" }])),
      freeze: legacy.freeze,
      baselines: legacy.baselines,
      migratedFromTags: true,
      inFlight: legacy.inFlight,
      live: legacy.live,
    };
  }

  async update(change: (records: StackRecords) => void, options: RecordUpdateOptions = {}): Promise<StackRecords> {
    // Stack tags have no lock or compare-and-swap: the check runs just before the read.
    await options.check?.();
    const before = await this.read();
    const after: StackRecords = JSON.parse(JSON.stringify(before)) as StackRecords;
    change(after);
    const set: Record<string, string> = {};
    for (const [k, v] of Object.entries(after.verifications)) {
      if (before.verifications[k]?.outcome !== v.outcome) set[shortTagName(verifyPrefix, k)] = v.outcome.slice(0, tagValueLimit);
    }
    for (const [k, v] of Object.entries(after.baselines)) {
      if (before.baselines[k] !== v) set[shortTagName(baselinePrefix, k)] = String(v);
    }
    if (after.freeze && JSON.stringify(after.freeze) !== JSON.stringify(before.freeze)) set[freezeTag] = fitFreeze(after.freeze);
    if (after.inFlight && JSON.stringify(after.inFlight) !== JSON.stringify(before.inFlight)) set[inFlightTag] = JSON.stringify(after.inFlight);
    const beforeLive = liveTags(before.live);
    for (const [k, v] of Object.entries(liveTags(after.live))) if (beforeLive[k] !== v) set[k] = v;
    await this.engine.setTags(set);
    if (before.freeze && !after.freeze) await this.engine.removeTag(freezeTag);
    if (before.inFlight && !after.inFlight) await this.engine.removeTag(inFlightTag);
    return after;
  }
}

/** The records document of a stack on a `file://` backend. */
export function recordsFile(backendDir: string, project: string, stack: string): string {
  return path.join(backendDir, ".stackpin", project, `${stack}.json`);
}

/** Moves an older stackpin's tags into `records` (keyed by update id, not position), returning the tags moved. */
function migrateTags(records: StackRecords, tags: Record<string, string>, updates: UpdateSummary[]): string[] {
  const legacy = recordsFromTags(tags);
  const entries = toHistoryEntries(updates);
  for (const [revision, outcome] of Object.entries(legacy.byRevision)) {
    const i = entries.findIndex((e) => e.revision === Number(revision));
    if (i < 0) continue;
    records.verifications[updateKey(updates[i])] ??= { outcome, at: entries[i].finishedAt ?? entries[i].startedAt, version: entries[i].to };
  }
  for (const [k, v] of Object.entries(legacy.byKey)) records.verifications[k] ??= { outcome: v, at: new Date(0).toISOString() };
  for (const [k, v] of Object.entries(legacy.baselines)) if (!(k in records.baselines)) records.baselines[k] = v;
  if (records.freeze === undefined && legacy.freeze) records.freeze = legacy.freeze;
  if (records.inFlight === undefined && legacy.inFlight) records.inFlight = legacy.inFlight;
  if (records.live === undefined && legacy.live) records.live = legacy.live;
  return Object.keys(tags).filter((k) => k.startsWith(verifyPrefix) || k.startsWith(baselinePrefix) || k === freezeTag || k === inFlightTag);
}

/**
 * The store of an open stack: a document beside the state on `file://` and `s3://` backends, stack tags
 * elsewhere (`gs://`, `azblob://`, Pulumi Cloud).
 */
export function recordStoreOf(engine: RecordsEngine): RecordStore {
  const { backendUrl, projectName, stackName } = engine.target;
  const s3 = s3LocationOf(backendUrl);
  if (!backendUrl.startsWith("file://") && !s3) return new TagRecordStore(engine);
  let moved: string[] = [];
  const migrate = async (records: StackRecords) => {
    const [tags, updates] = await Promise.all([engine.tags(), engine.history()]);
    moved = migrateTags(records, tags, updates);
  };
  const store = s3
    ? new S3RecordStore(s3, projectName, stackName, migrate)
    : new FileRecordStore(recordsFile(backendUrl.slice("file://".length), projectName, stackName), stackName, migrate);
  return {
    where: store.where,
    read: () => store.read(),
    async update(change, options) {
      const records = await store.update(change, options);
      // Once moved, an older stackpin's tags are only clutter (and would outgrow Pulumi Cloud's limits).
      const gone = moved.splice(0);
      if (gone.length) {
        // Pulumi 3.248's file backend keeps a stack's last tag when `stack tag rm` would leave none (the
        // removal is silently lost). A tag naming where the records went keeps the set non-empty, so that
        // every moved tag can go; stackpin's bookkeeping tags used to do that by accident.
        await engine.setTags({ "stackpin:records": store.where.slice(-tagValueLimit) }).catch(() => undefined);
      }
      for (const tag of gone) await engine.removeTag(tag).catch(() => undefined);
      return records;
    },
  };
}

/**
 * The stack's records as they read now. On a `file://` backend whose tags were never moved (written by an
 * older stackpin), the tags are read as a fallback: `legacyVerifications` holds their outcomes by revision.
 */
export async function readRecords(
  engine: RecordsEngine,
  tags: Record<string, string>,
  /** The document as the caller already read it. */
  stored?: StackRecords,
): Promise<StackRecords & { legacyVerifications: Record<number, string> }> {
  const records = stored ?? (await recordStoreOf(engine).read());
  if (records.migratedFromTags && (engine.target.backendUrl.startsWith("file://") || engine.target.backendUrl.startsWith("s3://"))) return { ...records, legacyVerifications: {} };
  const legacy = recordsFromTags(tags);
  return {
    ...records,
    freeze: records.freeze ?? legacy.freeze,
    inFlight: records.inFlight ?? legacy.inFlight,
    live: records.live ?? legacy.live,
    baselines: { ...legacy.baselines, ...records.baselines },
    verifications: { ...Object.fromEntries(Object.entries(legacy.byKey).map(([k, v]) => [k, { outcome: v, at: "" }])), ...records.verifications },
    legacyVerifications: legacy.byRevision,
  };
}

/** The recorded baseline of a rule, whichever way it was stored (a long name is shortened in a stack tag). */
export function baselineOf(records: StackRecords, rule: string): number | undefined {
  const key = baselineKey(rule);
  const short = shortTagName(baselinePrefix, key).slice(baselinePrefix.length);
  const v = records.baselines[key] ?? records.baselines[short];
  return v === undefined || Number.isNaN(v) ? undefined : v;
}

/**
 * The leases of previews running on a stack: one small object each, beside the records document
 * (`.stackpin/<project>/<stack>.previews/<id>.json`), written when a preview starts, renewed while it
 * runs and deleted when it ends. A preview changes nothing, so it leaves nothing behind and does not touch
 * the records document; its lease only says whose the lock Pulumi takes for it is, so that a lock left by
 * a killed preview can be judged. Undefined on backends whose records are stack tags.
 */
export interface PreviewLeases {
  put(mark: InFlightMark): Promise<void>;
  remove(mark: InFlightMark): Promise<void>;
  list(): Promise<InFlightMark[]>;
}

/** The preview leases of a stack on a `file://` or `s3://` backend; undefined elsewhere. */
export function previewLeasesOf(target: RecordsEngine["target"]): PreviewLeases | undefined {
  const { backendUrl, projectName, stackName } = target;
  const parse = (text: string | undefined): InFlightMark | undefined => {
    try {
      return text ? (JSON.parse(text) as InFlightMark) : undefined;
    } catch {
      return undefined;
    }
  };
  if (backendUrl.startsWith("file://")) {
    const dir = `${recordsFile(backendUrl.slice("file://".length), projectName, stackName).slice(0, -".json".length)}.previews`;
    return {
      async put(mark) {
        writeFileAtomic(path.join(dir, `${mark.id}.json`), JSON.stringify(mark));
      },
      async remove(mark) {
        fs.rmSync(path.join(dir, `${mark.id}.json`), { force: true });
        // The directory goes with the last lease: a preview leaves the backend as it found it.
        try {
          fs.rmdirSync(dir);
        } catch {
          // another preview's lease is there, or it is already gone
        }
      },
      async list() {
        if (!fs.existsSync(dir)) return [];
        return fs
          .readdirSync(dir)
          .filter((f) => f.endsWith(".json"))
          .map((f) => parse(readText(path.join(dir, f))))
          .filter((m): m is InFlightMark => m !== undefined);
      },
    };
  }
  const s3 = s3LocationOf(backendUrl);
  if (!s3) return undefined;
  const prefix = `.stackpin/${projectName}/${stackName}.previews/`;
  return {
    async put(mark) {
      await putObject(s3, `${prefix}${mark.id}.json`, JSON.stringify(mark));
    },
    async remove(mark) {
      await deleteObject(s3, `${prefix}${mark.id}.json`);
    },
    async list() {
      const marks: InFlightMark[] = [];
      for (const key of await listKeys(s3, prefix)) {
        const m = parse((await getObject(s3, key))?.text);
        if (m) marks.push(m);
      }
      return marks;
    },
  };
}
