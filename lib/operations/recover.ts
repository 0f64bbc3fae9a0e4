import type { EngineStack, InFlightMark } from "../engine/stack";
import type { EnvironmentContext, ProgressOptions } from "../environment";
import { ConcurrentOperationError } from "../errors";
import { audit } from "../records/trail";

/** Options for {@link recover} and `recoverInterrupted`. */
export interface RecoverOptions extends ProgressOptions {
  /**
   * Break a lock (or in-flight mark) whose holder cannot be proven gone, e.g. one taken on another host.
   * Only for a person who knows that operation is dead: a live one would lose its work.
   */
  force?: boolean;
}

/** The operation a recovery found interrupted, as its in-flight mark named it. */
export interface InterruptedOperation {
  /** `deploy`, `rollback`, `restore`, `destroy`, or `update` when no mark said. */
  op: string;
  from?: string;
  to?: string;
  /** The mark as written: `stackpin rollback v2 -> v1 by alice: why`. */
  what?: string;
  /** When it started, if known. */
  since?: string;
}

/** What a recovery found and did. Nothing found: `recovered` is false and the stack was not touched. */
export interface RecoveryReport {
  stack: string;
  recovered: boolean;
  /** The interrupted operation, when the backend showed one (a lock, pending operations, an in-flight mark). */
  interrupted?: InterruptedOperation;
  /** One line per thing found. */
  found: string[];
  /** One line per thing done. */
  actions: string[];
  /** One sentence for history, the audit trail and incident records. */
  summary: string;
}

/**
 * Finds what an operation killed mid-way left behind, and cleans it up. In order:
 * 1. scratch workspaces whose stackpin process is gone: the engine plugins still running in them are
 *    stopped and the workspaces removed;
 * 2. Pulumi's locks on the stack: a live holder's is refused with {@link ConcurrentOperationError}
 *    (exit 7), as is one whose holder cannot be judged (another host) unless `force`; a dead holder's lock
 *    file, and only that one, is deleted (never `pulumi cancel`, which deletes a live operation's lock too);
 * 3. stackpin's in-flight mark (an update that started and never ended), judged the same way;
 * 4. pending operations in the checkpoint.
 * When 2-4 found an interrupted update: a refresh that clears pending creates (recorded in history), the
 * program's reconciliation (stops processes the state does not own), and an audit entry. Refusals change
 * nothing in the backend.
 */
export async function recoverInterrupted(ctx: EnvironmentContext, engine: EngineStack, options: RecoverOptions = {}): Promise<RecoveryReport> {
  const stack = ctx.stack.name;
  const found: string[] = [];
  const actions: string[] = [];
  if (engine.repairedWrites.length) {
    found.push("backend files that a killed write left unreadable (`failed to load checkpoint: EOF`)");
    actions.push(...engine.repairedWrites);
  }
  for (const w of await engine.sweepStaleWorkspaces()) {
    found.push(`a scratch workspace of a stackpin process that is gone (${w.liveness.detail})`);
    actions.push(`stopped the engine plugins left running in ${w.dir} and removed it`);
  }

  // The checkpoint read when the stack was opened, and the mark from the records document: no CLI call.
  const [mark, checkpoint] = await Promise.all([engine.inFlightMark(), engine.checkpoint({ reuse: true })]);
  const locks = engine.locks();
  const refuse = (what: string, detail: string, canForce: boolean) => {
    throw new ConcurrentOperationError(stack, {
      holder: `${what}: ${detail}`,
      hint: canForce ? `if you know it is gone, run \`stackpin recover --stack ${stack} --force\`` : undefined,
    });
  };
  for (const lock of locks) {
    if (lock.liveness.state === "alive") refuse("Pulumi's lock is held", lock.liveness.detail, false);
    if (lock.liveness.state === "unknown" && !options.force) refuse("Pulumi's lock is held", lock.liveness.detail, true);
  }
  // A mark whose update did end (killed while clearing it, or a removal the CLI lost: seen after a
  // stack's first update) is history, not an interruption: left alone, and overwritten by the next update.
  const markEnded = mark ? await endedAfter(engine, mark) : false;
  if (mark && !markEnded && mark.liveness.state === "alive") refuse(`${mark.what} is running`, mark.liveness.detail, false);
  if (mark && !markEnded && mark.liveness.state === "unknown" && !options.force) refuse(`${mark.what} may be running`, mark.liveness.detail, true);
  const interruptedUpdate = locks.length > 0 || checkpoint.pending.length > 0 || (mark !== undefined && !markEnded) || engine.repairedWrites.length > 0;
  if (!interruptedUpdate) {
    if (actions.length) say(options, `cleaned up after a stopped stackpin process on ${stack}:\n    ${[...found, ...actions].join("\n    ")}`);
    return report(stack, found, actions, undefined);
  }

  const interrupted = describe(markEnded ? undefined : mark);
  const summary = `recovered after an interrupted ${interrupted.op}${arrow(interrupted)}`;
  if (mark && !markEnded) found.push(`${mark.what} started at ${mark.since} and never ended (${mark.liveness.detail})`);
  for (const lock of locks) found.push(`Pulumi's lock ${lock.file} (${lock.liveness.detail})`);
  if (checkpoint.pending.length) {
    found.push(`${checkpoint.pending.length} pending operation(s) in the checkpoint: ${checkpoint.pending.map((p) => `${p.type} ${p.urn.split("::").pop()}`).join(", ")}`);
  }
  say(options, `found an interrupted ${interrupted.op}${arrow(interrupted)} on ${stack}:\n    ${found.join("\n    ")}`);

  for (const lock of locks) {
    engine.breakLock(lock);
    actions.push(`deleted the lock file of ${lock.holder.pid}@${lock.holder.hostname} (only that one; other locks would stay)`);
  }
  say(options, `refreshing ${stack} from what actually exists, dropping pending creates`);
  await engine.refreshClearingPendingCreates(`stackpin recover: ${summary} by ${ctx.actor}`, options.onEngineEvent);
  actions.push("refreshed the state from what exists, dropping pending creates (recorded in history)");
  if (mark && !markEnded) {
    await engine.clearInFlightMark();
    actions.push("removed the in-flight mark");
  }
  const reconcile = ctx.program.reconcile;
  if (reconcile) {
    const { resources } = await engine.checkpoint();
    const stopped = await reconcile({ stackName: stack, stateDir: ctx.stateDir }, resources);
    actions.push(...(stopped.length ? stopped : ["every process the stack started is recorded in its state"]));
  }
  for (const a of actions) say(options, a);
  const result = report(stack, found, actions, interrupted, summary);
  await audit(ctx, engine, { op: "recover", from: interrupted.from, to: interrupted.to, result: "succeeded", detail: `${summary}: ${actions.join("; ")}`.slice(0, 600) }, options);
  return result;
}

/**
 * `stackpin recover --stack S`: recovers from an interrupted operation without starting another one.
 * On a healthy stack it says there was nothing to recover and changes nothing. Finishing the interrupted
 * operation is left to its own command (re-run it), which the report names.
 */
export async function recover(ctx: EnvironmentContext, options: RecoverOptions = {}): Promise<RecoveryReport> {
  const engine = await ctx.openEngine({ create: false });
  try {
    return await recoverInterrupted(ctx, engine, options);
  } finally {
    engine.close();
  }
}

function say(options: ProgressOptions, message: string): void {
  options.onProgress?.({ type: "phase", phase: "recover", message });
}

function arrow(i: InterruptedOperation): string {
  return i.to ? ` ${i.from ? `${i.from} -> ` : ""}${i.to}` : "";
}

/** Reads op, from and to back from the mark's first line (`stackpin rollback v2 -> v1 by alice: why`). */
function describe(mark: InFlightMark | undefined): InterruptedOperation {
  const m = mark && /^stackpin (\w+) (?:(\S+) -> )?(\S+) by /.exec(mark.what);
  if (!mark || !m) return { op: "update", what: mark?.what, since: mark?.since };
  return { op: m[1], from: m[2], to: m[3] === "(nothing)" ? undefined : m[3], what: mark.what, since: mark.since };
}

async function endedAfter(engine: EngineStack, mark: InFlightMark): Promise<boolean> {
  const since = Date.parse(mark.since);
  const newest = (await engine.history())[0];
  return !!newest && !Number.isNaN(since) && Date.parse(String(newest.startTime)) >= since - 1_000;
}

function report(stack: string, found: string[], actions: string[], interrupted?: InterruptedOperation, summary?: string): RecoveryReport {
  return {
    stack,
    recovered: actions.length > 0,
    interrupted,
    found,
    actions,
    summary: summary ?? (actions.length ? "cleaned up after a stopped stackpin process; no update was interrupted" : "nothing to recover"),
  };
}
