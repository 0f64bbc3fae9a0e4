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
  const [judged, checkpoint] = await Promise.all([engine.inFlightMark(), engine.checkpoint({ reuse: true })]);
  let mark = judged;
  const refuse = (what: string, detail: string, canForce: boolean, expiresAt?: string) => {
    throw new ConcurrentOperationError(stack, {
      holder: `${what}: ${detail}`,
      hint: canForce ? `if you know it is gone, run \`stackpin recover --stack ${stack} --force\`` : expiresAt ? `a live operation is never broken, --force included` : undefined,
      expiresAt,
    });
  };
  // A mark whose update has ended in the backend's history (its process was killed while clearing it, or
  // the clearing write was lost) is left over, not an interruption: it is cleared, that mark and no other.
  if (mark && mark.liveness.state !== "dead") {
    const ended = await engine.markEnded(mark);
    if (ended) {
      if (await engine.clearInFlightMark(mark)) {
        found.push(`a mark of ${mark.what}, whose update ended as revision ${ended.revision} (${ended.result})`);
        actions.push(`removed that mark: its update had ended (${mark.liveness.detail})`);
      }
      mark = undefined;
    }
  }
  if (mark && mark.liveness.state === "alive") refuse(`${mark.what} is running`, mark.liveness.detail, false, mark.liveness.expiresAt);
  if (mark && mark.liveness.state === "unknown" && !options.force) refuse(`${mark.what} may be running`, mark.liveness.detail, true);
  const previews = await engine.previewLeases();
  const locks = await engine.locks(mark, previews);
  for (const lock of locks) {
    if (lock.liveness.state === "alive") refuse("Pulumi's lock is held", lock.liveness.detail, false, lock.liveness.expiresAt);
    if (lock.liveness.state === "unknown" && !options.force) refuse("Pulumi's lock is held", lock.liveness.detail, true);
  }
  // A killed preview leaves its lease and Pulumi's lock, and changed nothing: they are removed, no refresh.
  const gonePreviews = previews.filter((p) => p.liveness.state === "dead");
  const ofPreview = (l: (typeof locks)[number]) => previews.some((p) => l.of !== undefined && (l.of as InFlightMark).id === p.id);
  const previewOnly = mark === undefined && checkpoint.pending.length === 0 && engine.repairedWrites.length === 0 && locks.every(ofPreview);
  const interruptedUpdate = locks.length > 0 || checkpoint.pending.length > 0 || mark !== undefined || engine.repairedWrites.length > 0 || gonePreviews.length > 0;
  if (!interruptedUpdate) {
    if (actions.length) say(options, `cleaned up after a stopped stackpin process on ${stack}:\n    ${[...found, ...actions].join("\n    ")}`);
    return report(stack, found, actions, undefined);
  }

  const interrupted = previewOnly ? { op: "preview", what: gonePreviews[0]?.what, since: gonePreviews[0]?.since } : describe(mark);
  const summary = `recovered after an interrupted ${interrupted.op}${arrow(interrupted)}`;
  if (mark) found.push(`${mark.what} started at ${mark.since} and never ended (${mark.liveness.detail})`);
  for (const p of gonePreviews) found.push(`the lease of ${p.what}, started at ${p.since} (${p.liveness.detail})`);
  for (const lock of locks) found.push(`Pulumi's lock ${lock.file} (${lock.liveness.detail})`);
  if (checkpoint.pending.length) {
    found.push(`${checkpoint.pending.length} pending operation(s) in the checkpoint: ${checkpoint.pending.map((p) => `${p.type} ${p.urn.split("::").pop()}`).join(", ")}`);
  }
  say(options, `found an interrupted ${interrupted.op}${arrow(interrupted)} on ${stack}:\n    ${found.join("\n    ")}`);

  // The recovery holds the stack under its own mark, which replaces the mark judged above (and only it:
  // a mark written since is judged afresh). Processes are reconciled before that mark is cleared, so an
  // operation can start only after the recovery is done with the stack.
  const breakLocks = async () => {
    for (const lock of locks) {
      await engine.breakLock(lock);
      actions.push(`deleted the lock ${lock.file} of pid ${lock.holder.pid} on ${lock.holder.hostname} (only that one; other locks would stay)`);
    }
    for (const p of gonePreviews) {
      await engine.removePreviewLease(p);
      actions.push(`removed the lease of ${p.what} (id ${p.id})`);
    }
  };
  if (previewOnly) {
    await breakLocks();
    for (const a of actions) say(options, a);
    await audit(ctx, engine, { op: "recover", result: "succeeded", detail: `${summary}: ${actions.join("; ")}`.slice(0, 600) }, options);
    return report(stack, found, actions, interrupted, summary);
  }
  await engine.holding("recover", `stackpin recover: ${summary} by ${ctx.actor}`, mark, async () => {
    await breakLocks();
    if (mark) actions.push(`replaced the mark of ${mark.what} (${mark.id ? `id ${mark.id}` : `pid ${mark.pid}`}) with the recovery's own, cleared when it is done`);
    say(options, `refreshing ${stack} from what actually exists, dropping pending creates`);
    await engine.refreshClearingPendingCreates(`stackpin recover: ${summary} by ${ctx.actor}`, options.onEngineEvent);
    actions.push("refreshed the state from what exists, dropping pending creates (recorded in history)");
    const reconcile = ctx.program.reconcile;
    if (reconcile) {
      const { resources } = await engine.checkpoint();
      const stopped = await reconcile({ stackName: stack, stateDir: ctx.stateDir }, resources);
      actions.push(...(stopped.length ? stopped : ["every process the stack started is recorded in its state"]));
    }
  });
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
