import * as fs from "node:fs";
import * as path from "node:path";
import { parseDocument } from "yaml";
import { InvalidVersionFileError, UnknownStackError, UnknownVersionError } from "../errors";
import {
  describeIssues,
  StackFile,
  stackFileSchema,
  VersionFile,
  versionFileSchema,
  pulumiProjectSchema,
  versionNamePattern,
} from "./schema";

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
}

/** Reads `name` and `backend.url` from a project's `Pulumi.yaml`, if it has one. */
export function readPulumiProject(projectDir: string): { name?: string; backendUrl?: string } {
  const file = path.join(projectDir, "Pulumi.yaml");
  if (!fs.existsSync(file)) return {};
  const parsed = pulumiProjectSchema.safeParse(parseYamlFile(file) ?? {});
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

function parseYamlFile(file: string): unknown {
  const text = fs.readFileSync(file, "utf8");
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    throw new InvalidVersionFileError(file, doc.errors.map((e) => e.message.split("\n")[0]));
  }
  return doc.toJS();
}

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
  ) {}

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
    if (!/^[A-Za-z0-9_.-]+$/.test(name) || !fs.existsSync(file)) {
      throw new UnknownStackError(name, this.listStacks());
    }
    const parsed = stackFileSchema.safeParse(parseYamlFile(file) ?? {});
    if (!parsed.success) throw new InvalidVersionFileError(file, describeIssues(parsed.error));
    const versions = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(".yaml") && f !== stackFileName)
      .map((f) => f.slice(0, -".yaml".length))
      .filter((v) => versionNamePattern.test(v))
      .sort(compareVersions);
    return { name, dir, settings: parsed.data, project: parsed.data.project ?? this.defaultProject, versions };
  }

  /** Reads and validates one version file; `ref` may be `v41` or `41`. */
  version(stack: StackDefinition, ref: string): VersionFile {
    const name = normalizeVersionName(ref);
    if (!stack.versions.includes(name)) throw new UnknownVersionError(stack.name, ref, stack.versions);
    const file = path.join(stack.dir, `${name}.yaml`);
    const parsed = versionFileSchema.safeParse(parseYamlFile(file) ?? {});
    if (!parsed.success) throw new InvalidVersionFileError(file, describeIssues(parsed.error));
    if (parsed.data.version !== name) {
      throw new InvalidVersionFileError(file, [`version: says ${parsed.data.version} but the file is ${name}.yaml`]);
    }
    return parsed.data;
  }

  /** Writes the passphrase salt into `stack.yaml`, keeping the rest of the file (comments included). */
  recordEncryptionSalt(stack: StackDefinition, salt: string): void {
    const file = path.join(stack.dir, stackFileName);
    const doc = parseDocument(fs.readFileSync(file, "utf8"));
    doc.set("encryptionsalt", salt);
    fs.writeFileSync(file, doc.toString());
  }

  /**
   * Writes `next` as a copy of `from`'s file (comments kept) with the secret's generation set, for
   * `stackpin rotate`. Refuses to overwrite an existing file.
   */
  writeRotatedVersion(stack: StackDefinition, from: string, next: string, secret: string, generation: number): string {
    const file = path.join(stack.dir, `${next}.yaml`);
    if (fs.existsSync(file)) throw new Error(`${file} already exists`);
    const doc = parseDocument(fs.readFileSync(path.join(stack.dir, `${from}.yaml`), "utf8"));
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
    const doc = parseDocument(fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "{}");
    doc.set("version", version.version);
    if (version.description !== undefined) doc.set("description", version.description);
    doc.set("config", version.config);
    fs.writeFileSync(file, doc.toString());
    return file;
  }
}
