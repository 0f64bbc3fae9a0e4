import * as pulumi from "@pulumi/pulumi";

/** Inputs of a {@link LocalFile}. */
export interface LocalFileArgs {
  /** Absolute path; changing it replaces the file (the old one is removed). */
  path: pulumi.Input<string>;
  /** The file's content; pass a secret Output to keep it out of state and diffs in plain text. */
  content: pulumi.Input<string>;
  /** Octal file mode, e.g. "600". */
  mode?: pulumi.Input<string>;
  /** Milliseconds to wait before writing, standing in for a slow rollout. */
  delayMs?: pulumi.Input<number>;
  /** A manual gate: the write waits until this file exists (at most 10 minutes), holding the update open. */
  holdFile?: pulumi.Input<string>;
}

interface FileProps {
  path: string;
  content: string;
  mode?: string;
  delayMs?: number;
  holdFile?: string;
}

/** Waits out the rollout's delay, then its manual gate. Runs in the provider process: reach modules through require. */
async function rolloutPause(props: FileProps): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, props.delayMs ?? 0));
  if (!props.holdFile) return;
  const fs = require("node:fs") as typeof import("node:fs");
  const deadline = Date.now() + 600_000;
  while (!fs.existsSync(props.holdFile)) {
    if (Date.now() > deadline) throw new Error(`the rollout gate ${props.holdFile} was not opened within 10 minutes`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// Serialized into the dynamic provider process, so it must reach modules through require, not imports.
const fileProvider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: FileProps) {
    await rolloutPause(inputs);
    const fs = require("node:fs") as typeof import("node:fs");
    const p = require("node:path") as typeof import("node:path");
    fs.mkdirSync(p.dirname(inputs.path), { recursive: true });
    fs.writeFileSync(inputs.path, inputs.content, { mode: parseInt(inputs.mode ?? "644", 8) });
    return { id: inputs.path, outs: inputs };
  },
  async diff(_id: string, olds: FileProps, news: FileProps) {
    const replaces = olds.path !== news.path ? ["path"] : [];
    const changed = ["path", "content", "mode", "delayMs", "holdFile"].filter(
      (k) => (olds as unknown as Record<string, unknown>)[k] !== (news as unknown as Record<string, unknown>)[k],
    );
    return { changes: changed.length > 0, replaces, deleteBeforeReplace: false };
  },
  async update(_id: string, _olds: FileProps, news: FileProps) {
    await rolloutPause(news);
    const fs = require("node:fs") as typeof import("node:fs");
    // Written beside and renamed over, so a reader (the traffic switch) never sees half a file.
    const tmp = `${news.path}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, news.content, { mode: parseInt(news.mode ?? "644", 8) });
    fs.renameSync(tmp, news.path);
    return { outs: news };
  },
  async delete(_id: string, props: FileProps) {
    const fs = require("node:fs") as typeof import("node:fs");
    const p = require("node:path") as typeof import("node:path");
    fs.rmSync(props.path, { force: true });
    try {
      fs.rmdirSync(p.dirname(props.path));
    } catch {
      // the directory still holds other files
    }
  },
  async read(id: string, props: FileProps) {
    const fs = require("node:fs") as typeof import("node:fs");
    return { id, props: fs.existsSync(id) ? { ...props, content: fs.readFileSync(id, "utf8") } : props };
  },
};

/** A file on the local machine, owned by the stack: created, rewritten, moved (replaced) and removed by it. */
export class LocalFile extends pulumi.dynamic.Resource {
  declare readonly path: pulumi.Output<string>;
  declare readonly content: pulumi.Output<string>;
  constructor(name: string, args: LocalFileArgs, opts?: pulumi.CustomResourceOptions) {
    super(fileProvider, name, { ...args, mode: args.mode ?? "644" }, opts, "stackpin-local", "LocalFile");
  }
}
