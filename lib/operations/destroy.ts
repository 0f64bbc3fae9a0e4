import type { EnvironmentContext, ProgressOptions } from "../environment";
import { progressBridge } from "../environment";
import { NotConfirmedError } from "../errors";
import { encodeRecord } from "../history-record";
import { audit, auditFailure } from "../trail";
import { recoverInterrupted } from "./recover";

/** Options for {@link destroy}. */
export interface DestroyOptions extends ProgressOptions {
  /** Must be true: destroying stops the service and removes everything the stack owns. */
  yes: boolean;
  reason?: string;
}

/**
 * Removes every resource the stack owns (processes, files, cloud resources). The stack and its history
 * stay in the backend; the next deploy starts it again.
 */
export async function destroy(ctx: EnvironmentContext, options: DestroyOptions): Promise<{ stack: string; durationMs: number }> {
  if (!options.yes) throw new NotConfirmedError(ctx.stack.name, "destroy");
  const started = Date.now();
  const engine = await ctx.openEngine({ create: false });
  try {
    await recoverInterrupted(ctx, engine, options);
    options.onProgress?.({ type: "phase", phase: "apply", message: `destroying everything stack ${ctx.stack.name} owns` });
    const message = encodeRecord({ op: "destroy", to: "(nothing)", who: ctx.actor, reason: options.reason });
    try {
      await engine.destroy(message, progressBridge(options));
    } catch (err) {
      await auditFailure(ctx, engine, { op: "destroy" }, err, options);
      throw err;
    }
    await engine.setTags({ "stackpin:version": "(destroyed)" });
    await audit(ctx, engine, { op: "destroy", result: "succeeded", detail: options.reason }, options);
    return { stack: ctx.stack.name, durationMs: Date.now() - started };
  } finally {
    engine.close();
  }
}
