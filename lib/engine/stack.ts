import { automation } from "./automation";
import { readBackendCheckpoint } from "./backend-checkpoint";
import { readBackendHistory } from "./backend-history";
import { readAllPages } from "./history-pages";
import { CliRunError, runPulumi } from "./pulumi-process";
import type { InFlightMark, MarkKind, StackOutput } from "./types";

export type { InFlightMark, MarkKind, StackOutput } from "./types";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type {
  Deployment,
  EngineEvent,
  LocalWorkspace,
  OpMap,
  PulumiFn,
  Stack,
  StackSettingsConfigValue,
  UpdateSummary,
} from "@pulumi/pulumi/automation";
import {
  ConcurrentOperationError,
  EngineFailedError,
  MissingPassphraseError,
  SecretsProviderUnavailableError,
  StackNotDeployedError,
  WrongPassphraseError,
} from "../errors";
import {
  BackendLock,
  Holder,
  holderHere,
  Liveness,
  livenessOf,
  nodeCommand,
  pluginCommand,
  processesIn,
  readBackendLocks,
  readFileBackendLocks,
  removeBackendLock,
  repairInterruptedWrites,
  thisPlace,
} from "./interruption";
import { samePlace } from "./lease";
import { stopProcesses } from "./processes";
import { previewLeasesOf, recordsFile, recordStoreOf, StackRecords, TagRecordStore, tagNameLimit, tagValueLimit } from "../records/ledger";
import type { PulumiCli } from "./pulumi-cli";
import { dataAtRisk, DataResource, ResourceRef } from "../planning/data-resources";
import { writeDynamicProviderPlugin } from "./pulumi-cli";

/** How stackpin reaches one Pulumi stack. */
export interface OpenEngineStackOptions {
  /** The stack's name in the backend. */
  stackName: string;
  /** The Pulumi project name. */
  projectName: string;
  /** The state backend, e.g. `file:///srv/state`. */
  backendUrl: string;
  /** `passphrase`, or a cloud KMS URL passed to Pulumi as is. */
  secretsProvider: string;
  /** The passphrase provider's salt from `stack.yaml`; absent before the stack's first use. */
  encryptionSalt?: string;
  /** A KMS provider's encrypted data key from `stack.yaml`; absent before the stack's first use. */
  encryptedKey?: string;
  /** The passphrase, when the provider is `passphrase`. */
  passphrase?: { value?: string; file?: string };
  /** The program, run inline (no language host binary is needed). */
  program: PulumiFn;
  /** The CLI to run. */
  pulumi: PulumiCli;
  /** Directory for scratch workspaces and the dynamic provider plugin. */
  workRoot: string;
  /** `PULUMI_HOME` for the CLI; defaults to the CLI's own default. */
  pulumiHome?: string;
  /** Extra environment for the CLI and the program's providers. */
  env?: Record<string, string>;
  /**
   * How long an in-flight mark's lease holds without renewal (ms; `stack.yaml`'s `lease.ttlSeconds`). A
   * running operation renews it on a heartbeat; another machine may take the stack over only after it
   * lapsed. Default {@link defaultLeaseTtlMs}.
   */
  leaseTtlMs?: number;
}

/** The lease an in-flight mark holds unless `stack.yaml` says otherwise: two minutes. */
export const defaultLeaseTtlMs = 120_000;

/** A resource the engine plans to touch or touched, without values: op, identity and changed keys. */
export interface ResourceStep {
  op: string;
  urn: string;
  type: string;
  name: string;
  /** The input keys that differ; a key that forces replacement is listed in `replaceKeys` too. */
  diffKeys: string[];
  replaceKeys: string[];
}

/** What the engine planned or did. */
export interface EngineRun {
  steps: ResourceStep[];
  changeSummary: OpMap;
}

/** What the engine plans: its steps, and the data-holding resources they really delete (neither retained nor protected). */
export interface EnginePreview extends EngineRun {
  dataAtRisk: DataResource[];
}

/** The resource a deleting step acts on, as its `old` state records it (type, outputs, `retainOnDelete`, `protect`). */
function deletedRef(event: EngineEvent): (ResourceRef & { op: string }) | undefined {
  const md = event.resourcePreEvent?.metadata;
  if (!md || !["delete", "replace", "delete-replaced"].includes(md.op)) return undefined;
  return { op: md.op, urn: md.urn, type: md.type, outputs: md.old?.outputs, retainOnDelete: md.old?.retainOnDelete, protect: md.old?.protect };
}


// The engine reports a replacement as three steps; people and scripts want one line per resource.
const hiddenOps = new Set(["same", "create-replacement", "delete-replaced", "discard-replaced"]);

function changedInputKeys(olds: Record<string, unknown> = {}, news: Record<string, unknown> = {}): string[] {
  const keys = new Set([...Object.keys(olds), ...Object.keys(news)]);
  keys.delete("__provider");
  return [...keys].filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k])).sort();
}

/** True for the program's own resources, false for the stack itself and provider instances. */
export function isProgramResource(type: string): boolean {
  return !type.startsWith("pulumi:providers:") && type !== "pulumi:pulumi:Stack";
}

function stepFromEvent(event: EngineEvent): ResourceStep | undefined {
  const md = event.resourcePreEvent?.metadata;
  if (!md || hiddenOps.has(md.op) || !isProgramResource(md.type)) {
    return undefined;
  }
  const detailed = md.detailedDiff ?? {};
  const diffKeys = md.diffs?.length ? md.diffs : Object.keys(detailed);
  return {
    op: md.op,
    urn: md.urn,
    type: md.type,
    name: md.urn.split("::").pop() ?? md.urn,
    diffKeys: (diffKeys.length ? diffKeys : changedInputKeys(md.old?.inputs, md.new?.inputs))
      .filter((k) => k !== "__provider")
      .sort(),
    replaceKeys: [
      ...new Set([
        ...(md.keys ?? []),
        ...Object.entries(detailed)
          .filter(([, d]) => String(d.diffKind).endsWith("-replace"))
          .map(([k]) => k),
      ]),
    ]
      .filter((k) => k !== "__provider")
      .sort(),
  };
}

/** A resource as the backend's checkpoint holds it (`stack export`); secret outputs stay encrypted. */
export interface StateResource {
  urn: string;
  type: string;
  outputs: Record<string, unknown>;
  /** The resource option as recorded: deleting it leaves it where it is. */
  retainOnDelete?: boolean;
  /** The resource option as recorded: the engine refuses to delete it. */
  protect?: boolean;
}

/** An operation the engine started on a resource and never finished (`deployment.pending_operations`). */
export interface PendingOperation {
  type: string;
  urn: string;
}


/** A scratch workspace left by a stackpin process, and whether that process still runs. */
export interface StaleWorkspace {
  dir: string;
  liveness: Liveness;
}

const inFlightTag = "stackpin:in-flight";
const ownerFile = ".stackpin-owner.json";

export { CliRunError } from "./pulumi-process";

// What gocloud's keepers and Pulumi say when a KMS key cannot be opened or used: before the fix, such a
// stack silently fell back to passphrase encryption; now the KMS's own words reach the user.
// Specific on purpose: a program's own Secrets Manager or KMS resources failing is an update failure.
const kmsFailure = /open keeper|secrets manager of type|getting secrets manager|secrets \(code=|transit\/(en|de)crypt|missing google credentials|failed to connect to gcpkms/i;

/** Maps the CLI's failures to the errors a user can act on. */
export function translateEngineError(stackName: string, backendUrl: string, err: unknown, secretsProvider?: string): unknown {
  // Errors of our own CLI runs are typed by their text alone: no need to load the Automation API for them.
  const a = err instanceof CliRunError ? undefined : automation();
  if (a && err instanceof a.StackNotFoundError) return new StackNotDeployedError(stackName, backendUrl);
  if (a && err instanceof a.ConcurrentUpdateError) return new ConcurrentOperationError(stackName, { cause: err });
  if (err instanceof CliRunError && /no stack named .* found/.test(err.message)) return new StackNotDeployedError(stackName, backendUrl);
  if (err instanceof CliRunError && /\[409\] Conflict|currently being updated|the stack is currently locked/i.test(err.message)) return new ConcurrentOperationError(stackName, { cause: err });
  if ((a && err instanceof a.CommandError) || err instanceof CliRunError) {
    const text = (err as Error).message;
    if (secretsProvider && secretsProvider !== "passphrase" && kmsFailure.test(text)) {
      // The CLI's own error and the KMS's answer under it, without the Automation API's wrapping.
      const lines = text.split("\n").map((l) => l.trim()).filter((l) => l && !/^(\d+ errors occurred:|\d+\) Unknown)$/i.test(l));
      const from = lines.findIndex((l) => l.startsWith("error: "));
      const detail = lines.slice(Math.max(0, from), Math.max(0, from) + 6).join(" ").replace(/^error: /, "");
      return new SecretsProviderUnavailableError(stackName, secretsProvider, detail);
    }
    if (/incorrect passphrase/i.test(text)) return new WrongPassphraseError(stackName);
    if (/passphrase must be set|PULUMI_CONFIG_PASSPHRASE/i.test(text) && /must be set|not set/i.test(text)) {
      return new MissingPassphraseError(stackName);
    }
    // Anything else the CLI reports is the engine's failure, not a bug in stackpin (exit 8, not 1).
    return new EngineFailedError(stackName, text, { cause: err });
  }
  return err;
}

/**
 * The one seam between stackpin and Pulumi's Automation API: a stack in a scratch workspace whose stack
 * settings file is rewritten with the desired config before each preview or update. Operations never
 * touch the Automation API themselves.
 */
export class EngineStack {
  /** What opening repaired in the backend's files after a write that was killed (one line each). */
  repairedWrites: string[] = [];

  /**
   * The checkpoint as it was read when the stack was opened (its outputs and pending operations), until
   * this process changes the stack: planning and recovery read it instead of asking the CLI again.
   */
  private opened?: { outputs: Record<string, StackOutput>; resources: StateResource[]; pending: PendingOperation[] };

  private constructor(
    private readonly options: OpenEngineStackOptions,
    private readonly workspace: LocalWorkspace,
    private readonly stack: Stack,
    private readonly workDir: string,
  ) {}

  /** Selects the stack in the backend, creating it when `create` is true; raises a typed error otherwise. */
  static async open(options: OpenEngineStackOptions & { create: boolean }): Promise<EngineStack> {
    fs.mkdirSync(options.workRoot, { recursive: true });
    const pluginDir = writeDynamicProviderPlugin(path.join(options.workRoot, "bin"));
    const workDir = fs.mkdtempSync(path.join(options.workRoot, `work-${options.stackName}-`));
    // Written first, so that whoever finds this workspace after a kill can prove its owner is gone.
    const owner: Holder = holderHere();
    fs.writeFileSync(path.join(workDir, ownerFile), JSON.stringify(owner));
    const backend = options.backendUrl;
    if (backend.startsWith("file://")) fs.mkdirSync(backend.slice("file://".length), { recursive: true });
    const envVars: Record<string, string> = {
      PATH: `${pluginDir}${path.delimiter}${options.pulumi.root}${path.delimiter}${process.env.PATH ?? ""}`,
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_SKIP_CONFIRMATIONS: "true",
      ...options.env,
    };
    if (options.passphrase?.value !== undefined) envVars.PULUMI_CONFIG_PASSPHRASE = options.passphrase.value;
    if (options.passphrase?.file !== undefined) envVars.PULUMI_CONFIG_PASSPHRASE_FILE = options.passphrase.file;
    const repaired = repairInterruptedWrites(backend, options.projectName, options.stackName, fileRecordsMarks(options));
    const select = async () => {
      const { LocalWorkspace, Stack } = automation();
      const workspace = await LocalWorkspace.create({
        workDir,
        program: options.program,
        pulumiCommand: options.pulumi.command,
        pulumiHome: options.pulumiHome,
        envVars,
        // Used by `stack init`; the settings below carry it for a stack that exists.
        secretsProvider: options.secretsProvider,
        projectSettings: { name: options.projectName, runtime: "nodejs", backend: { url: backend } },
        stackSettings: secretsSettings(options),
      });
      if (options.create) return new EngineStack(options, workspace, await Stack.createOrSelect(options.stackName, workspace), workDir);
      // No `pulumi stack select`: every Automation API call names its stack (`--stack`), and reading the
      // checkpoint proves the stack exists (or fails as selecting would: no such stack, a checkpoint a
      // killed write left unreadable) while giving planning and recovery what they read first anyway.
      const stack = Object.assign(Object.create(Stack.prototype) as object, { name: options.stackName, workspace, ready: Promise.resolve() }) as unknown as Stack;
      const engine = new EngineStack(options, workspace, stack, workDir);
      engine.opened = parseCheckpoint(await engine.exported());
      return engine;
    };
    try {
      let engine: EngineStack;
      try {
        engine = await select();
      } catch (err) {
        if (!/failed to load checkpoint/.test(String((err as Error).message))) throw err;
        // A live operation is writing the checkpoint right now: that is a concurrent operation.
        const live = readFileBackendLocks(backend, options.projectName, options.stackName, fileRecordsMarks(options)).find((l) => l.liveness.state !== "dead");
        if (live) throw new ConcurrentOperationError(options.stackName, { cause: err, holder: `Pulumi's lock is held: ${live.liveness.detail}` });
        // A write killed a moment ago: once its files are quiet they can be repaired, then select again.
        await new Promise((r) => setTimeout(r, 1_100));
        const more = repairInterruptedWrites(backend, options.projectName, options.stackName, fileRecordsMarks(options));
        if (!more.length) throw err;
        repaired.push(...more);
        engine = await select();
      }
      engine.repairedWrites = repaired;
      return engine;
    } catch (err) {
      fs.rmSync(workDir, { recursive: true, force: true });
      throw translateEngineError(options.stackName, options.backendUrl, err, options.secretsProvider);
    }
  }

  /** The passphrase salt now in the stack settings (set by Pulumi when the stack was first created here). */
  async encryptionSalt(): Promise<string | undefined> {
    const settings = await this.workspace.stackSettings(this.options.stackName);
    return settings.encryptionSalt;
  }

  /** Replaces the stack's config with exactly `config` (keys fully qualified; secure values as ciphertext). */
  async setConfig(config: Record<string, StackSettingsConfigValue>): Promise<void> {
    const settings = await this.workspace.stackSettings(this.options.stackName);
    await this.workspace.saveStackSettings(this.options.stackName, { ...settings, config });
  }

  /** A KMS provider's encrypted data key now in the stack settings (written by Pulumi when the stack was created). */
  async encryptedKey(): Promise<string | undefined> {
    const settings = await this.workspace.stackSettings(this.options.stackName);
    return settings.encryptedKey;
  }

  /**
   * The config the stack's newest update ran with, as the backend recorded it (`pulumi config refresh`:
   * secrets stay ciphertext, nothing is decrypted), and how its secrets are encrypted. For `adopt`.
   */
  async deployedSettings(): Promise<{ config: Record<string, StackSettingsConfigValue>; encryptionSalt?: string; secretsProvider?: string; encryptedKey?: string }> {
    // Not the Automation API's refreshConfig: it reads the config back with --show-secrets.
    await this.guard(() => this.runCliWithInput(["config", "refresh", "--force", "--stack", this.options.stackName, "--non-interactive"], ""));
    const s = await this.workspace.stackSettings(this.options.stackName);
    return { config: s.config ?? {}, encryptionSalt: s.encryptionSalt, secretsProvider: s.secretsProvider, encryptedKey: s.encryptedKey };
  }

  /** Encrypts a value with the stack's secrets provider; returns Pulumi's ciphertext. */
  async encrypt(key: string, plaintext: string): Promise<string> {
    // The Automation API's setConfig puts the value on the CLI's command line, where `ps` shows it to
    // every user of the machine; `pulumi config set` without a value reads it from stdin (`--raw`: as is).
    await this.guard(() =>
      this.runCliWithInput(["config", "set", key, "--secret", "--raw", "--stack", this.options.stackName, "--non-interactive"], plaintext),
    );
    const settings = await this.workspace.stackSettings(this.options.stackName);
    const value = settings.config?.[key] as { secure?: string } | undefined;
    if (!value?.secure) throw new Error(`Pulumi did not encrypt ${key}`);
    return value.secure;
  }

  /**
   * Plans an update with the config last set; changes nothing. `savePlan` writes Pulumi's update plan there.
   * The result names the data-holding resources the plan really deletes, from each step's `old` state.
   */
  async preview(onEvent?: (e: EngineEvent) => void, options: { savePlan?: string } = {}): Promise<EnginePreview> {
    const steps: ResourceStep[] = [];
    const deleting: Array<ResourceRef & { op: string }> = [];
    const result = await this.inFlight("preview", `stackpin preview of ${this.options.stackName}`, undefined, () =>
      this.stack.preview({
        ...(options.savePlan ? { plan: options.savePlan } : {}),
        onEvent: (e) => {
          const step = stepFromEvent(e);
          if (step) steps.push(step);
          const ref = deletedRef(e);
          if (ref) deleting.push(ref);
          onEvent?.(e);
        },
      }),
    );
    return { steps, changeSummary: result.changeSummary, dataAtRisk: dataAtRisk(deleting) };
  }

  /**
   * Runs an update with the config last set, recording `message` in the backend's update history. While
   * it runs, the stack carries an in-flight mark naming this process, so that an update killed before
   * it ended is recognised even when it left no lock and no pending operation behind.
   */
  async up(
    message: string,
    onEvent?: (e: EngineEvent) => void,
    options: {
      plan?: string;
      /**
       * Runs in the same records write that sets the stack's in-flight mark (under its lock, or per
       * compare-and-swap attempt): a check of the world that no other stackpin operation can change between
       * it and the update (the stale-plan check). What it raises ends the operation with nothing written.
       */
      beforeUpdate?: () => Promise<void>;
    } = {},
  ): Promise<EngineRun & { outputs: Record<string, StackOutput> }> {
    const steps: ResourceStep[] = [];
    let summary: OpMap | undefined;
    this.opened = undefined;
    // After an update `Stack.up` reads the outputs twice (masked, then in plain text) and the newest history
    // entry: three CLI calls. stackpin keeps outputs masked and takes the change counts from the engine's
    // own summary event, so this one update reads the masked outputs once (from the checkpoint the update
    // wrote, where the backend's files can be read), and no history.
    const lean = Object.assign(Object.create(this.stack) as Stack, {
      outputs: async () => this.maskedOutputs(),
      info: async () => undefined,
    });
    const result = await this.inFlight("update", message, options.beforeUpdate, async () => {
      return lean.up({
        ...(options.plan ? { plan: options.plan } : {}),
        message,
        onEvent: (e) => {
          if (e.summaryEvent) summary = e.summaryEvent.resourceChanges;
          const step = stepFromEvent(e);
          if (step) steps.push(step);
          onEvent?.(e);
        },
      });
    });
    const outputs = maskOutputs(result.outputs);
    // What the update left is known; the resources and pending operations are not: read again if asked.
    this.opened = undefined;
    return { steps, changeSummary: summary ?? result.summary?.resourceChanges ?? {}, outputs };
  }

  /**
   * The stack's outputs as `pulumi stack output --json` prints them (secrets, at any depth, `"[secret]"`):
   * the checkpoint's root stack resource read from the backend's file ({@link readBackendCheckpoint}), else
   * one CLI call.
   */
  private async maskedOutputs(): Promise<Record<string, { value: unknown; secret: boolean }>> {
    const { backendUrl, projectName, stackName } = this.options;
    const direct = await readBackendCheckpoint(backendUrl, projectName, stackName);
    if (direct) return parseCheckpoint(direct).outputs;
    const ws = this.workspace as unknown as { runPulumiCmd(args: string[]): Promise<{ stdout: string }> };
    const masked = JSON.parse((await ws.runPulumiCmd(["stack", "output", "--json", "--stack", this.options.stackName])).stdout) as Record<string, unknown>;
    return Object.fromEntries(Object.entries(masked).map(([k, v]) => [k, { value: v, secret: v === "[secret]" }]));
  }

  /** Removes every resource of the stack (its history stays). `beforeUpdate` runs as for {@link up}. */
  async destroy(message: string, onEvent?: (e: EngineEvent) => void, options: { beforeUpdate?: () => Promise<void> } = {}): Promise<void> {
    this.opened = undefined;
    await this.inFlight("destroy", message, options.beforeUpdate, () => this.stack.destroy({ message, onEvent }));
  }

  /**
   * Re-reads every resource from its provider and writes what it found to the state, dropping pending
   * creates (Pulumi's own recovery after an interrupted update). Recorded in history with `message`.
   */
  async refreshClearingPendingCreates(message: string, onEvent?: (e: EngineEvent) => void): Promise<void> {
    this.opened = undefined;
    await this.inFlight("refresh", message, undefined, () => this.stack.refresh({ message, clearPendingCreates: true, onEvent }));
  }

  /**
   * The locks Pulumi holds on this stack (`file://` and `s3://` backends), each judged against `mark`, the
   * in-flight mark, and the preview leases (`previews`: as the caller already read them; read here if not)
   * of the operations that may have taken it.
   */
  async locks(mark?: InFlightMark, previews?: InFlightMark[]): Promise<BackendLock[]> {
    const leases = previews ?? (await previewLeasesOf(this.target)?.list()) ?? [];
    return readBackendLocks(this.options.backendUrl, this.options.projectName, this.options.stackName, [...(mark ? [mark] : []), ...leases]);
  }

  /** The leases of previews running (or killed while running) on the stack, each judged now. */
  async previewLeases(): Promise<Array<InFlightMark & { liveness: Liveness }>> {
    const leases = (await previewLeasesOf(this.target)?.list()) ?? [];
    return leases.map((l) => ({ ...l, liveness: livenessOf(l, nodeCommand) }));
  }

  /** Deletes one preview's lease (of a preview whose holder is gone). */
  async removePreviewLease(lease: InFlightMark): Promise<void> {
    await previewLeasesOf(this.target)?.remove(lease);
  }

  /** Deletes one lock whose holder is gone; every other lock of the stack stays. */
  async breakLock(lock: BackendLock): Promise<void> {
    await removeBackendLock(this.options.backendUrl, lock);
  }

  /**
   * The checkpoint's resources and the operations an interrupted update left pending. `reuse`: the
   * checkpoint read when the stack was opened, while this process has not changed the stack since.
   */
  async checkpoint(options: { reuse?: boolean } = {}): Promise<{ resources: StateResource[]; pending: PendingOperation[] }> {
    if (options.reuse && this.opened) return this.opened;
    return parseCheckpoint(await this.guard(() => this.exported()));
  }

  /**
   * The checkpoint as `pulumi stack export` gives it (secrets encrypted): read from the backend's own file
   * on `file://` and `s3://` ({@link readBackendCheckpoint}), from the CLI otherwise or when that read
   * leaves the answer to it.
   */
  private async exported(): Promise<Deployment> {
    const { backendUrl, projectName, stackName } = this.options;
    return ((await readBackendCheckpoint(backendUrl, projectName, stackName)) as Deployment | undefined) ?? this.stack.exportStack();
  }

  /**
   * The in-flight mark an engine call left in stackpin's records (or, from an older stackpin, in the
   * stack's tags), judged now: on its own machine by its process, elsewhere by its lease.
   * `records`: the records already read by the caller.
   */
  async inFlightMark(records?: StackRecords): Promise<(InFlightMark & { liveness: Liveness }) | undefined> {
    const r = records ?? (await recordStoreOf(this).read());
    let mark = r.inFlight;
    if (!mark && !r.migratedFromTags) mark = parseMark((await this.tags())[inFlightTag]);
    if (!mark) return undefined;
    return { ...mark, liveness: livenessOf(mark, nodeCommand) };
  }

  /**
   * The history entry of the update a mark covers, when that update has ended (it is in the backend's
   * history: same message, started when the mark was written or later). A preview leaves no history, and
   * a recovery is not done when its refresh is (it reconciles processes after): undefined. Reads the
   * history ({@link history}).
   */
  async markEnded(mark: InFlightMark): Promise<{ revision: number; result: string } | undefined> {
    if (mark.kind === "preview" || mark.kind === "recover") return undefined;
    const since = Date.parse(mark.since);
    if (Number.isNaN(since) || !mark.what) return undefined;
    // Pulumi records an update's start in whole seconds.
    const from = Math.floor(since / 1000) * 1000;
    for (const u of await this.history()) {
      const started = Date.parse(String(u.startTime));
      if (started < from) break;
      if (String(u.message ?? "").split("\n")[0].startsWith(mark.what)) return { revision: u.version, result: String(u.result) };
    }
    return undefined;
  }

  /**
   * Removes the in-flight mark `judged`, and only it: compare-and-delete, so a mark another operation wrote
   * after it was judged stays. False when it was no longer there.
   */
  async clearInFlightMark(judged: InFlightMark): Promise<boolean> {
    let cleared = false;
    // The write first moves an older stackpin's tags (its `stackpin:in-flight` among them) into the records.
    await recordStoreOf(this).update((r) => {
      if (r.inFlight && sameMark(r.inFlight, judged)) {
        delete r.inFlight;
        cleared = true;
      }
    });
    return cleared;
  }

  /**
   * Runs `fn` holding the stack's in-flight mark (kind `recover`), replacing `judged` — a mark judged gone,
   * or one the operator forced — by compare-and-swap: if another mark is there by then, it is judged
   * afresh, and a live one refuses. Engine calls inside `fn` run under this mark; it is cleared after.
   */
  async holding<T>(kind: MarkKind, message: string, judged: InFlightMark | undefined, fn: () => Promise<T>): Promise<T> {
    return this.inFlight(kind, message, undefined, fn, judged);
  }

  /**
   * Scratch workspaces of this stack whose stackpin process is gone: the engine's plugins (the dynamic
   * provider runs in its own process group and outlives a killed CLI) still run in them. Stops those
   * plugins and removes the workspaces; returns what it removed. Workspaces of live processes stay.
   */
  async sweepStaleWorkspaces(): Promise<StaleWorkspace[]> {
    const { workRoot, stackName } = this.options;
    const swept: StaleWorkspace[] = [];
    for (const name of fs.readdirSync(workRoot).filter((f) => f.startsWith(`work-${stackName}-`))) {
      const dir = path.join(workRoot, name);
      let owner: Holder | undefined;
      try {
        owner = JSON.parse(fs.readFileSync(path.join(dir, ownerFile), "utf8")) as Holder;
      } catch {
        // Being created right now, or left by an older stackpin: not provably abandoned.
        continue;
      }
      if (owner.pid === process.pid) continue;
      const liveness = livenessOf(owner, nodeCommand);
      if (liveness.state !== "dead") continue;
      // Only the engine's plugins: what a plugin started (a service the state owns) may share their cwd.
      const plugins = processesIn(dir).filter((pid) => {
        try {
          return pluginCommand.test(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" "));
        } catch {
          return false;
        }
      });
      await stopProcesses(plugins, 2_000);
      fs.rmSync(dir, { recursive: true, force: true });
      swept.push({ dir, liveness });
    }
    return swept;
  }

  /**
   * The stack's outputs, secrets masked. `reuse`: the outputs read when the stack was opened (or left by
   * this process's last update), while this process has not changed the stack otherwise.
   */
  async outputs(options: { reuse?: boolean } = {}): Promise<Record<string, StackOutput>> {
    if (options.reuse && this.opened) return this.opened.outputs;
    return maskOutputs(await this.guard(() => this.stack.outputs()));
  }

  /** The backend's whole update history (every page), newest first, with config secrets left encrypted. */
  async history(): Promise<UpdateSummary[]> {
    const { backendUrl, projectName, stackName } = this.options;
    // Read from the backend's own records where it can be (file://, s3://): no CLI call.
    const direct = await readBackendHistory(backendUrl, projectName, stackName);
    if (direct) return direct;
    return this.guard(() => readAllPages((size, page) => this.stack.history(size, page, false)));
  }

  /** Stack tags, as stored in the backend. */
  async tags(): Promise<Record<string, string>> {
    return this.guard(() => this.workspace.listTags(this.options.stackName));
  }

  /**
   * Sets stack tags in the backend, one CLI call each. Pulumi writes each with an unlocked
   * read-modify-write of the whole tag set, so only values one writer owns belong here (stackpin's own
   * records are in the records document, `lib/ledger.ts`). Names and values must fit Pulumi Cloud's limits
   * (40 and 256 characters), so that a stack can move there.
   */
  async setTags(tags: Record<string, string>): Promise<void> {
    for (const [k, v] of Object.entries(tags)) {
      if (k.length > tagNameLimit || v.length > tagValueLimit) {
        throw new Error(`stack tag ${k} (${k.length} characters, value ${v.length}) exceeds Pulumi Cloud's limits of ${tagNameLimit} and ${tagValueLimit}`);
      }
    }
    for (const [k, v] of Object.entries(tags)) {
      await this.guard(() => this.workspace.setTag(this.options.stackName, k, v));
    }
  }

  /** Removes a stack tag from the backend. */
  async removeTag(key: string): Promise<void> {
    await this.guard(() => this.workspace.removeTag(this.options.stackName, key));
  }

  /** A path in this stack's scratch workspace for a Pulumi update plan (removed with the workspace). */
  planFile(): string {
    return path.join(this.workDir, `update-plan-${crypto.randomBytes(4).toString("hex")}.json`);
  }

  /** Which stack this is: the backend, project and stack name. */
  get target(): { backendUrl: string; projectName: string; stackName: string } {
    const { backendUrl, projectName, stackName } = this.options;
    return { backendUrl, projectName, stackName };
  }

  /** Removes the scratch workspace. The stack and its state stay in the backend. */
  close(): void {
    fs.rmSync(this.workDir, { recursive: true, force: true });
  }

  /** The mark this process holds on the stack while one of its engine calls (or a recovery) runs. */
  private held?: InFlightMark;

  /**
   * Runs `fn` (an engine call that takes Pulumi's lock) under an in-flight mark naming this process, its
   * machine and a lease renewed on a heartbeat. Another operation's mark stops it with
   * {@link ConcurrentOperationError} while that mark's holder runs or its lease is fresh; a mark whose
   * holder is gone, or whose update has ended in the backend's history, is replaced. `check` runs in the
   * records write that sets the mark; `replacing` is a mark the caller judged and may replace as it is.
   */
  private async inFlight<T>(kind: MarkKind, message: string, check: (() => Promise<void>) | undefined, fn: () => Promise<T>, replacing?: InFlightMark): Promise<T> {
    const store = recordStoreOf(this);
    if (this.held) {
      // Inside a recovery that holds the stack: its mark covers this call too.
      if (check) await store.update(() => undefined, { check: () => this.guard(check) });
      return this.guard(fn);
    }
    const ttlMs = this.options.leaseTtlMs ?? defaultLeaseTtlMs;
    const mark: InFlightMark = { what: message.split("\n")[0].slice(0, 140), kind, id: crypto.randomUUID(), ...holderHere({ ttlMs }) };
    mark.renewedAt = mark.since;
    const renewEvery = Math.max(1_000, Math.min(5_000, ttlMs / 4));
    if (kind === "preview") return this.underPreviewLease(mark, renewEvery, fn);
    if (store instanceof TagRecordStore) {
      // Where the records are stack tags, the mark must fit a tag value: the boot id gives way first (the
      // holder is then judged by its lease alone), then the description.
      let text = JSON.stringify(mark);
      if (text.length > tagValueLimit) delete mark.bootId;
      text = JSON.stringify(mark);
      while (text.length > tagValueLimit && mark.what.length > 0) {
        mark.what = mark.what.slice(0, Math.max(0, mark.what.length - (text.length - tagValueLimit)));
        text = JSON.stringify(mark);
      }
    }
    const stored = await store.read();
    const legacyMark = stored.migratedFromTags ? undefined : parseMark((await this.tags())[inFlightTag]);
    // A mark that is there now and not provably gone: if its update has ended in the backend's history it
    // is only left over (a killed process, a lost clearing write), and is replaced.
    const before = stored.inFlight ?? legacyMark;
    const ended = before && livenessOf(before, nodeCommand).state !== "dead" && !(replacing && sameMark(before, replacing)) ? await this.markEnded(before) : undefined;
    // Checked and written in one records write, so two operations starting at once cannot both pass.
    await store.update(
      (r) => {
        const current = r.inFlight ?? legacyMark;
        // This very process's own mark (an earlier call whose clearing write failed) is ours to replace.
        const ours = current !== undefined && current.pid === process.pid && samePlace(current, thisPlace());
        if (!current || ours || (replacing && sameMark(current, replacing)) || (ended && sameMark(current, before!))) {
          r.inFlight = mark;
          return;
        }
        const liveness = livenessOf(current, nodeCommand);
        if (liveness.state !== "dead") {
          throw new ConcurrentOperationError(this.options.stackName, { holder: `${current.what}: ${liveness.detail}`, expiresAt: liveness.state === "alive" ? liveness.expiresAt : undefined });
        }
        r.inFlight = mark;
      },
      { check: check && (() => this.guard(check)) },
    );
    this.held = mark;
    // The heartbeat: renews this mark (only while it is still this mark) well within its lease. A missed
    // renewal is tried again at the next beat; the lease outlives several.
    const beating = heartbeat(async () => {
      await store.update((r) => {
        if (!r.inFlight || !sameMark(r.inFlight, mark)) throw new MarkGone();
        r.inFlight.renewedAt = new Date().toISOString();
      });
    }, renewEvery);
    try {
      return await this.guard(fn);
    } finally {
      await beating.stop();
      this.held = undefined;
      // A failed update ended too (the engine released its lock); only a killed one leaves the mark. Only
      // ours is removed: a mark written meanwhile by another process stays with that process. A clearing
      // write that keeps failing leaves the mark to be cleared as ended (or expired) by the next command.
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          await this.clearInFlightMark(mark);
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
        }
      }
    }
  }

  /**
   * Runs a preview under a lease of its own (see `previewLeasesOf`): written before, renewed while it runs,
   * deleted after, so that the lock Pulumi takes for it can be judged if it is killed, and a preview leaves
   * the backend as it found it. Pulumi's lock keeps previews and updates apart.
   */
  private async underPreviewLease<T>(mark: InFlightMark, renewEvery: number, fn: () => Promise<T>): Promise<T> {
    const leases = previewLeasesOf(this.target);
    if (!leases) return this.guard(fn);
    await leases.put(mark);
    const beating = heartbeat(() => leases.put({ ...mark, renewedAt: new Date().toISOString() }), renewEvery);
    try {
      return await this.guard(fn);
    } finally {
      await beating.stop();
      await leases.remove(mark).catch(() => undefined);
    }
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw translateEngineError(this.options.stackName, this.options.backendUrl, err, this.options.secretsProvider);
    }
  }

  /** Runs the workspace's CLI as the Automation API would (same cwd and environment), writing `input` to its stdin. */
  private async runCliWithInput(args: string[], input: string): Promise<void> {
    const env = {
      ...process.env,
      ...(this.workspace.pulumiHome ? { PULUMI_HOME: this.workspace.pulumiHome } : {}),
      ...this.workspace.envVars,
      PULUMI_AUTOMATION_API: "true",
    };
    await runPulumi({ binary: this.options.pulumi.command.command, args, cwd: this.workDir, env, input });
  }
}

/** The stack settings that tell Pulumi how the stack's secrets are encrypted, from `stack.yaml`. */
function secretsSettings(options: OpenEngineStackOptions) {
  const { stackName, secretsProvider, encryptionSalt, encryptedKey } = options;
  if (secretsProvider === "passphrase") return encryptionSalt ? { [stackName]: { encryptionSalt } } : undefined;
  return { [stackName]: { secretsProvider, ...(encryptedKey ? { encryptedKey } : {}) } };
}

function maskOutputs(outputs: Record<string, { value: unknown; secret: boolean }>): Record<string, StackOutput> {
  return Object.fromEntries(
    Object.entries(outputs).map(([k, o]) => [k, { value: o.secret ? "[secret]" : o.value, secret: o.secret }]),
  );
}

/**
 * Runs `renew` every `everyMs` (one at a time; a failed renewal is tried again at the next beat) until
 * stopped; `stop` waits for a renewal under way.
 */
function heartbeat(renew: () => Promise<void>, everyMs: number): { stop(): Promise<void> } {
  let beat: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    beat = beat.then(renew).catch(() => undefined);
  }, everyMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await beat;
    },
  };
}

/** Raised inside a records write to abandon it: the mark to renew is no longer there. */
class MarkGone extends Error {}

/** Whether two marks are the same one: by id, or (marks of an older stackpin) by holder and start. */
export function sameMark(a: InFlightMark, b: InFlightMark): boolean {
  if (a.id !== undefined || b.id !== undefined) return a.id === b.id;
  return a.pid === b.pid && a.hostname === b.hostname && a.since === b.since && a.what === b.what;
}

/**
 * The in-flight mark in a `file://` backend's records document and the stack's preview leases, read before
 * the stack is opened; none elsewhere.
 */
export function fileRecordsMarks(options: Pick<OpenEngineStackOptions, "backendUrl" | "projectName" | "stackName">): InFlightMark[] {
  if (!options.backendUrl.startsWith("file://")) return [];
  const file = recordsFile(options.backendUrl.slice("file://".length), options.projectName, options.stackName);
  const marks: InFlightMark[] = [];
  const read = (f: string) => {
    try {
      return JSON.parse(fs.readFileSync(f, "utf8")) as unknown;
    } catch {
      return undefined;
    }
  };
  const doc = read(file) as StackRecords | undefined;
  if (doc?.inFlight) marks.push(doc.inFlight);
  const previews = `${file.slice(0, -".json".length)}.previews`;
  if (fs.existsSync(previews)) {
    for (const f of fs.readdirSync(previews)) {
      const m = read(path.join(previews, f)) as InFlightMark | undefined;
      if (m && typeof m.pid === "number") marks.push(m);
    }
  }
  return marks;
}

/** A mark as an older stackpin kept it in the `stackpin:in-flight` stack tag. */
export function parseMark(raw: string | undefined): InFlightMark | undefined {
  if (!raw) return undefined;
  try {
    return JSON.parse(raw) as InFlightMark;
  } catch {
    return { what: raw, pid: 0, hostname: "?", since: "" };
  }
}

// How `stack export --show-secrets` writes a secret: the signature key, and the value in `plaintext`.
const secretSig = "4dabf18193072939515e22adb298388d";

function isSecretValue(v: unknown): boolean {
  return typeof v === "object" && v !== null && secretSig in (v as Record<string, unknown>);
}

/** A value with every secret in it (at any depth) replaced by `"[secret]"`. */
function maskSecrets(v: unknown): unknown {
  if (isSecretValue(v)) return "[secret]";
  if (Array.isArray(v)) return v.map(maskSecrets);
  if (typeof v === "object" && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, maskSecrets(x)]));
  return v;
}

/** The checkpoint's resources, pending operations and stack outputs (the root stack resource's outputs, masked). */
function parseCheckpoint(deployment: Deployment): { outputs: Record<string, StackOutput>; resources: StateResource[]; pending: PendingOperation[] } {
  const d = (deployment.deployment ?? {}) as {
    resources?: Array<{ urn: string; type: string; outputs?: Record<string, unknown>; retainOnDelete?: boolean; protect?: boolean }>;
    pending_operations?: Array<{ type: string; resource: { urn: string } }>;
  };
  const resources = (d.resources ?? []).map((r) => ({
    urn: r.urn,
    type: r.type,
    outputs: r.outputs ?? {},
    ...(r.retainOnDelete ? { retainOnDelete: true } : {}),
    ...(r.protect ? { protect: true } : {}),
  }));
  const root = resources.find((r) => r.type === "pulumi:pulumi:Stack");
  const outputs = Object.fromEntries(
    Object.entries(root?.outputs ?? {}).map(([k, v]) => [k, { value: maskSecrets(v), secret: isSecretValue(v) }]),
  );
  return { outputs, resources, pending: (d.pending_operations ?? []).map((p) => ({ type: p.type, urn: p.resource.urn })) };
}
