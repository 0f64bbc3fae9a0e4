import { spawn } from "node:child_process";

/**
 * A Node child running `script` that prints a line once it is ready and starts its work when told to go
 * (a line on its stdin): the concurrency tests start every writer first, then release them all at once.
 */
export function gatedChild(name: string, script: string, args: string[], env?: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, ["-e", script, ...args], { stdio: ["pipe", "pipe", "pipe"], ...(env ? { env } : {}) });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`${name} exited ${code} before it was ready: ${stderr}`)));
  });
  const done = new Promise<number>((resolve) => child.once("exit", (code) => resolve(code ?? -1)));
  return { ready, done, go: () => child.stdin.end("go\n"), stderr: () => stderr, pid: child.pid! };
}
