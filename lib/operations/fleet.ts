/**
 * Fleet rollback: many stacks back to a version, the way an incident needs it. Every stack is previewed
 * first (one table), then rolled back in waves — a canary first, then the rest with a concurrency limit —
 * and the remaining waves halt when a stack fails. Each stack's rollback is an ordinary single-stack
 * rollback, so its history, incident record and audit entry are written exactly as one.
 *
 * The fleet runs each stack through a {@link StackRunner}: the library's own preview and rollback, whose
 * outcomes come back as values (the plan, the rollback's result, or the error's report). The default one
 * runs each preview and rollback in a process of its own (`fleet-worker.ts`, forked and spoken to over
 * IPC): Pulumi's Node.js runtime keeps global state, and the Automation API runs one inline program per
 * process at a time, so stacks can only go back in parallel as separate processes. A stack applies only
 * the plan the fleet previewed: its rollback gets the previewed plan's digest and refuses, changing
 * nothing, when the stack moved in between.
 */
import { fork } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { minimatch } from "minimatch";
import pLimit from "p-limit";
import * as z from "zod";
import { renderProgress } from "../cli/progress";
import type { ProgressEvent } from "../environment";
import { ErrorReport, ExitCode, FleetIncompleteError, InvalidVersionFileError, NotConfirmedError, UnknownStackError } from "../errors";
import { describeIssues } from "../versions/schema";
import { readYamlFile } from "../versions/yaml-input";
import { VersionStore } from "../versions/store";
import type { Plan } from "./plan";
import type { RollbackResult } from "./rollback";

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
  /** The environment each stack's process runs with (passphrase, Pulumi CLI); default the process's. */
  env?: NodeJS.ProcessEnv;
  /** How each stack is previewed and rolled back; default {@link processRunner}, a process per stack with `env`. */
  runner?: StackRunner;
  /** Called with every stack's preview before anything changes; return false to stop. Absent: go on (`--yes`). */
  confirm?: (previews: FleetPreview[]) => Promise<boolean>;
  /** A line of progress for people: fleet events and each stack's own progress, prefixed with its stack. */
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

/** What the fleet asks of one stack first: the plan of its rollback to `to`. Changes nothing. */
export interface StackPreviewRequest {
  stack: string;
  /** A version, or `previous`. */
  to: string;
}

/** What the fleet asks of one stack then: its rollback, held to the plan previewed. */
export interface StackRollbackRequest {
  stack: string;
  /** The version its preview resolved. */
  to: string;
  /** The previewed plan's digest: any other plan is refused (exit 7), nothing changed. */
  expectPlan: string;
  reason?: string;
  approveDataLoss?: boolean;
  /** Unsigned acknowledgements (`--approve NAME`). */
  approvers?: string[];
}

/** A stack's preview: the plan, or why there is none. */
export type PreviewOutcome = { ok: true; plan: Plan } | { ok: false; failure: ErrorReport };

/** A stack's rollback: its result, or why it failed (`details` as the error carries them). */
export type RollbackOutcome = { ok: true; result: RollbackResult } | { ok: false; failure: ErrorReport };

/** What a stack's run tells while it goes. */
export interface StackRunWatch {
  /** The operation's progress events. */
  onProgress?: (event: ProgressEvent) => void;
  /** Anything else its run printed (a runtime's warning), a line at a time. */
  onOutput?: (line: string) => void;
}

/**
 * Runs one stack's preview or rollback for a fleet, through the library. A failure is an outcome, not a
 * rejection: a rejection means the runner itself could not run, and stops the fleet.
 */
export interface StackRunner {
  /** The stack's rollback plan (the library's `previewRollback`). */
  preview(request: StackPreviewRequest, watch?: StackRunWatch): Promise<PreviewOutcome>;
  /** The stack's rollback (the library's `rollback`), applying the previewed plan or nothing. */
  rollback(request: StackRollbackRequest, watch?: StackRunWatch): Promise<RollbackOutcome>;
}

/** What the fleet sends a stack's process (`fleet-worker.ts`): one request, then nothing. */
export type WorkerRequest = { projectDir: string; backendUrl?: string } & (
  | { op: "preview"; request: StackPreviewRequest }
  | { op: "rollback"; request: StackRollbackRequest }
);

/** What a stack's process sends back: progress events, then its outcome, then it exits. */
export type WorkerMessage = { type: "progress"; event: ProgressEvent } | { type: "outcome"; outcome: PreviewOutcome | RollbackOutcome };

/** Options for {@link processRunner}. */
export interface ProcessRunnerOptions {
  /** The project directory holding `stacks/`; each process runs in it. */
  projectDir: string;
  /** The state backend URL for every stack (default: `STACKPIN_BACKEND`, else each `stack.yaml`'s). */
  backendUrl?: string;
  /** The processes' environment: secrets (the passphrase) travel here, never in arguments. */
  env: NodeJS.ProcessEnv;
}

/**
 * A {@link StackRunner} that runs each request in a process of its own: a fork of `fleet-worker.js`,
 * which opens the stack with the built-in programs and the environment it was given, runs the library's
 * preview or rollback, and sends its progress events and outcome back over IPC.
 */
export function processRunner(options: ProcessRunnerOptions): StackRunner {
  const run = <T extends PreviewOutcome | RollbackOutcome>(request: WorkerRequest, watch?: StackRunWatch) =>
    new Promise<T>((resolve, reject) => {
      const child = fork(path.join(__dirname, "fleet-worker.js"), [], {
        cwd: options.projectDir,
        env: options.env,
        execArgv: [],
        serialization: "json",
        stdio: ["ignore", "pipe", "pipe", "ipc"],
      });
      let outcome: T | undefined;
      // The last lines it printed: what says why, should it end without an outcome.
      const tail: string[] = [];
      const lines = (stream: NodeJS.ReadableStream) => {
        let partial = "";
        const say = (line: string) => {
          if (!line.trim()) return;
          tail.push(line.trim());
          if (tail.length > 20) tail.shift();
          watch?.onOutput?.(line);
        };
        stream.setEncoding("utf8");
        stream.on("data", (d: string) => {
          const all = (partial + d).split("\n");
          partial = all.pop() ?? "";
          all.forEach(say);
        });
        stream.on("end", () => say(partial));
      };
      lines(child.stdout!);
      lines(child.stderr!);
      child.on("message", (m: WorkerMessage) => {
        if (m.type === "progress") watch?.onProgress?.(m.event);
        else outcome = m.outcome as T;
      });
      child.on("error", reject);
      // Settled when the process is gone and its channel closed: every message it sent has arrived.
      let ended: { code: number | null; signal: NodeJS.Signals | null } | undefined;
      let disconnected = false;
      const settle = () => {
        if (!ended || !disconnected) return;
        if (outcome) return resolve(outcome);
        const how = ended.signal ? `was killed (${ended.signal})` : `exited with code ${ended.code}`;
        const why = tail.find((l) => /^(\w*Error\b|error:)/.test(l)) ?? tail.at(-1);
        const failure: ErrorReport = {
          code: "internal",
          exitCode: ExitCode.internal,
          message: `the process running ${request.op} of stack ${request.request.stack} ${how} without an outcome${why ? `: ${why}` : ""}`,
        };
        resolve({ ok: false, failure } as T);
      };
      child.on("close", (code, signal) => ((ended = { code, signal }), settle()));
      child.on("disconnect", () => ((disconnected = true), settle()));
      child.send(request satisfies WorkerRequest, (e) => {
        // A process that cannot take its request has ended, or will: its exit says so.
        if (e) child.kill();
      });
    });
  const where = { projectDir: options.projectDir, ...(options.backendUrl ? { backendUrl: options.backendUrl } : {}) };
  return {
    preview: (request, watch) => run<PreviewOutcome>({ ...where, op: "preview", request }, watch),
    rollback: (request, watch) => run<RollbackOutcome>({ ...where, op: "rollback", request }, watch),
  };
}

const firstLine = (message: string) => message.split("\n")[0];

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
  const runner =
    options.runner ??
    processRunner({
      projectDir,
      backendUrl: options.backendUrl,
      env: Object.fromEntries(Object.entries(options.env ?? process.env).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv,
    });
  const say = (line: string) => options.onProgress?.(line);
  const all = waves.flatMap((w) => w.stacks.map((stack) => ({ stack, wave: w.name })));
  say(`fleet: ${all.length} stack(s) in ${waves.length} wave(s): ${waves.map((w) => `${w.name} [${w.stacks.join(", ")}]${w.stacks.length > 1 ? ` at ${w.concurrency} at once` : ""}`).join(", then ")}`);

  // 1. Preview every stack; one that cannot be previewed refuses the whole fleet before anything changes.
  say(`fleet: previewing ${all.length} stack(s) (changes nothing)`);
  const previewLimit = pLimit(Math.max(...waves.map((w) => w.concurrency)));
  const previews = await Promise.all(
    all.map(({ stack, wave }) =>
      previewLimit(async (): Promise<FleetPreview> => {
        const outcome = await runner.preview({ stack, to: options.to });
        if (!outcome.ok) return { stack, wave, warnings: [], error: { exitCode: outcome.failure.exitCode, message: firstLine(outcome.failure.message) } };
        const plan = outcome.plan;
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
          say(`[${stack}] rolling back ${preview.from ?? "(nothing)"} -> ${preview.to}`);
          // The stack's own progress, each line with its name, as the CLI would print it for that stack.
          const tell = (text: string) => text.split("\n").forEach((l) => l.trim() && say(`[${stack}] ${l}`));
          const outcome = await runner.rollback(
            { stack, to: preview.to!, expectPlan: preview.planDigest!, reason: options.reason, approveDataLoss: options.approveDataLoss, approvers: options.approvers ?? [] },
            { onProgress: (e) => tell(renderProgress(e) ?? ""), onOutput: tell },
          );
          const durationMs = Math.round(performance.now() - t0);
          if (outcome.ok) {
            const r = outcome.result;
            results.set(stack, { stack, wave: wave.name, from: preview.from, to: preview.to, status: "succeeded", exitCode: 0, revision: r.revision, verified: r.verification?.passed, incident: r.incident?.markdown, durationMs });
            say(`[${stack}] rolled back to ${preview.to}${r.revision ? `, revision ${r.revision}` : ""}${r.verification ? (r.verification.passed ? ", verified" : "") : ""} (${(durationMs / 1000).toFixed(1)} s)`);
          } else {
            const { exitCode, message } = outcome.failure;
            // A rollback that applied and then failed verification carries its result and incident record.
            const details = outcome.failure.details as { rollback?: { revision?: number }; incident?: { markdown?: string } } | undefined;
            const error = firstLine(message);
            results.set(stack, { stack, wave: wave.name, from: preview.from, to: preview.to, status: "failed", exitCode, revision: details?.rollback?.revision, verified: exitCode === ExitCode.verificationFailed ? false : undefined, incident: details?.incident?.markdown, error, durationMs });
            say(`[${stack}] FAILED (exit ${exitCode}): ${error}`);
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
