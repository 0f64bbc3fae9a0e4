import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { PulumiCli } from "../../lib/engine/pulumi-cli";
import { TempProject, tempProject } from "./harness";

/**
 * A team's own Pulumi program in TypeScript, as it would sit in their repository (`infra/checkout/`),
 * outside stackpin's `programs/`: it reads its config with `new pulumi.Config()`, declares it with zod,
 * and makes a dynamic resource (no provider plugin needed) plus plain outputs. With `holdFile` set, an
 * update (never a preview) writes `<holdFile>.waiting` and waits for `holdFile`: how a test holds an
 * update open at a moment it can observe.
 */
export const checkoutProgram: Record<string, string> = {
  "index.ts": `import * as fs from "node:fs";
import * as pulumi from "@pulumi/pulumi";
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

async function holdUntil(file: string): Promise<void> {
  fs.writeFileSync(file + ".waiting", String(process.pid));
  while (!fs.existsSync(file)) await new Promise((r) => setTimeout(r, 50));
}

export default async () => {
  const cfg = new pulumi.Config();
  const greeting = cfg.require("greeting");
  const replicas = cfg.requireNumber("replicas");
  const hold = cfg.get("holdFile");
  if (hold && !pulumi.runtime.isDryRun()) await holdUntil(hold);
  const note = new Note("greeting-note", { text: greeting, replicas });
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
}

const provider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: NoteInputs) {
    return { id: "note-" + inputs.text.length + "-" + inputs.replicas, outs: { ...inputs } };
  },
  async diff(_id: string, olds: NoteInputs, news: NoteInputs) {
    return { changes: olds.text !== news.text || olds.replicas !== news.replicas };
  },
  async update(_id: string, _olds: NoteInputs, news: NoteInputs) {
    return { outs: { ...news } };
  },
};

export class Note extends pulumi.dynamic.Resource {
  declare readonly text: pulumi.Output<string>;
  constructor(name: string, args: { text: pulumi.Input<string>; replicas: pulumi.Input<number> }) {
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
