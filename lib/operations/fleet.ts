/**
 * Fleet rollback: many stacks back to a version, the way an incident needs it. Every stack is previewed
 * first (one table), then rolled back in waves — a canary first, then the rest with a concurrency limit —
 * and the remaining waves halt when a stack fails. Each stack's rollback is an ordinary single-stack
 * rollback, so its history, incident record and audit entry are written exactly as one.
 *
 * Each preview and rollback runs in a child process of stackpin's own CLI: Pulumi's Node.js runtime keeps
 * global state, and the Automation API runs one inline program per process at a time
 * (pulumi/pulumi#5449), so stacks can only go back in parallel as separate processes. A child applies
 * only the plan the fleet previewed: it gets the previewed plan's digest (`--expect-plan`) and refuses,
 * changing nothing, when the stack moved in between.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { minimatch } from "minimatch";
import pLimit from "p-limit";
import { z } from "zod";
import { packageRoot } from "../engine/pulumi-cli";
import { FleetIncompleteError, InvalidVersionFileError, NotConfirmedError, UnknownStackError } from "../errors";
import { describeIssues } from "../versions/schema";
import { readYamlFile } from "../versions/yaml-input";
import { VersionStore } from "../versions/store";
import type { Plan } from "./plan";

/** A fleet file (`--fleet fleet.yaml`): waves of stacks (names or globs over `stacks/`), run in order. */
export const fleetFileSchema = z
  .object({
    /** Stacks rolled back at once within a wave, unless the wave says otherwise. */
    concurrency: z.number().int().min(1).max(64).optional(),
    /** Go on with the next waves when a stack fails. */
    continueOnError: z.boolean().optional(),
    waves: z
      .array(
        z
          .object({
            name: z.string().min(1).optional(),
            stacks: z.array(z.string().min(1)).min(1),
            concurrency: z.number().int().min(1).max(64).optional(),
          })
          .strict(),
      )
      .min(1),
  })
  .strict();
export type FleetFile = z.infer<typeof fleetFileSchema>;

/** One wave, resolved: stack names in order. */
export interface FleetWave {
  name: string;
  stacks: string[];
  concurrency: number;
}

/** Which stacks, in which waves: from a glob (`--stacks`) or a fleet file (`--fleet`). */
export type FleetSelection = { stacks: string; canary?: string } | { fleetFile: string };

/** Options for {@link fleetRollback}. */
export interface FleetRollbackOptions {
  /** The project directory holding `stacks/` (default: the current directory). */
  projectDir?: string;
  selection: FleetSelection;
  /** The version each stack goes back to: `v41`, or `previous` (resolved per stack). */
  to: string;
  reason?: string;
  /** Stacks rolled back at once after the canary (default 4; a fleet file's own wins). */
  concurrency?: number;
  /** Go on with the next waves when a stack fails (default: halt). */
  continueOnError?: boolean;
  /** Passed to each stack's rollback. */
  approveDataLoss?: boolean;
  /** Unsigned acknowledgements passed to each stack's rollback (`--approve NAME`). */
  approvers?: string[];
  /** The state backend URL for every stack (default: each `stack.yaml`'s). */
  backendUrl?: string;
  /** The environment the children run with (passphrase, Pulumi CLI); default the process's. */
  env?: NodeJS.ProcessEnv;
  /** Called with every stack's preview before anything changes; return false to stop. Absent: go on (`--yes`). */
  confirm?: (previews: FleetPreview[]) => Promise<boolean>;
  /** A line of progress for people: fleet events and each child's own progress, prefixed with its stack. */
  onProgress?: (line: string) => void;
}

/** One stack's preview in the fleet table. */
export interface FleetPreview {
  stack: string;
  wave: string;
  from?: string;
  to?: string;
  /** Resource changes by operation (`same` left out). */
  changes?: Record<string, number>;
  warnings: string[];
  planDigest?: string;
  /** Why it could not be previewed (the whole fleet is then refused). */
  error?: { exitCode: number; message: string };
}

/** One stack's outcome. */
export interface FleetStackResult {
  stack: string;
  wave: string;
  from?: string;
  to?: string;
  /** `halted`: not started because an earlier stack failed. */
  status: "succeeded" | "failed" | "halted";
  exitCode?: number;
  revision?: number;
  verified?: boolean;
  /** The first line of the failure. */
  error?: string;
  incident?: string;
  durationMs?: number;
}

/** The whole fleet's outcome, as `--json` prints it. */
export interface FleetResult {
  to: string;
  waves: FleetWave[];
  previews: FleetPreview[];
  results: FleetStackResult[];
  /** The stack whose failure halted the remaining waves. */
  haltedBy?: string;
  succeeded: number;
  failed: number;
  halted: number;
  durationMs: number;
}

/** Stack names matching `pattern` (a name or a glob) among `known`, sorted. */
function matching(pattern: string, known: string[]): string[] {
  return known.filter((s) => s === pattern || minimatch(s, pattern, { dot: false }));
}

/** Resolves the selection into waves; unknown stacks, empty globs and a stack in two waves are refused. */
export function resolveWaves(store: VersionStore, selection: FleetSelection, concurrency = 4): { waves: FleetWave[]; continueOnError?: boolean } {
  const known = store.listStacks();
  if ("stacks" in selection) {
    const stacks = matching(selection.stacks, known);
    if (!stacks.length) throw new UnknownStackError(selection.stacks, known);
    const canary = selection.canary ?? stacks[0];
    if (!stacks.includes(canary)) throw new UnknownStackError(canary, stacks);
    const rest = stacks.filter((s) => s !== canary);
    return {
      waves: [
        { name: "canary", stacks: [canary], concurrency: 1 },
        ...(rest.length ? [{ name: "rest", stacks: rest, concurrency }] : []),
      ],
    };
  }
  const file = path.resolve(selection.fleetFile);
  if (!fs.existsSync(file)) throw new InvalidVersionFileError(file, ["the fleet file does not exist"]);
  const parsed = fleetFileSchema.safeParse(readYamlFile(file) ?? {});
  if (!parsed.success) throw new InvalidVersionFileError(file, describeIssues(parsed.error));
  const seen = new Map<string, string>();
  const waves = parsed.data.waves.map((w, i): FleetWave => {
    const name = w.name ?? `wave ${i + 1}`;
    const stacks: string[] = [];
    for (const pattern of w.stacks) {
      const found = matching(pattern, known);
      if (!found.length) throw new UnknownStackError(pattern, known);
      for (const s of found) {
        if (seen.has(s)) throw new InvalidVersionFileError(file, [`waves: stack ${s} is in wave "${seen.get(s)}" and wave "${name}"`]);
        seen.set(s, name);
        stacks.push(s);
      }
    }
    return { name, stacks, concurrency: w.concurrency ?? parsed.data.concurrency ?? concurrency };
  });
  return { waves, continueOnError: parsed.data.continueOnError };
}

interface ChildRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `stackpin <args>` as a child, forwarding each stderr line (its progress) prefixed with the stack. */
function runChild(args: string[], cwd: string, env: NodeJS.ProcessEnv, stack: string, onLine?: (line: string) => void): Promise<ChildRun> {
  const cli = path.join(packageRoot(), "dist", "lib", "cli", "main.js");
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let partial = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      const lines = (partial + d).split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) if (l.trim()) onLine?.(`[${stack}] ${l}`);
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (partial.trim()) onLine?.(`[${stack}] ${partial}`);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

/** The `--json` document a child printed; a failing child's is `{ error: { message } }`. */
function parsed<T>(run: ChildRun): T | undefined {
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    return undefined;
  }
}

function failureOf(run: ChildRun): string {
  const doc = parsed<{ error?: { message?: string } }>(run);
  const message = doc?.error?.message ?? run.stderr.split("\n").filter((l) => l.startsWith("error:") || l.startsWith("internal error:")).pop() ?? `exit ${run.code}`;
  return message.replace(/^(internal )?error: /, "").split("\n")[0];
}

/**
 * Rolls a fleet of stacks back to `to`: previews all of them, asks once, then runs the waves. Resolves
 * with every stack's result when all succeeded; raises {@link FleetIncompleteError} (its `details` is the
 * same {@link FleetResult}) when any stack failed, was halted, or could not be previewed (then nothing
 * was changed anywhere).
 */
export async function fleetRollback(options: FleetRollbackOptions): Promise<FleetResult> {
  const started = performance.now();
  const projectDir = path.resolve(options.projectDir ?? ".");
  const store = new VersionStore(path.join(projectDir, "stacks"));
  const resolved = resolveWaves(store, options.selection, options.concurrency ?? 4);
  const waves = resolved.waves;
  const continueOnError = options.continueOnError ?? resolved.continueOnError ?? false;
  const env = Object.fromEntries(Object.entries(options.env ?? process.env).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv;
  const say = (line: string) => options.onProgress?.(line);
  const common = ["--project-dir", projectDir, ...(options.backendUrl ? ["--backend", options.backendUrl] : [])];
  const all = waves.flatMap((w) => w.stacks.map((stack) => ({ stack, wave: w.name })));
  say(`fleet: ${all.length} stack(s) in ${waves.length} wave(s): ${waves.map((w) => `${w.name} [${w.stacks.join(", ")}]${w.stacks.length > 1 ? ` at ${w.concurrency} at once` : ""}`).join(", then ")}`);

  // 1. Preview every stack; one that cannot be previewed refuses the whole fleet before anything changes.
  say(`fleet: previewing ${all.length} stack(s) (changes nothing)`);
  const previewLimit = pLimit(Math.max(...waves.map((w) => w.concurrency)));
  const previews = await Promise.all(
    all.map(({ stack, wave }) =>
      previewLimit(async (): Promise<FleetPreview> => {
        const run = await runChild(["preview", "--stack", stack, "--to", options.to, "--json", ...common], projectDir, env, stack);
        if (run.code !== 0) return { stack, wave, warnings: [], error: { exitCode: run.code, message: failureOf(run) } };
        const plan = parsed<Plan>(run)!;
        const changes = Object.fromEntries(Object.entries(plan.changeSummary ?? {}).filter(([k, v]) => k !== "same" && (v ?? 0) > 0)) as Record<string, number>;
        return { stack, wave, from: plan.from, to: plan.to, changes, warnings: plan.warnings, planDigest: plan.planDigest };
      }),
    ),
  );
  const result = (results: FleetStackResult[], haltedBy?: string): FleetResult => ({
    to: options.to,
    waves,
    previews,
    results,
    haltedBy,
    succeeded: results.filter((r) => r.status === "succeeded").length,
    failed: results.filter((r) => r.status === "failed").length,
    halted: results.filter((r) => r.status === "halted").length,
    durationMs: Math.round(performance.now() - started),
  });
  const unpreviewable = previews.filter((p) => p.error);
  if (unpreviewable.length) {
    const results = previews.map((p): FleetStackResult => ({ stack: p.stack, wave: p.wave, status: p.error ? "failed" : "halted", exitCode: p.error?.exitCode, error: p.error?.message }));
    throw new FleetIncompleteError(
      `${unpreviewable.length} of ${all.length} stack(s) could not be previewed (${unpreviewable.map((p) => `${p.stack}: ${p.error!.message}`).join("; ")}); no stack was rolled back. Nothing was changed.`,
      result(results),
    );
  }
  if (options.confirm && !(await options.confirm(previews))) {
    throw new NotConfirmedError(all.map((a) => a.stack).join(", "), options.to);
  }

  // 2. The waves, in order; each stack applies exactly its previewed plan.
  const previewOf = new Map(previews.map((p) => [p.stack, p]));
  const results = new Map<string, FleetStackResult>();
  let haltedBy: string | undefined;
  for (const wave of waves) {
    if (haltedBy && !continueOnError) break;
    say(`fleet: wave ${wave.name}: ${wave.stacks.join(", ")}`);
    const limit = pLimit(wave.concurrency);
    await Promise.all(
      wave.stacks.map((stack) =>
        limit(async () => {
          if (haltedBy && !continueOnError) return;
          const preview = previewOf.get(stack)!;
          const t0 = performance.now();
          const args = [
            "rollback", "--stack", stack, "--to", preview.to!, "--yes", "--json", "--expect-plan", preview.planDigest!, ...common,
            ...(options.reason ? ["--reason", options.reason] : []),
            ...(options.approveDataLoss ? ["--approve-data-loss"] : []),
            ...(options.approvers ?? []).flatMap((a) => ["--approve", a]),
          ];
          say(`[${stack}] rolling back ${preview.from ?? "(nothing)"} -> ${preview.to}`);
          const run = await runChild(args, projectDir, env, stack, options.onProgress);
          const durationMs = Math.round(performance.now() - t0);
          if (run.code === 0) {
            const r = parsed<{ revision: number; verification?: { passed: boolean }; incident?: { markdown: string } }>(run);
            results.set(stack, { stack, wave: wave.name, from: preview.from, to: preview.to, status: "succeeded", exitCode: 0, revision: r?.revision, verified: r?.verification?.passed, incident: r?.incident?.markdown, durationMs });
            say(`[${stack}] rolled back to ${preview.to}${r?.revision ? `, revision ${r.revision}` : ""}${r?.verification ? (r.verification.passed ? ", verified" : "") : ""} (${(durationMs / 1000).toFixed(1)} s)`);
          } else {
            const doc = parsed<{ error?: { details?: { rollback?: { revision?: number }; incident?: { markdown?: string } } } }>(run);
            const message = failureOf(run);
            results.set(stack, { stack, wave: wave.name, from: preview.from, to: preview.to, status: "failed", exitCode: run.code, revision: doc?.error?.details?.rollback?.revision, verified: run.code === 11 ? false : undefined, incident: doc?.error?.details?.incident?.markdown, error: message, durationMs });
            say(`[${stack}] FAILED (exit ${run.code}): ${message}`);
            haltedBy ??= stack;
          }
        }),
      ),
    );
  }
  const ordered = all.map(({ stack, wave }) => results.get(stack) ?? { stack, wave, from: previewOf.get(stack)?.from, to: previewOf.get(stack)?.to, status: "halted" as const });
  const done = result(ordered, haltedBy);
  if (done.failed || done.halted) {
    const why = haltedBy && !continueOnError && done.halted ? `; halted after ${haltedBy} failed: ${done.halted} stack(s) not started` : "";
    throw new FleetIncompleteError(`fleet rollback to ${options.to}: ${done.succeeded} succeeded, ${done.failed} failed${why}. Each stack's own history says what it is at.`, done);
  }
  return done;
}
