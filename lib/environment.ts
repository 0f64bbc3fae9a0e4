import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { EngineEvent } from "@pulumi/pulumi/automation";
import * as z from "zod";
import type { ProgramFactory } from "../programs/types";
import { EngineStack, isProgramResource } from "./engine/stack";
import { StackReader } from "./engine/stack-reader";
import { locatePulumi, LocatePulumiOptions, PulumiCli } from "./engine/pulumi-cli";
import { BackendUnsupportedError, diagnosticText, InvalidVersionFileError, MissingPassphraseError, StackNotDeployedError } from "./errors";
import { checkMachinePolicy, MachinePolicy, MachinePolicyInput, readMachinePolicy } from "./policy/machine-policy";
import { checkConditionalWrites, s3LocationOf } from "./records/s3-backend";
import { readPulumiProject, StackDefinition, VersionStore } from "./versions/store";

/** How to reach one environment: a stack under `stacks/`, its backend, its passphrase and its CLI. */
export interface OpenEnvironmentOptions {
  /** The stack (a directory under `stacks/`). */
  stack: string;
  /** The project directory holding `stacks/` and the local `.stackpin/` folder. Defaults to the cwd. */
  projectDir?: string;
  /** The `stacks/` directory. Defaults to `<projectDir>/stacks`. */
  stacksDir?: string;
  /** The state backend URL. Defaults to `stack.yaml`'s `backend`, else `file://<projectDir>/.stackpin/state`. */
  backendUrl?: string;
  /** The secrets passphrase (`PULUMI_CONFIG_PASSPHRASE`) or a file holding it. Required for passphrase stacks (see `requirePassphrase`). */
  passphrase?: { value?: string; file?: string };
  /**
   * Whether a passphrase stack opened without its passphrase is refused at once (the default, true).
   * False suits a caller that only reads (`status`, `history`): reading history decrypts nothing, so it
   * works without one, and whatever would need it (the engine, or outputs stackpin's records do not hold)
   * raises `MissingPassphraseError` when it is reached, before it touches anything.
   */
  requirePassphrase?: boolean;
  /** The Pulumi CLI; found with {@link locatePulumi} (on `PATH` and in the project cache) the first time the engine is needed. */
  pulumi?: PulumiCli;
  /** `PULUMI_HOME` for the CLI. */
  pulumiHome?: string;
  /** Who is acting, recorded in history. Defaults to the OS user. */
  actor?: string;
  /** Programs a stack may name; defaults to the built-in ones in `programs/` (filled in by the library's entry point and the CLI). */
  programs?: Record<string, ProgramFactory>;
  /**
   * This machine's own policy, kept outside the repository (`readMachinePolicy` reads its file): what
   * needs approval here whatever `stack.yaml` says, and whose signatures count. Validated here; an invalid
   * one raises `InvalidMachinePolicyError` (exit 5).
   */
  machinePolicy?: MachinePolicyInput;
}

/**
 * The environment variables stackpin reads, validated here and nowhere else: by the CLI, and by each
 * stack's process in a fleet rollback (which gets the fleet's environment, never secrets in arguments).
 */
export const envSchema = z.object({
  PULUMI_CONFIG_PASSPHRASE: z.string().optional(),
  PULUMI_CONFIG_PASSPHRASE_FILE: z.string().min(1).optional(),
  PULUMI_HOME: z.string().min(1).optional(),
  STACKPIN_PULUMI: z.string().min(1).optional(),
  STACKPIN_BACKEND: z.string().min(1).optional(),
  STACKPIN_ACTOR: z.string().min(1).optional(),
  STACKPIN_ALLOWED_SIGNERS: z.string().min(1).optional(),
  STACKPIN_MACHINE_POLICY: z.string().min(1).optional(),
  STACKPIN_DEBUG: z.string().optional(),
  PATH: z.string().default(""),
});
/** The environment variables stackpin reads, validated by {@link envSchema}. */
export type StackpinEnv = z.infer<typeof envSchema>;

/**
 * This machine's policy: the file `STACKPIN_MACHINE_POLICY` names, with `STACKPIN_ALLOWED_SIGNERS` as its
 * allowed signers when it names none; or `STACKPIN_ALLOWED_SIGNERS` alone, which pins whose signatures
 * count but not what needs approval. Relative paths are relative to the current directory.
 */
export function machinePolicyFromEnv(env: StackpinEnv): MachinePolicy | undefined {
  const signers = env.STACKPIN_ALLOWED_SIGNERS === undefined ? undefined : path.resolve(env.STACKPIN_ALLOWED_SIGNERS);
  if (env.STACKPIN_MACHINE_POLICY !== undefined) {
    return readMachinePolicy(env.STACKPIN_MACHINE_POLICY, signers === undefined ? {} : { allowedSigners: { file: signers, from: "STACKPIN_ALLOWED_SIGNERS" } });
  }
  return signers === undefined ? undefined : { source: "STACKPIN_ALLOWED_SIGNERS", approvals: { require: [], approvers: [], allowedSigners: signers } };
}

/** The passphrase the environment gives (`PULUMI_CONFIG_PASSPHRASE`, or a file named by `PULUMI_CONFIG_PASSPHRASE_FILE`), if any. */
export function passphraseFromEnv(env: StackpinEnv): OpenEnvironmentOptions["passphrase"] {
  return env.PULUMI_CONFIG_PASSPHRASE !== undefined || env.PULUMI_CONFIG_PASSPHRASE_FILE
    ? { value: env.PULUMI_CONFIG_PASSPHRASE, file: env.PULUMI_CONFIG_PASSPHRASE_FILE }
    : undefined;
}

/**
 * What the environment says about opening a stack: this machine's policy (read first: a broken one
 * refuses before anything else), the passphrase, `PULUMI_HOME` and who acts.
 */
export function openOptionsFromEnv(env: StackpinEnv): Pick<OpenEnvironmentOptions, "machinePolicy" | "passphrase" | "pulumiHome" | "actor"> {
  return { machinePolicy: machinePolicyFromEnv(env), passphrase: passphraseFromEnv(env), pulumiHome: env.PULUMI_HOME, actor: env.STACKPIN_ACTOR };
}

/** Where to look for the Pulumi CLI, from the environment; `projectDir`'s engine directory remembers its version. */
export function locateOptionsFromEnv(env: StackpinEnv, projectDir?: string): LocatePulumiOptions {
  return { explicit: env.STACKPIN_PULUMI, searchPath: env.PATH, pulumiHome: env.PULUMI_HOME, versionCacheDir: `${projectDir ?? process.cwd()}/.stackpin/engine` };
}

/** Progress of an operation, for people: phases and resources as the engine touches them. */
export type ProgressEvent =
  | { type: "phase"; phase: "validate" | "preview" | "switch" | "apply" | "verify" | "record" | "rollback" | "recover" | "watch" | "check"; message: string }
  | { type: "check"; name: string; passed: boolean; detail: string; attempts: number }
  | { type: "resource"; op: string; name: string; resourceType: string; status: "started" | "done" | "failed" }
  | { type: "diagnostic"; severity: string; message: string }
  /** The engine is waiting on a resource it started and has no outcome for yet; `reason` is its provider's status line. */
  | { type: "waiting"; name: string; resourceType: string; reason: string };

/** Options every operation that runs the engine accepts. */
export interface ProgressOptions {
  /** stackpin's progress events (phases, resources). */
  onProgress?: (event: ProgressEvent) => void;
  /** The engine's raw event stream, as Pulumi's Automation API delivers it. */
  onEngineEvent?: (event: EngineEvent) => void;
}

/** Everything an operation needs about one environment; built once by {@link openEnvironment}. */
export interface EnvironmentContext {
  stack: StackDefinition;
  store: VersionStore;
  projectDir: string;
  backendUrl: string;
  actor: string;
  /** The program factory the stack runs (from `stack.yaml`'s `program`). */
  program: ProgramFactory;
  /** The directory the program keeps the stack's local resources in. */
  stateDir: string;
  /** Secret values given in code (a passphrase passed as a value), redacted from what smoke commands print. */
  secretValues: string[];
  /** This machine's policy, validated; merged with the stack's wherever approvals are decided (`approvalPolicyOf`). */
  machinePolicy?: MachinePolicy;
  /** `PULUMI_HOME` as the engine is given it (its plugins are there); undefined: the CLI's default, `~/.pulumi`. */
  pulumiHome?: string;
  /**
   * Opens the stack in the engine; `create` makes it in the backend on first use, and then writes the
   * passphrase salt Pulumi chose into `stack.yaml` (when it has none).
   */
  openEngine(options: { create: boolean }): Promise<EngineStack>;
  /**
   * Opens the stack to plan against without creating anything: the stack itself when the backend has
   * it; otherwise (never deployed) a scratch stack of the same name in a throw-away `file://` backend
   * under the system's temp directory, with the same config and salt, that `close()` deletes. Neither
   * the backend nor `stack.yaml` is written. When `stack.yaml` has no salt (or data key) yet, the one the
   * scratch stack got is the one `openEngine({ create: true })` then creates the stack with.
   */
  openForPlan(): Promise<PlanEngine>;
  /**
   * Opens the stack for reading only, through the Pulumi CLI directly (no Automation API, no workspace
   * selection): what `status` and `history` use. Raises {@link StackNotDeployedError} on its first read
   * when the backend has no such stack.
   */
  openReader(): Promise<StackReader>;
}

/** An engine stack to preview against, and whether the real stack exists yet (see {@link EnvironmentContext.openForPlan}). */
export interface PlanEngine {
  engine: EngineStack;
  /** True when the backend has no such stack yet: the engine is a scratch one, and nothing is live. */
  firstUse: boolean;
  /** Closes the engine, and removes the scratch backend of a first use. */
  close(): void;
}

/** Turns engine events into {@link ProgressEvent}s for a caller's handler. */
export function progressBridge(options: ProgressOptions): (e: EngineEvent) => void {
  // Resources started and not finished, with the last status line said for each: while the engine waits
  // on one (a claim that cannot bind, a snapshot never ready, a Job), its provider's ephemeral status
  // lines say why, and a long wait is no longer silence.
  const open = new Map<string, { name: string; type: string; said?: string }>();
  return (e) => {
    options.onEngineEvent?.(e);
    const say = options.onProgress;
    if (!say) return;
    const pre = e.resourcePreEvent?.metadata;
    const out = e.resOutputsEvent?.metadata;
    const failed = e.resOpFailedEvent?.metadata;
    for (const [md, status] of [
      [pre, "started"],
      [out, "done"],
      [failed, "failed"],
    ] as const) {
      if (md && md.op !== "same" && isProgramResource(md.type)) {
        const name = md.urn.split("::").pop() ?? md.urn;
        say({ type: "resource", op: md.op, name, resourceType: md.type, status });
        if (status === "started") open.set(md.urn, { name, type: md.type });
        else open.delete(md.urn);
      }
    }
    const diag = e.diagnosticEvent;
    const waiting = diag?.urn && diag.ephemeral && diag.severity === "info" ? open.get(diag.urn) : undefined;
    const reason = diag?.message.trim().split("\n")[0];
    if (waiting && reason && reason !== waiting.said) {
      waiting.said = reason;
      say({ type: "waiting", name: waiting.name, resourceType: waiting.type, reason });
    }
    // The engine warns each time it runs our dynamic provider plugin from PATH; that is by design here.
    if (diag && /using pulumi-resource-pulumi-nodejs from \$PATH/.test(diag.message)) return;
    if (diag && (diag.severity === "error" || diag.severity === "warning") && !diag.ephemeral) {
      const message = diagnosticText(diag.message);
      if (message) say({ type: "diagnostic", severity: diag.severity, message });
    }
  };
}

/**
 * Validates the stack's definition and the passphrase, finds the CLI, and returns the context operations
 * run in. Nothing touches the backend here: a bad stack, stack file or missing passphrase fails first.
 * Takes the programs from the caller, so that the library's core never loads the built-in ones itself;
 * the library's `openEnvironment` and the CLI pass `programs/`'s.
 */
export async function openEnvironment(options: OpenEnvironmentOptions & { programs: Record<string, ProgramFactory> }): Promise<EnvironmentContext> {
  // First: a machine whose own policy is broken refuses before it reads anything of the repository's.
  const machinePolicy = options.machinePolicy === undefined ? undefined : checkMachinePolicy(options.machinePolicy);
  const projectDir = path.resolve(options.projectDir ?? process.cwd());
  const pulumiProject = readPulumiProject(projectDir);
  const programs = options.programs;
  const store = new VersionStore(path.resolve(projectDir, options.stacksDir ?? "stacks"), pulumiProject.name, programs, projectDir);
  const stack = store.stack(options.stack);
  // A built-in (or given) program by name, or the project's own by path (loaded by the store already).
  const factory = store.programFor(stack.settings.program) as ProgramFactory | undefined;
  if (!factory) {
    throw new InvalidVersionFileError(path.join(stack.dir, "stack.yaml"), [
      `program: "${stack.settings.program}" is not one of ${Object.keys(programs).join(", ")}, nor a path to the project's own program (./infra/app)`,
    ]);
  }
  const passphrase = options.passphrase;
  const passphraseMissing = stack.settings.secretsProvider === "passphrase" && passphrase?.value === undefined && !passphrase?.file;
  if (passphraseMissing && options.requirePassphrase !== false) throw new MissingPassphraseError(stack.name);
  const localDir = path.join(projectDir, ".stackpin");
  const backendUrl =
    options.backendUrl ?? stack.settings.backend ?? pulumiProject.backendUrl ?? `file://${path.join(localDir, "state")}`;
  let pulumi = options.pulumi;
  const stateDir = path.join(localDir, "local", stack.name);
  // Made when the engine is first opened: a program's module loads `@pulumi/pulumi`, which commands that
  // only read (`status`, `history`) never need.
  let program: ReturnType<ProgramFactory> | undefined;
  // The salt or data key a first deploy's scratch stack was made with, when stack.yaml has none: the
  // real stack is created with it, since the update plan made on the scratch stack holds ciphertext
  // that only it decrypts. Kept in memory only: a refused first deploy writes nothing.
  const planned: { encryptionSalt?: string; encryptedKey?: string } = {};
  const open = async (url: string, create: boolean) => {
    // Opened for reading only: the engine decrypts the stack's secrets, so it is where the passphrase is needed.
    if (passphraseMissing) throw new MissingPassphraseError(stack.name);
    pulumi ??= await locatePulumi({ searchPath: process.env.PATH, versionCacheDir: path.join(localDir, "engine") });
    return EngineStack.open({
      stackName: stack.name,
      projectName: stack.project,
      backendUrl: url,
      secretsProvider: stack.settings.secretsProvider,
      encryptionSalt: stack.settings.encryptionsalt ?? planned.encryptionSalt,
      encryptedKey: stack.settings.encryptedkey ?? planned.encryptedKey,
      passphrase,
      program: (program ??= factory({ stackName: stack.name, stateDir })),
      pulumi,
      workRoot: path.join(localDir, "engine"),
      pulumiHome: options.pulumiHome,
      leaseTtlMs: stack.settings.lease.ttlSeconds * 1000,
      create,
    });
  };
  const ctx: EnvironmentContext = {
    stack,
    pulumiHome: options.pulumiHome,
    store,
    projectDir,
    backendUrl,
    actor: options.actor ?? os.userInfo().username,
    program: factory,
    stateDir,
    secretValues: passphrase?.value ? [passphrase.value] : [],
    ...(machinePolicy ? { machinePolicy } : {}),
    async openEngine({ create }) {
      // An s3:// store that ignores conditional writes would lose records and audit entries silently:
      // refused here, before the engine runs. A check that cannot run (read-only credentials, the store
      // unreachable) does not stop the command: the engine says what is wrong, and every write of the
      // records or the trail checks again first.
      const s3 = s3LocationOf(backendUrl);
      if (s3) {
        await checkConditionalWrites(s3).catch((err: unknown) => {
          if (err instanceof BackendUnsupportedError) throw err;
        });
      }
      const engine = await open(backendUrl, create);
      if (!stack.settings.encryptionsalt && stack.settings.secretsProvider === "passphrase") {
        const salt = await engine.encryptionSalt().catch((err) => {
          engine.close();
          throw err;
        });
        if (salt) {
          store.recordEncryptionSalt(stack, salt);
          stack.settings.encryptionsalt = salt;
        }
      }
      if (!stack.settings.encryptedkey && stack.settings.secretsProvider !== "passphrase") {
        // Like the salt: without it, the next machine would make a new data key and not read these secrets.
        const key = await engine.encryptedKey();
        if (key) {
          store.recordEncryptedKey(stack, key);
          stack.settings.encryptedkey = key;
        }
      }
      fs.mkdirSync(stateDir, { recursive: true });
      return engine;
    },
    async openReader() {
      pulumi ??= await locatePulumi({ searchPath: process.env.PATH, versionCacheDir: path.join(localDir, "engine") });
      return StackReader.open({
        binary: path.join(pulumi.root, "pulumi"),
        stackName: stack.name,
        projectName: stack.project,
        backendUrl,
        secretsProvider: stack.settings.secretsProvider,
        encryptionSalt: stack.settings.encryptionsalt,
        encryptedKey: stack.settings.encryptedkey,
        passphrase,
        workRoot: path.join(localDir, "engine"),
        pulumiHome: options.pulumiHome,
      });
    },
    async openForPlan() {
      // Selecting a stack in a file:// backend nobody used yet initialises it (.pulumi/meta.yaml): a
      // backend without .pulumi holds no stack, so go straight to the scratch one.
      const unused = backendUrl.startsWith("file://") && !fs.existsSync(path.join(backendUrl.slice("file://".length), ".pulumi"));
      if (!unused) {
        try {
          const engine = await ctx.openEngine({ create: false });
          return { engine, firstUse: false, close: () => engine.close() };
        } catch (err) {
          if (!(err instanceof StackNotDeployedError)) throw err;
        }
      }
      // Pulumi previews only stacks that exist: make one where nobody else looks, and throw it away.
      const scratch = fs.mkdtempSync(path.join(os.tmpdir(), `stackpin-plan-${stack.name}-`));
      try {
        const engine = await open(`file://${scratch}`, true);
        try {
          if (stack.settings.secretsProvider === "passphrase") planned.encryptionSalt ??= await engine.encryptionSalt();
          else planned.encryptedKey ??= await engine.encryptedKey();
        } catch (err) {
          engine.close();
          throw err;
        }
        return {
          engine,
          firstUse: true,
          close: () => {
            engine.close();
            fs.rmSync(scratch, { recursive: true, force: true });
          },
        };
      } catch (err) {
        fs.rmSync(scratch, { recursive: true, force: true });
        throw err;
      }
    },
  };
  return ctx;
}
