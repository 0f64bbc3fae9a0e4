import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { EngineStack, StateResource } from "../engine/stack";
import type { EnvironmentContext, ProgressOptions } from "../environment";
import { NotReadyError, StackpinError } from "../errors";
import { approvalPolicyOf, approvalsNeeded } from "../policy/approvals";
import { plainConfig } from "../planning/desired-state";
import { updateThatRan } from "../planning/ran-version";
import { Candidate, candidatesOf, Leg, readinessLine, ReadinessReport, TargetReadiness, targetReadiness, legOfFailure } from "../planning/readiness";
import { HistoryEntry, liveState, previousVersion } from "../records/history-record";
import { recordStoreOf, StackRecords } from "../records/ledger";
import { normalizeVersionName } from "../versions/store";
import { planWith, readHistoryAndTags } from "./apply";
import type { Plan } from "./plan";
import type { ReadinessFinding } from "../../programs/types";
import { fileDiffersWarning, readRanSecrets, resolveRollbackTarget, validateTargetEarly } from "./resolve";

/** Options for {@link check}. */
export interface CheckOptions extends ProgressOptions {
  /** One version to check (`v41`, `41`, `previous`); default: the last good version and the previous one. */
  to?: string;
  /** Every version applied successfully before, besides the default ones. */
  all?: boolean;
  /** Do not keep the answer in the stack's records (what `status` shows). Default: kept. */
  noRecord?: boolean;
}

/**
 * Whether each way back still works now, leg by leg, from what is really there: the config that ran is
 * recorded and its secrets decrypt with the stack's secrets provider, the release's artifacts exist, the
 * database path holds (a restore: the base backup and the WAL archive up to now), the secret generations
 * it keeps, the provider plugins the stack uses are installed, the approvals it needs can be verified
 * here, the freeze; and the engine previews it. Changes nothing in the stack (the answer is kept in
 * stackpin's records for `status`). Raises {@link NotReadyError} (exit 19) when a way back asked about
 * cannot be taken now; its details hold the whole report.
 */
export async function check(ctx: EnvironmentContext, options: CheckOptions = {}): Promise<ReadinessReport> {
  if (options.to) validateTargetEarly(ctx, options.to);
  // The history and records are read without the engine (no passphrase needed); the engine, which opens the
  // stack's secrets, only for the previews: when it cannot open them, that is the secrets leg's answer.
  const reader = await ctx.openReader();
  let engine: EngineStack | undefined;
  try {
    const { history, records } = await readHistoryAndTags(reader);
    const asked = options.to ? (options.to === "previous" ? previousVersion(history) ?? "previous" : normalizeVersionName(options.to)) : undefined;
    const candidates = candidatesOf(history, { to: asked, all: options.all });
    let unopened: StackpinError | undefined;
    try {
      engine = await ctx.openEngine({ create: false });
    } catch (err) {
      if (!(err instanceof StackpinError) || legOfFailure(err.code) !== "secrets") throw err;
      unopened = err;
    }
    const recorded = records.live?.outputs && records.live.updateId === history[0]?.updateId ? records.live.outputs : {};
    const outputs = Object.fromEntries(Object.entries(engine ? await engine.outputs({ reuse: true }) : recorded).map(([k, o]) => [k, o.value]));
    const plugins: Leg = engine
      ? pluginLeg((await engine.checkpoint({ reuse: true })).resources, ctx.pulumiHome)
      : { leg: "plugins", ok: undefined, detail: `not checked: the stack could not be opened (${firstLine(unopened!)})` };
    const targets: TargetReadiness[] = [];
    for (const c of candidates) {
      options.onProgress?.({ type: "phase", phase: "check", message: `checking the way back to ${c.version} (${c.as.join(", ")})` });
      targets.push(await checkOne(ctx, engine ?? unopened!, history, records, outputs, plugins, c, options));
    }
    const live = liveState(history);
    const report: ReadinessReport = {
      stack: ctx.stack.name,
      ...(live.version ? { live: live.version } : {}),
      revision: history[0]?.revision ?? 0,
      checkedAt: new Date().toISOString(),
      targets,
      ready: targets.length > 0 && targets.every((t) => t.ready),
    };
    if (!options.noRecord) {
      await recordStoreOf(reader).update((r) => {
        r.readiness = report;
      });
    }
    if (!report.ready) {
      const broken = targets.filter((t) => !t.ready);
      throw new NotReadyError(
        targets.length === 0
          ? `stack ${ctx.stack.name} has no version to roll back to: nothing was applied before ${live.version ?? "(nothing live)"}`
          : `the way back is not ready on ${ctx.stack.name}: ${broken.map((t) => readinessLine(t)).join("; ")}`,
        report,
      );
    }
    return report;
  } finally {
    engine?.close();
    reader.close();
  }
}

async function checkOne(
  ctx: EnvironmentContext,
  /** The engine to preview with, or why the stack's secrets could not be opened. */
  engine: EngineStack | StackpinError,
  history: HistoryEntry[],
  records: StackRecords,
  outputs: Record<string, unknown>,
  plugins: Leg,
  c: Candidate,
  options: ProgressOptions,
): Promise<TargetReadiness> {
  const started = Date.now();
  const legs: Leg[] = [];
  const done = (window?: TargetReadiness["window"]) => targetReadiness(c, legs, { checkedAt: new Date().toISOString(), durationMs: Date.now() - started }, window);
  const notChecked = (because: string, ...names: Leg["leg"][]) => {
    for (const leg of names) if (!legs.some((l) => l.leg === leg)) legs.push({ leg, ok: undefined, detail: `not checked: ${because}` });
  };
  legs.push(freezeLeg(records), plugins);

  // The config that ran, with its secrets' ciphertexts from the backend's own record of that update.
  let ran: ReturnType<typeof resolveRollbackTarget>;
  try {
    await readRanSecrets(ctx, history, c.version);
    ran = resolveRollbackTarget(ctx, c.version, history);
  } catch (err) {
    if (!(err instanceof StackpinError)) throw err;
    // A version file that no longer validates may say only that the world changed under it (a release
    // artifact gone): the program's own check of what ran names that leg instead.
    const found = err.code === "invalid-version-file" ? (await programFindings(ctx, recordedPlainConfig(ctx, history, c.version), outputs, c.version)).filter((f) => !f.ok) : [];
    for (const f of found) legs.push({ leg: f.leg, ok: false, detail: f.detail });
    if (found.length) legs.push({ leg: "config", ok: undefined, detail: `not checked: ${firstLine(err)}` });
    else legs.push({ leg: legOfFailure(err.code), ok: false, detail: firstLine(err) });
    notChecked("the config that ran cannot be read", "config", "secrets", "artifacts", "database", "generations", "approvals", "engine");
    return done();
  }
  const update = updateThatRan(history, ran.version.version);
  const secretKeys = Object.entries(update?.config ?? {}).filter(([, v]) => v.secret);
  const unrecorded = secretKeys.filter(([, v]) => !v.value).map(([k]) => k);
  legs.push({ leg: "config", ok: true, detail: `the config that ran at revision ${ran.revision} is recorded (${Object.keys(update?.config ?? {}).length} keys)` });
  if (unrecorded.length) legs.push({ leg: "secrets", ok: false, detail: `the ciphertext of ${unrecorded.join(", ")} as it ran is not in the backend's record of revision ${ran.revision}` });

  // The engine's preview of the rollback: it decrypts the config and runs the program's checks before an apply.
  let plan: Plan | undefined;
  try {
    if (engine instanceof StackpinError) throw engine;
    plan = await planWith(ctx, engine, "rollback", ran.version, history, { onProgress: undefined }, {}, undefined, fileDiffersWarning(ran));
  } catch (err) {
    if (!(err instanceof StackpinError)) throw err;
    const leg = legOfFailure(err.code);
    if (!legs.some((l) => l.leg === leg)) legs.push({ leg, ok: false, detail: firstLine(err) });
    if (leg !== "engine") legs.push({ leg: "engine", ok: undefined, detail: `not checked to the end: the preview stopped at the ${leg} leg` });
  }
  if (plan) {
    if (!legs.some((l) => l.leg === "secrets")) {
      legs.push({
        leg: "secrets",
        ok: true,
        detail: secretKeys.length
          ? `${secretKeys.length} secret value${secretKeys.length === 1 ? "" : "s"} (${secretKeys.map(([k]) => k).join(", ")}) decrypt with the stack's secrets provider (${ctx.stack.settings.secretsProvider})`
          : `no secret values in the config; the stack's secrets provider (${ctx.stack.settings.secretsProvider}) opens it`,
      });
    }
    legs.push(generationsLeg(plan), approvalsLeg(ctx, plan), {
      leg: "engine",
      ok: true,
      detail: `the engine previews the rollback ${plan.from ?? "(nothing)"} -> ${plan.to}: ${plan.resourceChanges.length ? `${plan.resourceChanges.length} resource change${plan.resourceChanges.length === 1 ? "" : "s"}` : "no resource changes"}`,
    });
  } else {
    notChecked("the preview did not finish", "secrets", "generations", "approvals");
  }

  // What the program can see of the world: the artifacts, and the restore path when the rollback restores.
  const restore = plan?.database?.restore;
  let window: TargetReadiness["window"];
  const findings = await programFindings(ctx, { ...ctx.stack.settings.config, ...plainConfig(ran.version) }, outputs, ran.version.version, restore);
  for (const f of findings) {
    if (f.window) window = f.window;
    const at = legs.findIndex((l) => l.leg === f.leg);
    if (at >= 0 && legs[at].ok === false) continue;
    if (at >= 0) legs.splice(at, 1);
    legs.push({ leg: f.leg, ok: f.ok, detail: f.detail });
  }
  if (!legs.some((l) => l.leg === "database")) legs.push(databaseLeg(plan));
  if (!legs.some((l) => l.leg === "artifacts")) {
    legs.push({ leg: "artifacts", ok: true, detail: `the ${ctx.stack.settings.program} program names no artifacts to check; the engine's preview is its check` });
  }
  const answer = done(window);
  options.onProgress?.({ type: "phase", phase: "check", message: readinessLine(answer) });
  return answer;
}

/** What the program's readiness check finds (none when the program has none); its own failure is a finding too. */
async function programFindings(
  ctx: EnvironmentContext,
  config: Record<string, unknown>,
  outputs: Record<string, unknown>,
  version: string,
  restore?: { snapshot: string; time: string; source: string },
): Promise<ReadinessFinding[]> {
  if (!ctx.program.checkReadiness) return [];
  return ctx.program
    .checkReadiness({
      context: { stackName: ctx.stack.name, stateDir: ctx.stateDir },
      config,
      outputs,
      version,
      ...(restore ? { restore: { snapshot: restore.snapshot, time: restore.time, source: restore.source } } : {}),
    })
    .catch((err: Error): ReadinessFinding[] => [{ leg: "artifacts", ok: false, detail: `the program's check failed: ${err.message.split("\n")[0]}` }]);
}

/** The plain (not secret) config an update of `version` ran with, keys unqualified for the project's own: read from history alone. */
function recordedPlainConfig(ctx: EnvironmentContext, history: HistoryEntry[], version: string): Record<string, unknown> {
  const out: Record<string, unknown> = { ...ctx.stack.settings.config };
  for (const [key, v] of Object.entries(updateThatRan(history, version)?.config ?? {})) {
    if (v.secret) continue;
    const name = key.startsWith(`${ctx.stack.project}:`) ? key.slice(ctx.stack.project.length + 1) : key;
    out[name] = v.objectValue ?? v.value;
  }
  return out;
}

function firstLine(err: Error): string {
  return err.message.split("\n")[0];
}

/** The database path of a previewed rollback, as the plan decided it (a restore's window is the program's). */
function databaseLeg(plan: Plan | undefined): Leg {
  if (!plan) return { leg: "database", ok: undefined, detail: "not checked: the preview did not finish" };
  const db = plan.database;
  if (!db) return { leg: "database", ok: true, detail: "the version declares no database" };
  const note = plan.notes.find((n) => /database|schema|down migration|snapshot/.test(n));
  return { leg: "database", ok: true, detail: note ?? `${db.policy}: schema ${db.schemaBefore} -> ${db.schemaAfter}` };
}

function generationsLeg(plan: Plan): Leg {
  const entries = Object.entries(plan.secretGenerations.applied);
  if (!entries.length) return { leg: "generations", ok: true, detail: "no rotated secrets" };
  const below = entries.filter(([k, g]) => (plan.secretGenerations.live[k] ?? 0) > g);
  if (below.length) return { leg: "generations", ok: false, detail: `the plan lowers ${below.map(([k]) => k).join(", ")}: a leaked secret would come back` };
  return { leg: "generations", ok: true, detail: `keeps ${entries.map(([k, g]) => `${k} at generation ${g}`).join(", ")} (never lower than live)` };
}

function approvalsLeg(ctx: EnvironmentContext, plan: Plan): Leg {
  const policy = approvalPolicyOf(ctx);
  const needed = approvalsNeeded(policy, "rollback", plan.database?.policy);
  if (!needed.length) return { leg: "approvals", ok: true, detail: "none needed" };
  const what = needed.map((n) => `${n.category} (required by the ${n.by.join(" and ")} policy)`).join(", ");
  if (!policy.signed) return { leg: "approvals", ok: true, detail: `needs ${what}: anyone named with --approve` };
  const signers = policy.allowedSigners;
  if (!signers || !fs.existsSync(signers)) {
    return { leg: "approvals", ok: false, detail: `needs ${what}, signed, but this machine cannot verify signatures: the allowed signers file ${signers ?? "(none named)"} is missing` };
  }
  return { leg: "approvals", ok: true, detail: `needs ${what}, signed${policy.approvers.length ? ` by one of ${policy.approvers.join(", ")}` : ""}; this machine verifies them with ${signers}` };
}

function freezeLeg(records: StackRecords): Leg {
  const f = records.freeze;
  return f
    ? { leg: "freeze", ok: true, detail: `deploys are frozen (${f.reason}, by ${f.by} since ${f.at}); rollbacks are allowed` }
    : { leg: "freeze", ok: true, detail: "no freeze" };
}

/**
 * The provider plugins the stack's resources were made with (its provider resources' versions), each
 * installed in `PULUMI_HOME` or on the `PATH` (an ambient `pulumi-resource-<name>`). The Node.js dynamic
 * provider runs inside stackpin and needs none.
 */
export function pluginLeg(resources: StateResource[], pulumiHome: string | undefined): Leg {
  const providers = new Map<string, string | undefined>();
  for (const r of resources) {
    const m = /^pulumi:providers:(.+)$/.exec(r.type);
    if (!m || m[1] === "pulumi-nodejs") continue;
    providers.set(m[1], typeof r.outputs.version === "string" ? r.outputs.version : undefined);
  }
  if (!providers.size) return { leg: "plugins", ok: true, detail: "no provider plugins: the stack's resources are the program's own" };
  const home = path.join(pulumiHome ?? path.join(os.homedir(), ".pulumi"), "plugins");
  const found: string[] = [];
  const missing: string[] = [];
  for (const [name, version] of providers) {
    const installed = version ? path.join(home, `resource-${name}-v${version}`) : undefined;
    const ambient = (process.env.PATH ?? "").split(path.delimiter).map((d) => path.join(d, `pulumi-resource-${name}`)).find(executable);
    if (installed && fs.existsSync(installed) && !fs.existsSync(`${installed}.partial`)) found.push(`${name} ${version} (${installed})`);
    else if (ambient) found.push(`${name}${version ? ` ${version}` : ""} (${ambient})`);
    else missing.push(`${name}${version ? ` ${version}` : ""}`);
  }
  return missing.length
    ? { leg: "plugins", ok: false, detail: `provider plugin${missing.length === 1 ? "" : "s"} ${missing.join(", ")} not installed (in ${home} or on the PATH): \`pulumi plugin install resource ${missing[0]}\`` }
    : { leg: "plugins", ok: true, detail: `installed: ${found.join(", ")}` };
}

function executable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
