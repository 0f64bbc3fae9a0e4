import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { PulumiCli } from "../../lib/engine/pulumi-cli";
import { TempProject, tempProject } from "./harness";

/**
 * A team's own Pulumi program in TypeScript, as it would sit in their repository (`infra/checkout/`),
 * outside stackpin's `programs/`: it reads its config with `new pulumi.Config()`, declares it with zod,
 * and makes a dynamic resource (no provider plugin needed) plus plain outputs. With `holdFile` set, the
 * resource's create or update writes `<holdFile>.waiting` and waits for `holdFile`: how a test holds an
 * update open (lock taken, operation pending, stackpin's in-flight mark set) at a moment it can observe.
 */
export const checkoutProgram: Record<string, string> = {
  "index.ts": `import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { Note } from "./note";

export const config = z
  .object({
    greeting: z.string().min(1),
    replicas: z.number().int().min(1).max(10),
    apiKey: z.string().optional(),
    holdFile: z.string().optional(),
  })
  .strict();

export default async () => {
  const cfg = new pulumi.Config();
  const greeting = cfg.require("greeting");
  const replicas = cfg.requireNumber("replicas");
  const holdFile = cfg.get("holdFile");
  const note = new Note("greeting-note", { text: greeting, replicas, ...(holdFile ? { holdFile } : {}) });
  return {
    greeting,
    replicas,
    noteText: note.text,
    release: new pulumi.Config("stackpin").get("version") ?? "none",
    apiKeyLength: cfg.getSecret("apiKey")?.apply((k) => k.length),
  };
};
`,
  "note.ts": `import * as pulumi from "@pulumi/pulumi";

interface NoteInputs {
  text: string;
  replicas: number;
  holdFile?: string;
}

// Runs in the engine's dynamic provider process, while the engine holds the stack's lock and has
// recorded this operation as pending: a test releases it by creating the file.
async function holdUntil(file: string | undefined): Promise<void> {
  if (!file) return;
  const fs = require("node:fs");
  fs.writeFileSync(file + ".waiting", String(process.pid));
  while (!fs.existsSync(file)) await new Promise((r) => setTimeout(r, 50));
}

const provider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: NoteInputs) {
    await holdUntil(inputs.holdFile);
    return { id: "note-" + inputs.text.length + "-" + inputs.replicas, outs: { ...inputs } };
  },
  async diff(_id: string, olds: NoteInputs, news: NoteInputs) {
    return { changes: olds.text !== news.text || olds.replicas !== news.replicas };
  },
  async update(_id: string, _olds: NoteInputs, news: NoteInputs) {
    await holdUntil(news.holdFile);
    return { outs: { ...news } };
  },
};

export class Note extends pulumi.dynamic.Resource {
  declare readonly text: pulumi.Output<string>;
  constructor(name: string, args: { text: pulumi.Input<string>; replicas: pulumi.Input<number>; holdFile?: string }) {
    super(provider, name, { ...args }, undefined, "checkout", "Note");
  }
}
`,
};

/** Writes the program's files under `<dir>/<at>`. */
export function writeProgram(dir: string, at = "infra/checkout", files = checkoutProgram): string {
  const root = path.join(dir, at);
  fs.mkdirSync(root, { recursive: true });
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(root, name), text);
  return root;
}

/**
 * A temp project whose stack `checkout` runs the team's program by path, with versions v1 and v2
 * (written by the test, nothing copied from this repository's stacks/). `stackYaml` adds lines to stack.yaml.
 */
export function ownProgramProject(pulumi: PulumiCli, options: { stackYaml?: string } = {}): TempProject {
  const source = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-own-src-"));
  try {
    fs.writeFileSync(path.join(source, "stack.yaml"), `program: ./infra/checkout\nproject: checkout\n${options.stackYaml ?? ""}`);
    fs.writeFileSync(path.join(source, "v1.yaml"), "version: v1\ndescription: first release\nconfig:\n  greeting: hello from v1\n  replicas: 1\n");
    fs.writeFileSync(path.join(source, "v2.yaml"), "version: v2\ndescription: two replicas\nconfig:\n  greeting: hello from v2\n  replicas: 2\n");
    const project = tempProject(pulumi, { stack: "checkout", from: source });
    writeProgram(project.dir);
    return project;
  } finally {
    fs.rmSync(source, { recursive: true, force: true });
  }
}

/** Resolves once `file` exists (a held update has reached its resource), polling the file system. */
export async function fileAppears(file: string, what: Promise<unknown> = new Promise(() => undefined)): Promise<void> {
  let ended = false;
  void what.then(() => (ended = true), () => (ended = true));
  while (!fs.existsSync(file)) {
    if (ended) throw new Error(`the operation ended before ${file} appeared`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
