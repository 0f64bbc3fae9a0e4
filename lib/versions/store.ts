import * as fs from "node:fs";
import * as path from "node:path";
import type { ProgramConfigSpec } from "../../programs/types";
import { InvalidVersionFileError, UnknownStackError, UnknownVersionError } from "../errors";
import { isProgramPath, loadProgram } from "../engine/program-loader";
import { checkProgramConfig } from "./program-config";
import {
  describeIssues,
  StackFile,
  stackFileSchema,
  VersionFile,
  versionFileSchema,
  pulumiProjectSchema,
  versionNamePattern,
} from "./schema";
import { parseYamlDocument, readYamlFile } from "./yaml-input";

/** The name of the per-stack settings file inside `stacks/<stack>/`. */
export const stackFileName = "stack.yaml";

/** A stack as found under `stacks/`: its settings and the names of its versions, oldest first. */
export interface StackDefinition {
  name: string;
  dir: string;
  settings: StackFile;
  /** The Pulumi project: `stack.yaml`'s `project`, else `Pulumi.yaml`'s `name`, else `stackpin`. */
  project: string;
  versions: string[];
  /** The config the stack's program declares, when the store knows the program; versions are checked against it. */
  programConfig?: ProgramConfigSpec;
}

/** Reads `name` and `backend.url` from a project's `Pulumi.yaml`, if it has one. */
export function readPulumiProject(projectDir: string): { name?: string; backendUrl?: string } {
  const file = path.join(projectDir, "Pulumi.yaml");
  if (!fs.existsSync(file)) return {};
  const parsed = pulumiProjectSchema.safeParse(readYamlFile(file) ?? {});
  if (!parsed.success) throw new InvalidVersionFileError(file, describeIssues(parsed.error));
  return { name: parsed.data.name, backendUrl: parsed.data.backend?.url };
}

/** Compares version names by their numbers: v9 < v10 < v10.1. */
export function compareVersions(a: string, b: string): number {
  const pa = a.slice(1).split(".").map(Number);
  const pb = b.slice(1).split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? -1) - (pb[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}

/** Accepts `v41`, `V41` and `41` for v41; anything else is returned unchanged to be reported as unknown. */
export function normalizeVersionName(ref: string): string {
  const trimmed = ref.trim();
  if (/^\d+(\.\d+)*$/.test(trimmed)) return `v${trimmed}`;
  if (/^V\d+(\.\d+)*$/.test(trimmed)) return `v${trimmed.slice(1)}`;
  return trimmed;
}

// The files stackpin itself rewrites were validated when read; they go through the same limits.
const readDocument = (file: string) => parseYamlDocument(fs.readFileSync(file, "utf8"), file);

/**
 * Reads stack definitions and version files from a `stacks/` directory. Every file is validated when it
 * is read; an invalid one raises {@link InvalidVersionFileError} before anything is applied.
 */
export class VersionStore {
  constructor(
    /** The `stacks/` directory. */
    readonly root: string,
    /** The project name stacks use when their `stack.yaml` names none. */
    readonly defaultProject = "stackpin",
    /**
     * The config each program declares, by the name `stack.yaml` gives it; a stack whose program is here
     * has its config (stack.yaml's and every version's) checked against it on every read.
     */
    readonly programs: Record<string, { config?: ProgramConfigSpec }> = {},
    /** The project directory a program named by path (`./infra/checkout`) is relative to; without it, such programs are not loaded here. */
    readonly projectDir?: string,
  ) {}

  /** The program `stack.yaml` names: one of {@link programs}, or a module by path relative to the project (loaded, so its config is known). */
  programFor(program: string): { config?: ProgramConfigSpec } | undefined {
    if (Object.prototype.hasOwnProperty.call(this.programs, program)) return this.programs[program];
    if (this.projectDir !== undefined && isProgramPath(program)) return loadProgram(this.projectDir, program);
    return undefined;
  }

  /** Names of all stacks (directories holding a `stack.yaml`). */
  listStacks(): string[] {
    if (!fs.existsSync(this.root)) return [];
    return fs
      .readdirSync(this.root, { withFileTypes: true })
      .filter((d) => d.isDirectory() && fs.existsSync(path.join(this.root, d.name, stackFileName)))
      .map((d) => d.name)
      .sort();
  }

  /** The stack's settings and version list; raises {@link UnknownStackError} if it has no directory. */
  stack(name: string): StackDefinition {
    const dir = path.join(this.root, name);
    const file = path.join(dir, stackFileName);
    // `.` and `..` are not stacks, whatever directory they reach.
    if (!stackNamePattern.test(name) || !fs.existsSync(file)) {
      throw new UnknownStackError(name, this.listStacks());
    }
    const parsed = stackFileSchema.safeParse(readYamlFile(file) ?? {});
    if (!parsed.success) throw new InvalidVersionFileError(file, describeIssues(parsed.error));
    const project = parsed.data.project ?? this.defaultProject;
    const programConfig = this.programFor(parsed.data.program)?.config;
    if (programConfig) {
      const check = checkProgramConfig(parsed.data.config, { program: parsed.data.program, project, spec: programConfig, partial: true });
      if (check.problems.length) throw new InvalidVersionFileError(file, check.problems);
    }
    const versions = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(".yaml") && f !== stackFileName)
      .map((f) => f.slice(0, -".yaml".length))
      .filter((v) => versionNamePattern.test(v))
      .sort(compareVersions);
    return { name, dir, settings: parsed.data, project, versions, programConfig };
  }

  /** Reads and validates one version file; `ref` may be `v41` or `41`. */
  version(stack: StackDefinition, ref: string): VersionFile {
    const name = normalizeVersionName(ref);
    if (!stack.versions.includes(name)) throw new UnknownVersionError(stack.name, ref, stack.versions);
    const file = path.join(stack.dir, `${name}.yaml`);
    const parsed = versionFileSchema.safeParse(readYamlFile(file) ?? {});
    if (!parsed.success) throw new InvalidVersionFileError(file, describeIssues(parsed.error));
    if (parsed.data.version !== name) {
      throw new InvalidVersionFileError(file, [`version: says ${parsed.data.version} but the file is ${name}.yaml`]);
    }
    if (stack.programConfig) this.checkAgainstProgram(stack, stack.programConfig, parsed.data, file);
    const outside = migrationsOutside(stack.dir, parsed.data);
    if (outside.length) throw new InvalidVersionFileError(file, outside);
    return parsed.data;
  }

  /**
   * Checks what the program will read for this version, stack.yaml's config completed by the version's
   * (the version's wins, key by key, as the apply merges them), so a mistake is exit 5 before the engine.
   */
  private checkAgainstProgram(stack: StackDefinition, spec: ProgramConfigSpec, version: VersionFile, file: string): void {
    const options = { program: stack.settings.program, project: stack.project, spec };
    if (spec.secretName) {
      // A program that names objects after secrets says which names its target accepts (and what they become).
      const problems: string[] = [];
      const derived = new Map<string, string>();
      for (const name of Object.keys(version.secrets)) {
        const r = spec.secretName.safeParse(name);
        if (!r.success) problems.push(...r.error.issues.map((i) => `secrets.${name}: ${i.message} (program ${stack.settings.program})`));
        else if (derived.has(r.data)) problems.push(`secrets.${name}: the same object name (${r.data}) as secrets.${derived.get(r.data)}`);
        else derived.set(r.data, name);
      }
      if (problems.length) throw new InvalidVersionFileError(file, problems);
    }
    const own = checkProgramConfig(version.config, { ...options, partial: true });
    if (own.problems.length) throw new InvalidVersionFileError(file, own.problems);
    // A key the version sets replaces stack.yaml's, whichever way either file qualified it.
    const unqualified = (key: string) => (key.startsWith(`${stack.project}:`) ? key.slice(stack.project.length + 1) : key);
    const fromStack = Object.entries(stack.settings.config).filter(([key]) => !Object.prototype.hasOwnProperty.call(own.written, unqualified(key)));
    const full = checkProgramConfig({ ...Object.fromEntries(fromStack), ...version.config }, options);
    if (full.problems.length) {
      const fromStackFile = (p: string) => fromStack.some(([key]) => p.startsWith(`config.${key}:`) || p.startsWith(`config.${key}.`));
      throw new InvalidVersionFileError(file, full.problems.map((p) => (fromStackFile(p) ? `${p} (set in stack.yaml)` : p)));
    }
  }

  /** Writes the passphrase salt into `stack.yaml`, keeping the rest of the file (comments included). */
  recordEncryptionSalt(stack: StackDefinition, salt: string): void {
    const file = path.join(stack.dir, stackFileName);
    const doc = readDocument(file);
    doc.set("encryptionsalt", salt);
    fs.writeFileSync(file, doc.toString());
  }

  /** Writes a KMS provider's encrypted data key into `stack.yaml` (comments kept), as the salt above. */
  recordEncryptedKey(stack: StackDefinition, key: string): void {
    const file = path.join(stack.dir, stackFileName);
    const doc = readDocument(file);
    doc.set("encryptedkey", key);
    fs.writeFileSync(file, doc.toString());
  }

  /**
   * Sets one value in `stack.yaml`'s config (for `stackpin secret set --stack-file`), at `key` and, below
   * it, `inside` (a path into structured config); the rest of the file (comments included) is kept.
   */
  setStackConfigValue(stack: StackDefinition, key: string, inside: string[], value: unknown): string {
    const file = path.join(stack.dir, stackFileName);
    const doc = readDocument(file);
    doc.setIn(["config", key, ...inside], doc.createNode(value));
    fs.writeFileSync(file, doc.toString());
    return file;
  }

  /**
   * Writes `next` as a copy of `from`'s file (comments kept) with the secret's generation set, for
   * `stackpin rotate`. Refuses to overwrite an existing file.
   */
  writeRotatedVersion(stack: StackDefinition, from: string, next: string, secret: string, generation: number): string {
    const file = path.join(stack.dir, `${next}.yaml`);
    if (fs.existsSync(file)) throw new Error(`${file} already exists`);
    const doc = readDocument(path.join(stack.dir, `${from}.yaml`));
    doc.set("version", next);
    doc.set("description", `${from} with secret ${secret} rotated to generation ${generation}`);
    doc.setIn(["secrets", secret], doc.createNode({ generation }));
    fs.writeFileSync(file, doc.toString());
    return file;
  }

  /** Writes a new version file (used by `stackpin secret set`), refusing to overwrite one that exists. */
  writeVersion(stack: StackDefinition, version: VersionFile, options: { overwrite?: boolean } = {}): string {
    const file = path.join(stack.dir, `${version.version}.yaml`);
    if (!options.overwrite && fs.existsSync(file)) throw new Error(`${file} already exists`);
    const doc = fs.existsSync(file) ? readDocument(file) : parseYamlDocument("{}", file);
    doc.set("version", version.version);
    if (version.description !== undefined) doc.set("description", version.description);
    doc.set("config", version.config);
    fs.writeFileSync(file, doc.toString());
    return file;
  }
}

/** A stack's name: its directory under `stacks/`; never `.` or `..`. */
const stackNamePattern = /^(?!\.\.?$)[A-Za-z0-9_.-]+$/;

/**
 * The problems of a version whose migration files resolve outside its stack's directory (`../../x`, an
 * absolute path, or a symbolic link out of it): what they name would be read and recorded in the
 * backend's history, so they must be files of the stack's own.
 */
export function migrationsOutside(stackDir: string, version: VersionFile): string[] {
  const real = (p: string) => (fs.existsSync(p) ? fs.realpathSync(p) : path.resolve(p));
  const root = real(stackDir);
  const problems: string[] = [];
  for (const key of ["up", "down"] as const) {
    const file = version.database?.migration?.[key];
    if (!file) continue;
    const resolved = real(path.resolve(stackDir, file));
    const rel = path.relative(root, resolved);
    if (rel === "" || rel === ".." || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) {
      problems.push(`database.migration.${key}: ${file} is outside the stack's directory ${stackDir}; migration files must be inside it`);
    }
  }
  return problems;
}
