import * as pulumi from "@pulumi/pulumi";

/** Inputs of a {@link ManagedProcess}. */
export interface ManagedProcessArgs {
  /** The Node script to run (an artifact); changing it replaces the process. */
  script: pulumi.Input<string>;
  /** Environment for the process, kept in state: encrypted there when a value in it is a secret (the database URL). */
  env: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Where the process writes its log, ready file and pid. */
  runDir: pulumi.Input<string>;
  /** The port to listen on; 0 lets the process pick one, reported in the `port` output. */
  port?: pulumi.Input<number>;
  /** How long a stopping process may take to finish in-flight requests before it is killed. */
  drainMs?: pulumi.Input<number>;
}

interface ProcessProps {
  name: string;
  script: string;
  env: Record<string, string>;
  runDir: string;
  port: number;
  drainMs: number;
}

interface ProcessOuts extends ProcessProps {
  pid: number;
  /** The port actually listened on. */
  listenPort: number;
}

// Serialized into the dynamic provider process, so it must reach modules through require, not imports.
const processProvider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: ProcessProps) {
    const cp = require("node:child_process") as typeof import("node:child_process");
    const fs = require("node:fs") as typeof import("node:fs");
    const p = require("node:path") as typeof import("node:path");
    fs.mkdirSync(inputs.runDir, { recursive: true });
    const stamp = `${inputs.name}-${Date.now()}`;
    const readyFile = p.join(inputs.runDir, `${stamp}.ready.json`);
    const log = fs.openSync(p.join(inputs.runDir, `${inputs.name}.log`), "a");
    const child = cp.spawn(process.execPath, [inputs.script], {
      detached: true,
      // Not the engine's scratch workspace (the plugin's cwd), which is removed when the operation ends.
      cwd: inputs.runDir,
      stdio: ["ignore", log, log],
      env: { PATH: process.env.PATH ?? "", ...inputs.env, PORT: String(inputs.port), STACKPIN_READY_FILE: readyFile },
    });
    fs.closeSync(log);
    child.unref();
    const deadline = Date.now() + 15_000;
    while (!fs.existsSync(readyFile)) {
      if (child.exitCode !== null || Date.now() > deadline) {
        try {
          process.kill(child.pid as number, "SIGKILL");
        } catch {
          // already gone
        }
        const tail = fs.readFileSync(p.join(inputs.runDir, `${inputs.name}.log`), "utf8").split("\n").slice(-5).join("\n");
        throw new Error(`${inputs.name} (${inputs.script}) did not start listening:\n${tail}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    const ready = JSON.parse(fs.readFileSync(readyFile, "utf8")) as { pid: number; port: number };
    fs.rmSync(readyFile, { force: true });
    const outs: ProcessOuts = { ...inputs, pid: ready.pid, listenPort: ready.port };
    return { id: `${inputs.name}:${ready.pid}`, outs };
  },
  async diff(_id: string, olds: ProcessOuts, news: ProcessProps) {
    const replaces = ["script", "env", "runDir", "port"].filter(
      (k) => JSON.stringify((olds as unknown as Record<string, unknown>)[k]) !== JSON.stringify((news as unknown as Record<string, unknown>)[k]),
    );
    return { changes: replaces.length > 0 || olds.drainMs !== news.drainMs, replaces };
  },
  async update(_id: string, olds: ProcessOuts, news: ProcessProps) {
    return { outs: { ...olds, drainMs: news.drainMs } };
  },
  async delete(_id: string, props: ProcessOuts) {
    const fs = require("node:fs") as typeof import("node:fs");
    const alive = () => {
      try {
        // The pid must still be our process, not a reused number.
        return fs.readFileSync(`/proc/${props.pid}/cmdline`, "utf8").includes(props.script);
      } catch {
        return false;
      }
    };
    if (alive()) {
      process.kill(props.pid, "SIGTERM");
      const deadline = Date.now() + props.drainMs + 5_000;
      while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      if (alive()) process.kill(props.pid, "SIGKILL");
    }
    // The stack owns the log too; nothing it started may outlive it.
    fs.rmSync(require("node:path").join(props.runDir, `${props.name}.log`), { force: true });
  },
  async read(id: string, props: ProcessOuts) {
    const fs = require("node:fs") as typeof import("node:fs");
    let running = false;
    try {
      running = fs.readFileSync(`/proc/${props.pid}/cmdline`, "utf8").includes(props.script);
    } catch {
      running = false;
    }
    return { id, props: running ? props : { ...props, pid: 0 } };
  },
};

/** A long-running local process owned by the stack: started on create, stopped (drained) on delete. */
export class ManagedProcess extends pulumi.dynamic.Resource {
  declare readonly pid: pulumi.Output<number>;
  declare readonly listenPort: pulumi.Output<number>;
  constructor(name: string, args: ManagedProcessArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      processProvider,
      name,
      { name, port: 0, drainMs: 2000, ...args, pid: undefined, listenPort: undefined },
      opts,
      "stackpin-local",
      "ManagedProcess",
    );
  }
}

/** A process a {@link ManagedProcess} started that the stack's state does not own. */
export interface UnownedProcess {
  pid: number;
  command: string;
}

/**
 * Stops the processes a {@link ManagedProcess} started under `runDir` (they carry `STACKPIN_READY_FILE`
 * there in their environment from the moment they are spawned) whose pid is not in `ownedPids`: a create
 * the engine started and never recorded, because the update was killed. Returns what it stopped.
 */
export async function stopUnownedProcesses(runDir: string, ownedPids: ReadonlySet<number>): Promise<UnownedProcess[]> {
  const fs = await import("node:fs");
  const marker = `STACKPIN_READY_FILE=${runDir}/`;
  const found: UnownedProcess[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || ownedPids.has(Number(entry))) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]?.[0] === "Z") continue;
      if (!fs.readFileSync(`/proc/${entry}/environ`, "utf8").split("\0").some((v) => v.startsWith(marker))) continue;
      found.push({ pid: Number(entry), command: fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ") });
    } catch {
      // gone, or not ours to read
    }
  }
  // Nothing routes to an unowned process (the route file only ever names a recorded one): no drain.
  const { stopProcesses } = await import("../../lib/engine/processes");
  await stopProcesses(found.map((p) => p.pid), 5_000);
  return found;
}
