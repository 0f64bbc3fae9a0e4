import type { EnvironmentContext, ProgressOptions } from "../environment";
import { readHistory, planWith } from "./apply";
import type { Plan } from "./plan";
import { fileDiffersWarning, readRanSecrets, resolveRollbackTarget, resolveTarget, validateTargetEarly } from "./resolve";

/** Options for {@link preview}. */
export interface PreviewOptions extends ProgressOptions {
  /** The version to preview (`v41`, `41`, or for rollbacks `previous`). */
  version: string;
  /** Whether this previews a deploy or a rollback; only changes the wording and warnings. Default deploy. */
  op?: Plan["op"];
}

/**
 * Shows what applying a version would do: the config diff against the live version and the engine's
 * planned resource changes. The stack's resources and history are not changed, a stack never deployed is
 * not created in the backend, and `stack.yaml` is not written.
 */
export async function preview(ctx: EnvironmentContext, options: PreviewOptions): Promise<Plan> {
  const op = options.op ?? "deploy";
  validateTargetEarly(ctx, options.version);
  // A stack never deployed is previewed on a scratch copy: a preview creates nothing, anywhere.
  const { engine, close } = await ctx.openForPlan();
  try {
    const history = await readHistory(engine);
    if (op === "rollback") {
      // A rollback re-applies what ran; the preview shows that, and says when the file differs.
      await readRanSecrets(ctx, history, options.version);
      const ran = resolveRollbackTarget(ctx, options.version, history);
      return await planWith(ctx, engine, op, ran.version, history, options, {}, undefined, fileDiffersWarning(ran));
    }
    const target = resolveTarget(ctx, options.version, history);
    return await planWith(ctx, engine, op, target, history, options);
  } finally {
    close();
  }
}
