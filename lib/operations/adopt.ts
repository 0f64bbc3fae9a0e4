import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Document } from "yaml";
import type { StackSettingsConfigValue } from "@pulumi/pulumi/automation";
import type { ProgramFactory } from "../../programs/types";
import { EngineStack } from "../engine/stack";
import { locatePulumi, type PulumiCli } from "../engine/pulumi-cli";
import {
  ConcurrentOperationError,
  InexpressibleConfigError,
  PendingOperationsError,
  ProgramLoadError,
  StackAlreadyDefinedError,
  UnknownVersionError,
} from "../errors";
import { checkProgramConfig } from "../versions/program-config";
import { describeIssues, stackFileSchema, versionFileSchema, versionNamePattern } from "../versions/schema";
import { readPulumiProject, stackFileName, VersionStore } from "../versions/store";

/** Options for {@link adopt}. */
export interface AdoptOptions {
  /** The existing Pulumi stack, and the directory it gets under `stacks/`. */
  stack: string;
  /** The version its current config becomes (`v1`). */
  as: string;
  /** What `stack.yaml`'s `program` names: the program that manages the stack (a path like `./infra/checkout`, or a built-in). */
  program: string;
  /** The stack's Pulumi project; defaults to `Pulumi.yaml`'s `name`, else `stackpin`. */
  project?: string;
  /** The project directory holding `stacks/`. Defaults to the cwd. */
  projectDir?: string;
  /** The backend holding the stack; defaults to `Pulumi.yaml`'s, else `file://<projectDir>/.stackpin/state`. */
  backendUrl?: string;
  /** Writes `backendUrl` into `stack.yaml` (when it was given explicitly), so every later command finds the stack. */
  recordBackend?: boolean;
  passphrase?: { value?: string; file?: string };
  pulumi?: PulumiCli;
  pulumiHome?: string;
  /** Built-in programs by name; defaults to `programs/` (filled in by the library's entry point and the CLI). */
  programs?: Record<string, ProgramFactory>;
}

/** What {@link adopt} found and wrote. Config keys only: values (secrets above all) are in the files. */
export interface AdoptResult {
  stack: string;
  version: string;
  project: string;
  program: string;
  backendUrl: string;
  stackFile: string;
  versionFile: string;
  /** The config keys written into the version file, as written; `secret` for ciphertexts. */
  keys: { key: string; secret: boolean }[];
  /** Resources in the stack's state (the stack resource and providers included). */
  resources: number;
}

// Pulumi keeps every plain config value as a string (`replicas: "3"`) and hands the program a string
// either way, so a canonical number or boolean is written as one: the program reads the same text, and
// a schema that says z.number() accepts it.
function asWritten(value: StackSettingsConfigValue): unknown {
  if (typeof value !== "string") return value;
  if (value === "true" || value === "false") return value === "true";
  if (/^-?(0|[1-9]\d{0,14})(\.\d*[1-9])?$/.test(value) && String(Number(value)) === value) return Number(value);
  return value;
}

/**
 * Turns an existing Pulumi stack into a stackpin stack: reads the config its newest update ran with from
 * the backend (secrets stay ciphertext: nothing is decrypted) and writes `stacks/<stack>/stack.yaml` and
 * `<as>.yaml`, so that applying `<as>` changes no resource and stackpin's history starts there. Reads the
 * backend only. Refuses, writing nothing, when the stack is defined already, has pending operations or a
 * live lock, or when its config cannot be expressed in stackpin's files (or fails the program's schema).
 * Takes the built-in programs from the caller; the library's `adopt` and the CLI pass `programs/`'s.
 */
export async function adopt(options: AdoptOptions & { programs: Record<string, ProgramFactory> }): Promise<AdoptResult> {
  const projectDir = path.resolve(options.projectDir ?? process.cwd());
  const stacksDir = path.join(projectDir, "stacks");
  const version = options.as.trim();
  if (!versionNamePattern.test(version)) throw new UnknownVersionError(options.stack, options.as, [], `--as must name a version like v1 or v41.1, not "${options.as}"`);
  if (!/^[A-Za-z0-9_.-]+$/.test(options.stack)) throw new InexpressibleConfigError(options.stack, [`the stack name cannot be a directory under stacks/ (letters, digits, _ . - only)`]);
  const dir = path.join(stacksDir, options.stack);
  for (const file of [path.join(dir, stackFileName), path.join(dir, `${version}.yaml`)]) {
    if (fs.existsSync(file)) throw new StackAlreadyDefinedError(options.stack, file);
  }
  const pulumiProject = readPulumiProject(projectDir);
  const project = options.project ?? pulumiProject.name ?? "stackpin";
  // The program is loaded now: a bad path fails before the backend is read, and its schema checks the config.
  const store = new VersionStore(stacksDir, project, options.programs, projectDir);
  const program = store.programFor(options.program);
  if (!program) throw new ProgramLoadError(options.program, `not a built-in program (${Object.keys(store.programs).join(", ")}) nor a path to the project's own (./infra/app)`);

  const backendUrl = options.backendUrl ?? pulumiProject.backendUrl ?? `file://${path.join(projectDir, ".stackpin", "state")}`;
  const pulumi = options.pulumi ?? (await locatePulumi({ searchPath: process.env.PATH }));
  const engine = await EngineStack.open({
    stackName: options.stack,
    projectName: project,
    backendUrl,
    secretsProvider: "passphrase",
    passphrase: options.passphrase,
    // Never run: adopt reads the stack and its config, it does not preview or update.
    program: async () => undefined,
    pulumi,
    workRoot: path.join(projectDir, ".stackpin", "engine"),
    pulumiHome: options.pulumiHome,
    create: false,
  });
  let settings: Awaited<ReturnType<EngineStack["deployedSettings"]>>;
  let resources: number;
  try {
    const checkpoint = await engine.checkpoint();
    if (checkpoint.pending.length) throw new PendingOperationsError(options.stack, checkpoint.pending.map((p) => `${p.type} ${p.urn.split("::").pop()}`));
    const live = (await engine.locks((await engine.inFlightMark()) ?? undefined)).find((l) => l.liveness.state !== "dead");
    if (live) throw new ConcurrentOperationError(options.stack, { holder: `Pulumi's lock is held: ${live.liveness.detail}`, hint: "adopt again when it is done" });
    resources = checkpoint.resources.length;
    settings = await engine.deployedSettings();
  } finally {
    engine.close();
  }

  const problems: string[] = [];
  const config: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(settings.config).sort(([a], [b]) => a.localeCompare(b))) {
    if (key.startsWith("stackpin:")) {
      problems.push(`config.${key}: the stackpin namespace is stackpin's own (it sets it on every apply)`);
      continue;
    }
    config[key.startsWith(`${project}:`) ? key.slice(project.length + 1) : key] = asWritten(value);
  }
  const secretsProvider = settings.secretsProvider && settings.secretsProvider !== "passphrase" ? settings.secretsProvider : undefined;
  const stackDoc: Record<string, unknown> = {
    program: options.program,
    project,
    ...(secretsProvider ? { secretsProvider } : {}),
    ...(settings.encryptionSalt ? { encryptionsalt: settings.encryptionSalt } : {}),
    ...(settings.encryptedKey ? { encryptedkey: settings.encryptedKey } : {}),
    ...(options.recordBackend && options.backendUrl ? { backend: options.backendUrl } : {}),
  };
  const versionDoc = {
    version,
    description: `adopted from ${project}/${options.stack} (its config at ${new Date().toISOString().slice(0, 10)})`,
    config,
  };
  const parsedStack = stackFileSchema.safeParse(stackDoc);
  if (!parsedStack.success) problems.push(...describeIssues(parsedStack.error).map((p) => `stack.yaml ${p}`));
  const parsedVersion = versionFileSchema.safeParse(versionDoc);
  if (!parsedVersion.success) problems.push(...describeIssues(parsedVersion.error).map((p) => `${version}.yaml ${p}`));
  if (program.config && parsedVersion.success) {
    const check = checkProgramConfig(parsedVersion.data.config, { program: options.program, project, spec: program.config });
    problems.push(...check.problems);
  }
  if (problems.length) throw new InexpressibleConfigError(options.stack, problems);

  const header = (what: string) =>
    `# ${what}, written by \`stackpin adopt\` from the stack in ${backendUrl.replace(/\?.*$/, "")} on ${os.hostname()}.\n` +
    `# Secrets are Pulumi's ciphertext, never values. Commit it; review it like code.\n`;
  const stackFile = path.join(dir, stackFileName);
  const versionFile = path.join(dir, `${version}.yaml`);
  fs.mkdirSync(dir, { recursive: true });
  // The version first: stack.yaml is what makes the directory a stack, so a crash in between leaves none.
  fs.writeFileSync(versionFile, header(`${options.stack} at ${version}`) + new Document(versionDoc).toString());
  fs.writeFileSync(stackFile, header(`Stack ${options.stack}`) + new Document(stackDoc).toString());
  try {
    // Read back as every later command will: the same parse, schemas and program check.
    store.version(store.stack(options.stack), version);
  } catch (err) {
    fs.rmSync(stackFile, { force: true });
    fs.rmSync(versionFile, { force: true });
    if (!fs.readdirSync(dir).length) fs.rmdirSync(dir);
    throw err;
  }
  return {
    stack: options.stack,
    version,
    project,
    program: options.program,
    backendUrl,
    stackFile,
    versionFile,
    keys: Object.entries(config).map(([key, value]) => ({ key, secret: typeof value === "object" && value !== null && "secure" in value })),
    resources,
  };
}
