import * as fs from "node:fs";
import * as path from "node:path";
import type { UpdateSummary } from "@pulumi/pulumi/automation";
import { readBackendHistory } from "./backend-history";
import { readAllPages } from "./history-pages";
import { repairInterruptedWrites } from "./interruption";
import { fileRecordsMarks, OpenEngineStackOptions, StackOutput, translateEngineError } from "./stack";
import { runPulumi } from "./pulumi-process";
import { StackNotDeployedError } from "../errors";
import { tagNameLimit, tagValueLimit } from "../records/ledger";

/** What a read-only look at a stack needs: where it is and how its secrets open, and the `pulumi` binary. */
export type StackReaderOptions = Omit<OpenEngineStackOptions, "program" | "pulumi"> & {
  /** The `pulumi` binary. */
  binary: string;
};

/**
 * A stack read through the Pulumi CLI directly, for commands that only read (`status`, `history`): no
 * Automation API (loading it is about half a second of such a command), no `stack select`, no workspace
 * beyond the two files the CLI needs to find the project and the stack's secrets settings. Each method is
 * one CLI call (the history none on `file://` and `s3://`, where the backend's records are read);
 * STACKPIN_DEBUG=timing counts them like the Automation API's.
 */
export class StackReader {
  /** What opening repaired in the backend's files after a write that was killed (one line each). */
  readonly repairedWrites: string[];

  /** The CLI's scratch directory, made by the first CLI call (`status` and `history` often make none). */
  private workDir?: string;

  private constructor(private readonly options: StackReaderOptions) {
    this.repairedWrites = options.backendUrl.startsWith("file://") ? repairInterruptedWrites(options.backendUrl, options.projectName, options.stackName, fileRecordsMarks(options)) : [];
  }

  static open(options: StackReaderOptions): StackReader {
    return new StackReader(options);
  }

  private scratch(): string {
    if (this.workDir) return this.workDir;
    const options = this.options;
    fs.mkdirSync(options.workRoot, { recursive: true });
    const workDir = fs.mkdtempSync(path.join(options.workRoot, `read-${options.stackName}-`));
    // JSON is YAML: the project (and its backend) and the stack's secrets settings, as a workspace writes them.
    fs.writeFileSync(path.join(workDir, "Pulumi.yaml"), JSON.stringify({ name: options.projectName, runtime: "nodejs", backend: { url: options.backendUrl } }));
    const { secretsProvider, encryptionSalt, encryptedKey } = options;
    const settings = secretsProvider === "passphrase"
      ? encryptionSalt ? { encryptionsalt: encryptionSalt } : {}
      : { secretsprovider: secretsProvider, ...(encryptedKey ? { encryptedkey: encryptedKey } : {}) };
    fs.writeFileSync(path.join(workDir, `Pulumi.${options.stackName}.yaml`), JSON.stringify(settings));
    return (this.workDir = workDir);
  }

  /** Which stack this is: the backend, project and stack name. */
  get target(): { backendUrl: string; projectName: string; stackName: string } {
    const { backendUrl, projectName, stackName } = this.options;
    return { backendUrl, projectName, stackName };
  }

  /**
   * The backend's whole update history (every page), newest first, a secret config value only marked
   * secret: read from the backend's files on `file://` and `s3://`, else one CLI call.
   */
  async history(): Promise<UpdateSummary[]> {
    // Read from the backend's own records where it can be (file://, s3://): no CLI call.
    const direct = await readBackendHistory(this.options.backendUrl, this.options.projectName, this.options.stackName);
    if (direct) return direct;
    return readAllPages(async (size, page) => {
      const out = await this.run(["stack", "history", "--json", "--page-size", String(size), "--page", String(page)]);
      return JSON.parse(out, (key, value) => (key === "startTime" || key === "endTime" ? new Date(value as string) : value)) as UpdateSummary[];
    });
  }

  /** The stack's outputs, secrets (at any depth) as `"[secret]"`: the CLI is never asked to show them. */
  async outputs(): Promise<Record<string, StackOutput>> {
    const masked = JSON.parse(await this.run(["stack", "output", "--json"])) as Record<string, unknown>;
    return Object.fromEntries(Object.entries(masked).map(([k, v]) => [k, { value: v, secret: v === "[secret]" }]));
  }

  /** Stack tags, as stored in the backend. */
  async tags(): Promise<Record<string, string>> {
    return JSON.parse(await this.run(["stack", "tag", "ls", "--json"])) as Record<string, string>;
  }

  /** Sets stack tags, one CLI call each (a backend whose records are stack tags; a reader rarely writes). */
  async setTags(tags: Record<string, string>): Promise<void> {
    for (const [k, v] of Object.entries(tags)) {
      if (k.length > tagNameLimit || v.length > tagValueLimit) throw new Error(`stack tag ${k} exceeds Pulumi Cloud's limits of ${tagNameLimit} and ${tagValueLimit}`);
      await this.run(["stack", "tag", "set", k, v]);
    }
  }

  /** Removes a stack tag. */
  async removeTag(key: string): Promise<void> {
    await this.run(["stack", "tag", "rm", key]);
  }

  /** Removes the scratch directory, if a CLI call made one. */
  close(): void {
    if (this.workDir) fs.rmSync(this.workDir, { recursive: true, force: true });
    this.workDir = undefined;
  }

  private run(args: string[]): Promise<string> {
    const o = this.options;
    // A file:// backend nobody used yet holds no stack (and reading must not make one).
    if (o.backendUrl.startsWith("file://") && !fs.existsSync(path.join(o.backendUrl.slice("file://".length), ".pulumi"))) {
      return Promise.reject(new StackNotDeployedError(o.stackName, o.backendUrl));
    }
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...(o.pulumiHome ? { PULUMI_HOME: o.pulumiHome } : {}),
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_SKIP_CONFIRMATIONS: "true",
      ...o.env,
      ...(o.passphrase?.value !== undefined ? { PULUMI_CONFIG_PASSPHRASE: o.passphrase.value } : {}),
      ...(o.passphrase?.file !== undefined ? { PULUMI_CONFIG_PASSPHRASE_FILE: o.passphrase.file } : {}),
    };
    const full = [...args, "--stack", o.stackName, "--non-interactive"];
    return runPulumi({ binary: o.binary, args: full, cwd: this.scratch(), env }).catch((err) => {
      throw translateEngineError(o.stackName, o.backendUrl, err, o.secretsProvider);
    });
  }
}
