#!/usr/bin/env node
import { AsyncLocalStorage } from "node:async_hooks";
import * as fs from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline/promises";
import { Command, CommanderError, Option } from "commander";
import * as z from "zod";
import { builtinPrograms } from "../../programs";
import type { ProgressEvent, StackpinEnv } from "../environment";
import { envSchema, locateOptionsFromEnv, machinePolicyFromEnv, openEnvironment, openOptionsFromEnv, passphraseFromEnv } from "../environment";
import { deferClosureSerializer } from "../engine/closure-serializer";
import { ensurePulumi, locatePulumi, packageRoot, PulumiCli } from "../engine/pulumi-cli";
import { AuditBrokenError, AutoRollbackNeedsApprovalError, errorReport, ExitCode, FleetIncompleteError, NotReadyError, StackpinError, VerificationFailedError } from "../errors";
import type { ReadinessReport } from "../planning/readiness";
import type { FleetResult } from "../operations/fleet";
import type { JobBatch } from "../operations/fleet-emit";
import { watchIntervalSchema } from "../versions/schema";
import type { ApplyResult } from "../operations/apply";
import { renderMarkdown } from "../incident/incident";
import { type Plan } from "../operations/plan";
import {
  renderApply,
  renderApproval,
  renderAudit,
  renderDestroy,
  renderEvaluation,
  renderFleet,
  renderFleetPreview,
  renderHistory,
  renderPlan,
  renderProgress,
  renderRecovery,
  renderRollback,
  renderReadiness,
  renderStatus,
  renderVerification,
} from "./render";
import { addHelpExamples } from "./help-examples";

/**
 * The operations, each loaded when its command runs (`require` at the point of use, the types imported
 * above): a command pays at start for its own modules only, so `status` and `history` do not load what
 * an apply, a fleet, `watch` or the incident page needs.
 */
const load = {
  adopt: () => require("../operations/adopt") as typeof import("../operations/adopt"),
  approve: () => require("../operations/approve") as typeof import("../operations/approve"),
  audit: () => require("../operations/audit") as typeof import("../operations/audit"),
  check: () => require("../operations/check") as typeof import("../operations/check"),
  deploy: () => require("../operations/deploy") as typeof import("../operations/deploy"),
  destroy: () => require("../operations/destroy") as typeof import("../operations/destroy"),
  fleet: () => require("../operations/fleet") as typeof import("../operations/fleet"),
  fleetEmit: () => require("../operations/fleet-emit") as typeof import("../operations/fleet-emit"),
  freeze: () => require("../operations/freeze") as typeof import("../operations/freeze"),
  history: () => require("../operations/history") as typeof import("../operations/history"),
  incident: () => require("../operations/incident") as typeof import("../operations/incident"),
  preview: () => require("../operations/preview") as typeof import("../operations/preview"),
  recover: () => require("../operations/recover") as typeof import("../operations/recover"),
  restore: () => require("../operations/restore") as typeof import("../operations/restore"),
  rollback: () => require("../operations/rollback") as typeof import("../operations/rollback"),
  rotate: () => require("../operations/rotate") as typeof import("../operations/rotate"),
  secret: () => require("../operations/secret") as typeof import("../operations/secret"),
  snapshot: () => require("../operations/snapshot") as typeof import("../operations/snapshot"),
  status: () => require("../operations/status") as typeof import("../operations/status"),
  watch: () => require("../operations/watch") as typeof import("../operations/watch"),
};

interface CommonFlags {
  stack: string;
  json?: boolean;
  projectDir?: string;
  backend?: string;
}

/** The streams one CLI run reads and writes: the process's, or a test's (see {@link runCli}). */
export interface CliIo {
  /** The environment variables, validated by the CLI. */
  env: NodeJS.ProcessEnv;
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  /** Read by `secret set` and the confirmation prompt; absent means empty and no terminal. */
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
}

// Each run's streams follow its async calls, so in-process runs (tests) never write to the process's.
const runIo = new AsyncLocalStorage<CliIo>();
// stdin is reached lazily: opening it when no command reads it could hold the process open.
const processIo = (env: NodeJS.ProcessEnv): CliIo => ({
  env,
  stdout: process.stdout,
  stderr: process.stderr,
  get stdin() {
    return process.stdin;
  },
});
const io = (): Omit<CliIo, "env"> => runIo.getStore() ?? processIo(process.env);
const err = (line: string) => io().stderr.write(`${line}\n`);

// Locating runs `pulumi version`; a process (or a test running many commands in one) does it once.
const located = new Map<string, Promise<PulumiCli>>();

async function findPulumi(env: StackpinEnv, quiet: boolean, projectDir?: string): Promise<PulumiCli> {
  // The project's engine directory remembers the CLI's version: `pulumi version` runs once, not per command.
  const options = locateOptionsFromEnv(env, projectDir);
  const key = JSON.stringify(options);
  if (!located.has(key)) located.set(key, locatePulumi(options).catch((e) => (located.delete(key), Promise.reject(e))));
  const cli = await located.get(key)!;
  if (!quiet) err(`using Pulumi CLI ${cli.version}, ${cli.source}: ${cli.root}`);
  return cli;
}

/** Opens the stack the flags name. `reading`: a command that only reads, which a passphrase stack opens without its passphrase. */
async function context(flags: CommonFlags, env: StackpinEnv, reading = false) {
  return openEnvironment({
    // First: a broken machine policy refuses before anything else is read.
    ...openOptionsFromEnv(env),
    requirePassphrase: !reading,
    stack: flags.stack,
    projectDir: flags.projectDir,
    backendUrl: flags.backend ?? env.STACKPIN_BACKEND,
    pulumi: await findPulumi(env, !!flags.json, flags.projectDir),
    programs: builtinPrograms,
  });
}

function progress(): { onProgress: (e: ProgressEvent) => void } {
  return {
    onProgress: (e) => {
      const line = renderProgress(e);
      if (line) err(line);
    },
  };
}

/** Asks on the terminal; without one, refuses (a script must say --yes). */
function confirmer(
  flags: { yes?: boolean; json?: boolean },
  question = (plan: Plan) => `apply ${plan.op} ${plan.from ?? ""} -> ${plan.to} to stack ${plan.stack}? [y/N] `,
): ((plan: Plan) => Promise<boolean>) | undefined {
  if (flags.yes) return undefined;
  return async (plan) => {
    err(renderPlan(plan));
    return askYes(question(plan));
  };
}

/** Asks a yes/no question on the terminal; without one, says so and answers no (a script must say --yes). */
async function askYes(question: string): Promise<boolean> {
  const stdin = io().stdin;
  if (!stdin?.isTTY) {
    err("not confirmed: no terminal to ask on; re-run with --yes to apply");
    return false;
  }
  const rl = readline.createInterface({ input: stdin, output: process.stderr });
  const answer = await rl.question(question);
  rl.close();
  return /^y(es)?$/i.test(answer.trim());
}

function out(flags: { json?: boolean }, value: unknown, text: () => string): void {
  io().stdout.write(flags.json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** `--approval-file FILE` and `--approve NAME`, both repeatable. */
function withApprovals(cmd: Command): Command {
  return cmd
    .option("--approval-file <file>", "a signed approval, written by an approver with `stackpin approve` (repeatable)", collect, [])
    .option("--approve <name>", "an unsigned acknowledgement, only for policies that name no approvers and no allowed signers (repeatable)", collect, []);
}

/** How long an approval stays valid: `90s`, `30m`, `2h`, `1d`. */
function duration(value: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(value.trim());
  if (!m || Number(m[1]) <= 0) throw new CommanderError(ExitCode.usage, "usage", `--expires must look like 30m, 2h or 1d, not "${value}"`);
  return Number(m[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s"];
}

/**
 * A numeric flag, checked with the zod schema of the setting it stands for: `--interval abc` is a usage
 * error (exit 2) naming the flag, never a NaN that the operation would loop on.
 */
function numberFlag(flag: string, what: string, schema: z.ZodType<number>): (value: string) => number {
  return (value) => {
    const parsed = schema.safeParse(/^\s*-?\d+(\.\d+)?\s*$/.test(value) ? Number(value) : Number.NaN);
    if (!parsed.success) {
      throw new CommanderError(ExitCode.usage, "usage", `${flag} must be ${what}, not "${value}" (${parsed.error.issues[0].message})`);
    }
    return parsed.data;
  };
}

function withCommon(cmd: Command, stackFlag: "required" | "optional" = "required"): Command {
  return (stackFlag === "required" ? cmd.requiredOption("-s, --stack <name>", "the stack (a directory under stacks/)") : cmd.option("-s, --stack <name>", "the stack (a directory under stacks/)"))
    .option("--json", "print one JSON document on stdout and nothing else")
    .option("--project-dir <dir>", "the project directory holding stacks/ and .stackpin/ (default: the current directory)")
    .option("--backend <url>", "the state backend URL (default: stack.yaml's, else file://<project>/.stackpin/state)");
}

/** Builds the `stackpin` command line. `env` is the process environment, validated here. */
export function buildCli(rawEnv: NodeJS.ProcessEnv): Command {
  const env = envSchema.parse(rawEnv);
  // The machine's allowed signers reach operations in its machine policy (see `context`), not here.
  const approvalsOf = (flags: { approve: string[]; approvalFile: string[] }) => ({ approvers: flags.approve, files: flags.approvalFile });
  const program = new Command("stackpin")
    .description("Version-pinned Pulumi stacks: deploy, preview, roll back, with history in the backend")
    .version(packageVersion(), "-V, --version", "print stackpin's version")
    // Root options only before the command: `deploy --version v2` is deploy's version, not stackpin's.
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ writeOut: (text) => io().stdout.write(text), writeErr: (text) => io().stderr.write(text) })
    .showHelpAfterError();

  withApprovals(withCommon(program.command("deploy").description("deploy a version (previews and asks first unless --yes)")))
    .requiredOption("-v, --version <version>", "the version to deploy, e.g. v42")
    .option("-m, --message <text>", "why, recorded in history")
    .option("-y, --yes", "apply without previewing and asking")
    .option("--auto-rollback", "when the new version fails verification, roll back to the last version that verified")
    .option("--approve-data-loss", "approve a point-in-time restore if the database policy needs one")
    .action(async (flags) => {
      const ctx = await context(flags, env);
      const result = await load.deploy().deploy(ctx, {
        version: flags.version,
        message: flags.message,
        confirm: confirmer(flags),
        autoRollback: !!flags.autoRollback,
        approveDataLoss: !!flags.approveDataLoss,
        approvals: approvalsOf(flags),
        ...progress(),
      });
      out(flags, result, () => renderApply(result));
    });

  withCommon(program.command("preview").description("show the config and resource diff of applying a version; changes nothing"))
    .addOption(new Option("-v, --version <version>", "preview deploying this version").conflicts("to"))
    .option("-t, --to <version>", "preview rolling back to this version (or 'previous')")
    .action(async (flags) => {
      if (!flags.version && !flags.to) throw new CommanderError(ExitCode.usage, "usage", "preview needs --version or --to");
      const ctx = await context(flags, env);
      const plan = flags.to
        ? await load.rollback().previewRollback(ctx, { to: flags.to, ...progress() })
        : await load.preview().preview(ctx, { version: flags.version, ...progress() });
      out(flags, plan, () => renderPlan(plan));
    });

  withApprovals(withCommon(program.command("rollback").description("re-apply an earlier version; recorded as a new history entry"), "optional"))
    .requiredOption("-t, --to <version>", "the version to go back to, or 'previous'")
    .option("-r, --reason <text>", "why, recorded in history")
    .option("-y, --yes", "apply without previewing and asking")
    .option("--approve-data-loss", "approve the point-in-time restore a rollback past an irreversible migration needs")
    .option("--expect-plan <digest>", "apply only if the plan's digest is this one (from `preview --json`); else exit 7, nothing changed")
    .addOption(new Option("--stacks <glob>", "fleet: every stack under stacks/ matching the glob (a canary first, then the rest)").conflicts(["stack", "fleet"]))
    .addOption(new Option("--fleet <file>", "fleet: a fleet file naming the waves of stacks").conflicts(["stack"]))
    .option("--canary <stack>", "fleet with --stacks: the stack that goes first, alone (default: the first name)")
    .option("--concurrency <n>", "fleet: stacks rolled back at once after the canary (default 4)", numberFlag("--concurrency", "a whole number from 1 to 64", z.number().int().min(1).max(64)))
    .option("--continue-on-error", "fleet: go on with the next waves when a stack fails (default: halt)")
    .option("--force", "re-apply even when the version is already live and verified (else: skipped, exit 0)")
    .action(async (flags) => {
      if (flags.stacks || flags.fleet) return fleetAction(flags);
      if (!flags.stack) throw new CommanderError(ExitCode.usage, "usage", "rollback needs --stack (or --stacks / --fleet for a fleet)");
      const ctx = await context(flags, env);
      const expected: string | undefined = flags.expectPlan;
      const { expectPlan, rollback } = load.rollback();
      const result = await rollback(ctx, {
        to: flags.to,
        reason: flags.reason,
        force: !!flags.force,
        // A caller holding a previewed plan (a fleet) applies that plan or nothing.
        confirm: expected ? expectPlan(ctx.stack.name, expected) : confirmer(flags),
        approveDataLoss: !!flags.approveDataLoss,
        approvals: approvalsOf(flags),
        ...progress(),
      });
      out(flags, result, () => renderRollback(result));
    });

  /** `rollback --stacks GLOB` / `--fleet FILE`: previews every stack, asks once, then the waves. */
  async function fleetAction(flags: Record<string, any>): Promise<void> {
    // Each stack's process reads the machine policy itself; a broken one refuses the fleet here, before any preview.
    machinePolicyFromEnv(env);
    const result = await load.fleet().fleetRollback({
      projectDir: flags.projectDir,
      backendUrl: flags.backend ?? env.STACKPIN_BACKEND,
      selection: flags.fleet ? { fleetFile: flags.fleet } : { stacks: flags.stacks, canary: flags.canary },
      to: flags.to,
      reason: flags.reason,
      concurrency: flags.concurrency,
      continueOnError: flags.continueOnError,
      approveDataLoss: !!flags.approveDataLoss,
      approvers: flags.approve,
      // Each stack's process gets the environment as given and validates it as the CLI does.
      env: rawEnv,
      confirm: flags.yes
        ? async (previews) => (err(renderFleetPreview(previews)), true)
        : async (previews) => (err(renderFleetPreview(previews)), askYes(`roll back ${previews.length} stack(s) as above? [y/N] `)),
      onProgress: err,
    });
    out(flags, result, () => renderFleet(result));
  }

  program
    .command("fleet")
    .description("emit a fleet rollback for another engine to run: one Kubernetes Job per stack, waves as ordered batches")
    .addOption(new Option("--emit <format>", "what to write").choices(["k8s-jobs"]).makeOptionMandatory())
    .addOption(new Option("--stacks <glob>", "every stack under stacks/ matching the glob (a canary first, then the rest)").conflicts(["fleet"]))
    .option("--fleet <file>", "a fleet file naming the waves of stacks")
    .option("--canary <stack>", "with --stacks: the stack that goes first, alone (default: the first name)")
    .option("--concurrency <n>", "Jobs per batch after the canary (default 4)", numberFlag("--concurrency", "a whole number from 1 to 64", z.number().int().min(1).max(64)))
    .requiredOption("-t, --to <version>", "the version each stack goes back to, or 'previous' (resolved by each Job)")
    .requiredOption("--image <image>", "the container image with stackpin and this project's stacks/ in its working directory")
    .option("--namespace <ns>", "the namespace the Jobs run in", "stackpin")
    .option("--secret <name>", "the Secret whose keys become each Job's environment (PULUMI_CONFIG_PASSPHRASE, STACKPIN_BACKEND, credentials)", "stackpin")
    .option("--workdir <dir>", "the project directory inside the image", "/project")
    .option("-r, --reason <text>", "why, recorded in each stack's history")
    .option("-o, --out <dir>", "write one file per batch (01-canary.yaml, 02-rest.yaml, ...) instead of printing them")
    .option("--project-dir <dir>", "the project directory holding stacks/ (default: the current directory)")
    .option("--json", "print the batches as one JSON document")
    .action(async (flags) => {
      if (!flags.stacks && !flags.fleet) throw new CommanderError(ExitCode.usage, "usage", "fleet needs --stacks or --fleet");
      const batches = load.fleetEmit().emitK8sJobs({
        projectDir: flags.projectDir,
        selection: flags.fleet ? { fleetFile: flags.fleet } : { stacks: flags.stacks, canary: flags.canary },
        to: flags.to,
        reason: flags.reason,
        concurrency: flags.concurrency,
        image: flags.image,
        namespace: flags.namespace,
        secretName: flags.secret,
        workdir: flags.workdir,
      });
      const files = flags.out ? writeBatches(flags.out, batches) : [];
      const doc = batches.map((b) => ({ name: b.name, wave: b.wave, stacks: b.stacks, file: files[batches.indexOf(b)], jobs: b.jobs }));
      out(flags, doc, () =>
        flags.out
          ? `${batches.map((b, i) => `${files[i]}: ${b.stacks.join(", ")}`).join("\n")}\napply them in order, waiting for each batch (docs/fleet.md: "Fleet rollback on Kubernetes, or in a CI matrix")`
          : batches.map((b) => `# batch ${b.name} (wave ${b.wave}): ${b.stacks.join(", ")}\n${b.yaml}`).join("---\n"),
      );
    });

  withApprovals(withCommon(program.command("restore").description("restore the database to a point in time or a snapshot, and point the app at it")))
    .addOption(new Option("--to-time <iso>", "the recovery target time, e.g. 2026-11-24T05:30:00Z").conflicts("snapshot"))
    .option("--snapshot <name>", "restore to the moment this snapshot was taken")
    .option("--approve-data-loss", "required: every write after the target time is lost")
    .option("-r, --reason <text>", "why, recorded in history")
    .option("-y, --yes", "apply without previewing and asking")
    .action(async (flags) => {
      if (!flags.toTime && !flags.snapshot) throw new CommanderError(ExitCode.usage, "usage", "restore needs --to-time or --snapshot");
      const ctx = await context(flags, env);
      const result = await load.restore().restore(ctx, {
        time: flags.toTime,
        snapshot: flags.snapshot,
        approveDataLoss: !!flags.approveDataLoss,
        reason: flags.reason,
        confirm: confirmer(flags),
        approvals: approvalsOf(flags),
        ...progress(),
      });
      out(flags, result, () => renderApply(result));
    });

  const snapshotCmd = program.command("snapshot").description("the stack's database snapshots and restored databases");
  withCommon(snapshotCmd.command("rm").description("remove a snapshot or a restored database that is no longer live (a retention step)"))
    .argument("<name>", "the snapshot (pre-v3) or restored database (restore-pre-v3-...) to remove")
    .option("--approve-data-loss", "required: the base backup, or the restored database and its data, are deleted")
    .option("-r, --reason <text>", "why, recorded in history")
    .option("-y, --yes", "apply without previewing and asking")
    .action(async (name, flags) => {
      const result = await load.snapshot().removeSnapshot(await context(flags, env), {
        name,
        approveDataLoss: !!flags.approveDataLoss,
        reason: flags.reason,
        confirm: confirmer(flags),
        ...progress(),
      });
      out(flags, result, () => renderApply(result));
      });

  withCommon(program.command("approve").description("sign an approval of one deploy, rollback or restore, for its exact plan (a preview; changes nothing)"))
    .addOption(new Option("--op <op>", "the operation approved").choices(["deploy", "rollback", "restore"]).makeOptionMandatory())
    .option("-t, --to <version>", "the version to deploy or roll back to (rollback: or 'previous')")
    .addOption(new Option("--to-time <iso>", "restore: the recovery target time").conflicts("snapshot"))
    .option("--snapshot <name>", "restore: the snapshot to restore to")
    .requiredOption("-k, --key <file>", "your SSH private key (or its .pub, with the key in ssh-agent)")
    .option("--as <principal>", "your principal in the allowed signers (default: your key's)")
    .option("--expires <duration>", "how long the approval stays valid: 30m, 2h, 1d", "1h")
    .option("-o, --out <file>", "where to write the approval (default: approval-<stack>-<op>-<to>-<id>.yaml)")
    .option("-r, --reason <text>", "why, kept in the signed statement")
    .option("-y, --yes", "sign without showing the plan and asking")
    .action(async (flags) => {
      if (flags.op === "restore" ? !flags.toTime && !flags.snapshot : !flags.to) {
        throw new CommanderError(ExitCode.usage, "usage", flags.op === "restore" ? "approve --op restore needs --to-time or --snapshot" : `approve --op ${flags.op} needs --to`);
      }
      const validForMs = duration(flags.expires);
      const ctx = await context(flags, env);
      const r = await load.approve().approve(ctx, {
        op: flags.op,
        to: flags.to,
        restore: { time: flags.toTime, snapshot: flags.snapshot },
        key: flags.key,
        as: flags.as,
        validForMs,
        reason: flags.reason,
        out: flags.out,
        confirm: confirmer(flags, (plan) => `sign an approval of ${plan.op} ${plan.from ?? ""} -> ${plan.to} on stack ${plan.stack} (plan ${plan.planDigest})? [y/N] `),
        ...progress(),
      });
      // With --yes the plan was not shown before signing: show what was signed.
      out(flags, r, () => `${flags.yes ? `${renderPlan(r.plan)}\n\n` : ""}${renderApproval(r)}`);
    });

  withApprovals(withCommon(program.command("watch").description("evaluate the stack's triggers on an interval; roll back when one fires")))
    .option("--auto-rollback", "roll back to the last version that verified when a trigger fires, within the policy's guards (exit 15 without it, or when a guard withholds it)")
    .option("--interval <ms>", "time between evaluations (default: the policy's)", numberFlag("--interval", "a whole number of milliseconds, at least 50", watchIntervalSchema))
    .option("--max-evaluations <n>", "stop after this many evaluations", numberFlag("--max-evaluations", "a whole number, at least 1", z.number().int().min(1)))
    .option("--record-baseline", "record the current value of every baseline rule's query, then stop")
    .option("--approve-data-loss", "approve a point-in-time restore if the rollback needs one")
    .action(async (flags) => {
      const ctx = await context(flags, env);
      const controller = new AbortController();
      const stop = () => controller.abort();
      process.once("SIGINT", stop).once("SIGTERM", stop);
      const result = await load.watch().watch(ctx, {
        autoRollback: !!flags.autoRollback,
        intervalMs: flags.interval,
        maxEvaluations: flags.maxEvaluations,
        recordBaseline: !!flags.recordBaseline,
        approveDataLoss: !!flags.approveDataLoss,
        approvals: approvalsOf(flags),
        signal: controller.signal,
        onEvaluation: (e) => err(renderEvaluation(e)),
        ...progress(),
      });
      out(flags, result, () =>
        result.baselines
          ? `recorded baselines: ${JSON.stringify(result.baselines)}`
          : result.rollback
            ? `${renderRollback(result.rollback)}\nbreach to rollback start: ${((result.breachToRollbackMs ?? 0) / 1000).toFixed(1)} s` +
              (result.recovery ? `\nsignals after the rollback: ${result.recovery.recovered ? "back within every bound" : "STILL BREACHED"} (${result.recovery.rules.map((x) => `${x.name}: ${x.detail}`).join("; ")})` : "")
            : (result.deferred
                ? `${result.evaluations} evaluation(s); stopped while the automatic rollback was deferred: ${result.deferred}`
                : `${result.evaluations} evaluation(s), no trigger fired`) +
              (result.readiness ? `; ways back checked ${result.readiness.checks} time(s), ${result.readiness.changes.map((c) => `${c.version} ${c.change} at ${c.at}`).join(", ") || "no change"}` : ""),
      );
    });

  for (const verb of ["freeze", "unfreeze"] as const) {
    withCommon(program.command(verb).description(verb === "freeze" ? "block deploys (not rollbacks) on the stack, for every machine" : "lift a deploy freeze"))
      .requiredOption("-r, --reason <text>", "why, shown to everyone and kept in the audit trail")
      .action(async (flags) => {
        const r = await load.freeze()[verb](await context(flags, env), { reason: flags.reason, ...progress() });
        out(flags, r, () => (verb === "freeze" ? `deploys to ${r.stack} are frozen: ${flags.reason}` : `deploys to ${r.stack} are allowed again`));
      });
  }

  const auditCmd = program.command("audit").description("the stack's append-only, hash-chained audit trail");
  withCommon(auditCmd.command("verify").description("check every entry's hash and link, and the head anchored in the backend")).action(async (flags) => {
    const v = await load.audit().verifyAudit(await context(flags, env));
    if (!v.ok) throw new AuditBrokenError(flags.stack, v.file, v.problems);
    out(flags, v, () => `audit trail of ${flags.stack} verifies: ${v.entries} entries, ${v.file}${v.interrupted ? `\nnote: ${v.interrupted}` : ""}`);
  });
  withCommon(auditCmd.command("show").description("print the audit trail, oldest first")).action(async (flags) => {
    const a = await load.audit().readAudit(await context(flags, env));
    out(flags, a, () => renderAudit(a.entries));
  });

  const incidentCmd = program.command("incident").description("the incident records every rollback writes");
  withCommon(incidentCmd.command("show").description("print an incident's record; with --html, render its timeline page (signals from Prometheus, marks from the record)"))
    .requiredOption("--id <id>", "the incident's id (the record's file name in .stackpin/incidents/<stack>/, without .json)")
    .option("--html <file>", "write the incident page here, and its chart as SVG beside it (same name, .svg)")
    .action(async (flags) => {
      const r = await load.incident().showIncident(await context(flags, env), { id: flags.id, html: flags.html, ...progress() });
      for (const w of r.warnings) err(`warning: ${w}`);
      out(flags, r, () =>
        r.page
          ? `wrote ${r.page.html} and ${r.page.svg}\nmarks: ${r.page.marks.map((m) => `${m.label} ${m.at.slice(11, 23)}`).join(", ")}\n` +
            `signals: ${r.page.series.map((s) => `${s.rule} (${s.missing ? `no data: ${s.missing}` : `${s.points} points`})`).join(", ")}\nlinked from ${r.files.markdown}`
          : renderMarkdown(r.record),
      );
    });

  withCommon(program.command("history").description("every deploy and rollback of the stack, newest first")).action(async (flags) => {
    const entries = await load.history().history(await context(flags, env, true));
    out(flags, entries, () => renderHistory(flags.stack, entries));
  });

  withCommon(program.command("check").description("whether each way back works now, leg by leg (config, secrets, artifacts, database, plugins, approvals); changes nothing in the stack"))
    .option("--to <version>", "check only the way back to this version (v41, 41 or previous)")
    .option("--all", "check every version applied before, besides the last good and the previous one")
    .action(async (flags) => {
      if (flags.to && flags.all) throw new CommanderError(ExitCode.usage, "usage", "--to and --all cannot be used together");
      const ctx = await context(flags, env);
      try {
        const r = await load.check().check(ctx, { to: flags.to, all: !!flags.all, ...progress() });
        out(flags, r, () => renderReadiness(r));
      } catch (e) {
        // Not ready: the whole report for people first, then the error line; a script gets it in the error's details.
        if (e instanceof NotReadyError && !flags.json) out(flags, e.details, () => renderReadiness(e.details as ReadinessReport));
        throw e;
      }
    });

  withCommon(program.command("status").description("the live version, last operation and outputs")).action(async (flags) => {
    const s = await load.status().status(await context(flags, env, true));
    out(flags, s, () => renderStatus(s));
  });

  withCommon(program.command("rotate").description("write the next version with a secret's generation raised; deploy it to rotate"))
    .requiredOption("--secret <name>", "the secret to rotate")
    .action(async (flags) => {
      const r = await load.rotate().rotate(await context(flags, env), { secret: flags.secret });
      out(flags, r, () => `wrote ${r.version} (${r.from} with ${r.secret} at generation ${r.generation}): ${r.file}\ndeploy it: stackpin deploy --stack ${r.stack} --version ${r.version}`);
    });

  withCommon(program.command("destroy").description("stop and remove everything the stack owns; history stays"))
    .option("-y, --yes", "required: destroying stops the service")
    .option("--approve-data-loss", "required when the stack holds data (volumes, databases, snapshots): destroy deletes them or leaves the retained ones behind")
    .option("-r, --reason <text>", "why, recorded in history")
    .action(async (flags) => {
      const r = await load.destroy().destroy(await context(flags, env), { yes: !!flags.yes, approveDataLoss: !!flags.approveDataLoss, reason: flags.reason, ...progress() });
      out(flags, r, () => renderDestroy(r));
    });

  withCommon(program.command("recover").description("clean up after an interrupted operation: a dead holder's lock, pending operations, orphan processes"))
    .option("--force", "also break a lock whose holder cannot be proven gone (taken on another host); only if you know it is dead")
    .action(async (flags) => {
      const r = await load.recover().recover(await context(flags, env), { force: !!flags.force, ...progress() });
      out(flags, r, () => renderRecovery(r));
    });

  const secret = program.command("secret").description("manage encrypted values in version files");
  withCommon(secret.command("set").description("encrypt a value read from stdin into a version file (or stack.yaml)"))
    .option("-v, --version <version>", "the version file to write into")
    .option("--stack-file", "write into stack.yaml's config, shared by every version, instead of a version file")
    .requiredOption("-k, --key <key>", "the config key")
    .option("--path", "the key is a dotted path into structured config, e.g. database.password")
    .action(async (flags) => {
      if (!flags.version === !flags.stackFile) throw new CommanderError(ExitCode.usage, "usage", "secret set writes into one file: --version <version> or --stack-file");
      const value = (await readStdin()).replace(/\r?\n$/, "");
      const result = await load.secret().setSecret(await context(flags, env), { version: flags.version, stackFile: flags.stackFile, key: flags.key, path: flags.path, value });
      out(flags, result, () => `wrote ${result.key} (encrypted) to ${result.file}`);
    });

  withCommon(program.command("adopt").description("make an existing Pulumi stack a stackpin stack: write stacks/<stack>/ from its deployed config (reads the backend only)"))
    .requiredOption("--as <version>", "the version its current config becomes, e.g. v1")
    .requiredOption("--program <program>", "the program that manages it: a path like ./infra/checkout, or a built-in")
    .option("--project <name>", "its Pulumi project (default: Pulumi.yaml's name, else stackpin)")
    .action(async (flags) => {
      const r = await load.adopt().adopt({
        stack: flags.stack,
        as: flags.as,
        program: flags.program,
        project: flags.project,
        projectDir: flags.projectDir,
        backendUrl: flags.backend ?? env.STACKPIN_BACKEND,
        recordBackend: !!(flags.backend ?? env.STACKPIN_BACKEND),
        passphrase: passphraseFromEnv(env),
        pulumiHome: env.PULUMI_HOME,
        pulumi: await findPulumi(env, !!flags.json),
        programs: builtinPrograms,
      });
      out(flags, r, () =>
        [
          `adopted stack ${r.stack} (project ${r.project}, ${r.resources} resources in its state) as ${r.version}, running ${r.program}:`,
          `  ${r.stackFile}`,
          `  ${r.versionFile}: ${r.keys.map((k) => (k.secret ? `${k.key} [secret]` : k.key)).join(", ") || "(no config)"}`,
          `next: \`stackpin preview --stack ${r.stack} --version ${r.version}\` shows no resource change; \`stackpin deploy --stack ${r.stack} --version ${r.version}\` starts its history`,
        ].join("\n"),
      );
    });

  program
    .command("setup")
    .description("find or build the Pulumi CLI (Go build from Pulumi's modules, else PulumiCommand.install)")
    .option("--json", "print one JSON document")
    .action(async (flags) => {
      const cli = await ensurePulumi({ explicit: env.STACKPIN_PULUMI, searchPath: env.PATH, pulumiHome: env.PULUMI_HOME, onProgress: err });
      out(flags, { version: cli.version, source: cli.source, root: cli.root }, () => `Pulumi CLI ${cli.version} (${cli.source}): ${cli.root}`);
    });
  addHelpExamples(program);
  return program;
}

/** stackpin's own version, from its package.json. */
function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(packageRoot(), "package.json"), "utf8")) as { version: string }).version;
}

/** Writes each batch to `<dir>/<batch>.yaml`; returns the paths. */
function writeBatches(dir: string, batches: JobBatch[]): string[] {
  fs.mkdirSync(dir, { recursive: true });
  return batches.map((b) => {
    const file = path.join(dir, `${b.name}.yaml`);
    fs.writeFileSync(file, b.yaml);
    return file;
  });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  const stdin = io().stdin;
  if (!stdin) return "";
  for await (const chunk of stdin) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString("utf8");
}

/** Runs the CLI and resolves to the exit code; never prints a stack trace for a user's mistake. */
export async function main(argv: string[], rawEnv: NodeJS.ProcessEnv): Promise<number> {
  const json = argv.includes("--json");
  try {
    await buildCli(rawEnv).parseAsync(argv, { from: "user" });
    return ExitCode.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.exitCode === 0) return ExitCode.ok;
      if (e.code === "usage") err(`error: ${e.message}`);
      if (json) io().stdout.write(`${JSON.stringify({ error: { code: "usage", message: e.message } })}\n`);
      return ExitCode.usage;
    }
    if ((e instanceof VerificationFailedError || e instanceof AutoRollbackNeedsApprovalError) && !json) {
      const d = e.details as { deploy?: ApplyResult; rollback?: ApplyResult } | undefined;
      if (d?.deploy?.verification) err(renderVerification(d.deploy.verification).join("\n"));
      if (d?.rollback) err(renderApply(d.rollback));
    }
    if (e instanceof FleetIncompleteError && !json) err(renderFleet(e.details as FleetResult));
    // The code, exit code, message and details, as a fleet reports each stack's failure too.
    const report = errorReport(e);
    if (e instanceof StackpinError) {
      err(`error: ${report.message}`);
      if (json) io().stdout.write(`${JSON.stringify({ error: { code: report.code, message: report.message, details: report.details } }, null, 2)}\n`);
    } else {
      err(`internal error: ${report.message}`);
      if (rawEnv.STACKPIN_DEBUG) err((e as Error).stack ?? "");
      if (json) io().stdout.write(`${JSON.stringify({ error: { code: report.code, message: report.message } })}\n`);
    }
    return report.exitCode;
  }
}

/**
 * Runs `stackpin <argv>` in this process with the given streams and environment, resolving to the exit
 * code; the same as the binary, which calls it with the process's own.
 */
export function runCli(argv: string[], cliIo: CliIo): Promise<number> {
  return runIo.run(cliIo, () => main(argv, cliIo.env));
}

if (require.main === module) {
  // This process is the CLI's own: loading the Pulumi SDK may leave out what its programs do not call.
  deferClosureSerializer();
  runCli(process.argv.slice(2), processIo(process.env)).then(
    (code) => {
      process.exitCode = code;
    },
    // main() turns every error into an exit code; should reporting one fail, exit as an internal error, not an unhandled rejection.
    (e: unknown) => {
      process.stderr.write(`internal error: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = ExitCode.internal;
    },
  );
}
