import type { PulumiCommand } from "@pulumi/pulumi/automation";

/**
 * `STACKPIN_DEBUG=timing`: every Pulumi CLI call the Automation API makes, with its subcommand and
 * duration, printed to stderr as it ends, and a total when the process exits. This is how the
 * benchmark (`npm run bench:rollback`) finds where an operation's time goes; without the variable
 * nothing is wrapped.
 */
export function timingEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env.STACKPIN_DEBUG ?? "").split(",").map((s) => s.trim()).includes("timing");
}

interface Call {
  subcommand: string;
  ms: number;
}

const calls: Call[] = [];
const reads: Call[] = [];
let reporting = false;

/**
 * The subcommand of a CLI call without its values (`stack tag set`, `up`, `config set`): the leading
 * lower-case words, at most three (two for `config`, whose third word is a key and whose values could be
 * secrets), so no value an argument carries is ever printed.
 */
export function subcommandOf(args: readonly string[]): string {
  const words: string[] = [];
  for (const a of args) {
    if (!/^[a-z][a-z-]*$/.test(a) || words.length === (words[0] === "config" ? 2 : 3)) break;
    words.push(a);
  }
  return words.join(" ") || "?";
}

function report(): void {
  const total = calls.reduce((s, c) => s + c.ms, 0);
  const bySub = new Map<string, { n: number; ms: number }>();
  for (const c of calls) {
    const s = bySub.get(c.subcommand) ?? { n: 0, ms: 0 };
    s.n += 1;
    s.ms += c.ms;
    bySub.set(c.subcommand, s);
  }
  const parts = [...bySub].map(([sub, s]) => `${sub} ${s.n}x ${Math.round(s.ms)} ms`).join("; ");
  const direct = reads.length ? `; ${reads.length} backend reads, ${Math.round(reads.reduce((s, r) => s + r.ms, 0))} ms` : "";
  const rss = Math.round(process.resourceUsage().maxRSS / 1024);
  process.stderr.write(
    `[timing] total: ${calls.length} pulumi calls, ${Math.round(total)} ms in them (${parts})${direct}; process ${Math.round(process.uptime() * 1000)} ms, peak RSS ${rss} MB\n`,
  );
}

/**
 * Wraps the command's internal `run` (every Automation API call goes through it, see
 * `@pulumi/pulumi/automation/cmd.js`) to time each call. The calls still run exactly as before.
 */
export function timeCommand(command: PulumiCommand): PulumiCommand {
  const target = command as unknown as { run?: (...args: unknown[]) => Promise<unknown>; __stackpinTimed?: boolean };
  if (typeof target.run !== "function" || target.__stackpinTimed) return command;
  const run = target.run.bind(command);
  target.run = async (...args: unknown[]) => {
    const subcommand = subcommandOf(Array.isArray(args[0]) ? (args[0] as string[]) : []);
    const started = performance.now();
    try {
      return await run(...args);
    } finally {
      recordCall(subcommand, performance.now() - started);
    }
  };
  target.__stackpinTimed = true;
  return command;
}

/** Records (and prints) one CLI call; the first call also arranges the total at exit. */
export function recordCall(subcommand: string, ms: number): void {
  calls.push({ subcommand, ms });
  process.stderr.write(`[timing] pulumi ${subcommand}: ${Math.round(ms)} ms\n`);
  reportAtExit();
}

/** Records (and prints) one read of the backend's own files done instead of a CLI call (`history: 25 updates`). */
export function recordBackendRead(what: string, ms: number): void {
  reads.push({ subcommand: what, ms });
  process.stderr.write(`[timing] backend ${what}: ${Math.round(ms)} ms\n`);
  reportAtExit();
}

function reportAtExit(): void {
  if (!reporting) {
    reporting = true;
    process.on("exit", report);
  }
}
