import type { EnvironmentContext, ProgressOptions } from "../environment";
import { progressBridge } from "../environment";
import type { EngineStack } from "../engine/stack";
import { ApplyFailedError, ApprovalRequiredError, EngineFailedError, engineErrorLines, NotConfirmedError } from "../errors";
import { encodeRecord } from "../history-record";
import { recordStoreOf } from "../ledger";
import { audit, auditFailure } from "../trail";
import { recoverInterrupted } from "./recover";

/** Options for {@link destroy}. */
export interface DestroyOptions extends ProgressOptions {
  /** Must be true: destroying stops the service and removes everything the stack owns. */
  yes: boolean;
  /** Required when the stack holds snapshots or restored databases: destroy deletes them. */
  approveDataLoss?: boolean;
  reason?: string;
}

/** The snapshots and restored databases the stack holds, from its outputs (every program exports them). */
async function heldData(engine: EngineStack): Promise<string[]> {
  const outputs = await engine.outputs({ reuse: true });
  const snapshots = Object.keys((outputs.databaseSnapshots?.value ?? {}) as Record<string, unknown>).map((n) => `snapshot ${n}`);
  const instances = (outputs.databaseInstances?.value ?? {}) as Record<string, { source?: string }>;
  const restores = Object.entries(instances).filter(([, i]) => i.source).map(([n]) => `restored database ${n}`);
  return [...snapshots, ...restores].sort();
}

/**
 * Removes every resource the stack owns (processes, files, cloud resources), restored databases
 * included. When the stack holds snapshots or restored databases it refuses, changing nothing, unless
 * `approveDataLoss` is given. The stack and its history stay in the backend; the next deploy starts it again.
 */
export async function destroy(ctx: EnvironmentContext, options: DestroyOptions): Promise<{ stack: string; durationMs: number }> {
  if (!options.yes) throw new NotConfirmedError(ctx.stack.name, "destroy");
  const started = Date.now();
  const engine = await ctx.openEngine({ create: false });
  try {
    await recoverInterrupted(ctx, engine, options);
    const held = await heldData(engine);
    if (held.length && !options.approveDataLoss) {
      const refused = new ApprovalRequiredError(ctx.stack.name, `destroying deletes ${held.join(", ")}`, "--approve-data-loss");
      await auditFailure(ctx, engine, { op: "destroy" }, refused, options);
      throw refused;
    }
    options.onProgress?.({ type: "phase", phase: "apply", message: `destroying everything stack ${ctx.stack.name} owns` });
    const message = encodeRecord({ op: "destroy", to: "(nothing)", who: ctx.actor, reason: options.reason });
    try {
      await engine.destroy(message, progressBridge(options));
    } catch (caught) {
      // The destroy ran and stopped part-way: not a refusal, and not "nothing applied".
      const err = caught instanceof EngineFailedError
        ? new ApplyFailedError(ctx.stack.name, "(destroy)", engineErrorLines(caught.detail), { cause: caught.cause, what: `destroying stack ${ctx.stack.name} failed` })
        : caught;
      await auditFailure(ctx, engine, { op: "destroy" }, err, options);
      throw err;
    }
    await recordStoreOf(engine).update((r) => {
      r.live = { version: "(destroyed)", appliedBy: ctx.actor.slice(0, 256), verifiedVersion: r.live?.verifiedVersion, at: new Date().toISOString() };
    });
    await audit(ctx, engine, { op: "destroy", result: "succeeded", detail: options.reason }, options);
    return { stack: ctx.stack.name, durationMs: Date.now() - started };
  } finally {
    engine.close();
  }
}
