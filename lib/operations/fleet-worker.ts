/**
 * One stack's preview or rollback for a fleet rollback, in a process of its own (see `processRunner` in
 * `fleet.ts`, which forks this module): Pulumi's Node.js runtime keeps global state, and the Automation API
 * runs one inline program per process at a time, so a fleet's stacks go back in parallel as processes.
 *
 * The process takes one {@link WorkerRequest} over IPC, opens the stack as the CLI does (the environment
 * it was given: passphrase, Pulumi CLI, backend, actor, this machine's policy), runs the library's
 * preview or rollback, sends each progress event and then the outcome back, and exits. Like the CLI, it
 * is an entry point: it hands the library the built-in programs.
 */
import { builtinPrograms } from "../../programs";
import type { ProgressEvent } from "../environment";
import { envSchema, locateOptionsFromEnv, openEnvironment, openOptionsFromEnv } from "../environment";
import { deferClosureSerializer } from "../engine/closure-serializer";
import { locatePulumi } from "../engine/pulumi-cli";
import { errorReport, ExitCode, StackpinError } from "../errors";
import type { PreviewOutcome, RollbackOutcome, WorkerMessage, WorkerRequest } from "./fleet";
import { expectPlan, previewRollback, rollback } from "./rollback";

/** Runs one request; every failure is an outcome, reported as the CLI reports it. */
async function runRequest(message: WorkerRequest, onProgress: (event: ProgressEvent) => void): Promise<PreviewOutcome | RollbackOutcome> {
  try {
    const vars = envSchema.parse(process.env);
    const ctx = await openEnvironment({
      ...openOptionsFromEnv(vars),
      requirePassphrase: true,
      stack: message.request.stack,
      projectDir: message.projectDir,
      backendUrl: message.backendUrl ?? vars.STACKPIN_BACKEND,
      pulumi: await locatePulumi(locateOptionsFromEnv(vars, message.projectDir)),
      programs: builtinPrograms,
    });
    if (message.op === "preview") return { ok: true, plan: await previewRollback(ctx, { to: message.request.to, onProgress }) };
    const r = message.request;
    const result = await rollback(ctx, {
      to: r.to,
      reason: r.reason,
      force: false,
      confirm: expectPlan(ctx.stack.name, r.expectPlan),
      approveDataLoss: !!r.approveDataLoss,
      approvals: { approvers: r.approvers ?? [], files: [] },
      onProgress,
    });
    return { ok: true, result };
  } catch (e) {
    if (process.env.STACKPIN_DEBUG && !(e instanceof StackpinError)) process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    return { ok: false, failure: errorReport(e) };
  }
}

if (require.main === module && process.send) {
  // A process of stackpin's own, as the CLI's is: loading the Pulumi SDK may leave out what its programs do not call.
  deferClosureSerializer();
  const send = (m: WorkerMessage, done?: () => void) => process.send!(m, undefined, undefined, done);
  const finish = (outcome: PreviewOutcome | RollbackOutcome) => {
    process.exitCode = outcome.ok ? ExitCode.ok : outcome.failure.exitCode;
    // Disconnected once the outcome is out: the process then ends as the CLI does, when its work is done.
    send({ type: "outcome", outcome }, () => process.disconnect());
  };
  process.once("message", (request: WorkerRequest) => {
    void runRequest(request, (event) => send({ type: "progress", event })).then((outcome) => {
      try {
        finish(outcome);
      } catch (e) {
        // An outcome that cannot be serialized is a bug here, and said so rather than lost.
        finish({ ok: false, failure: { code: "internal", exitCode: ExitCode.internal, message: `the outcome of stack ${request.request.stack}'s ${request.op} cannot be sent: ${(e as Error).message}` } });
      }
    });
  });
}
