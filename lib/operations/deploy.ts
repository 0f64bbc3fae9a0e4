import type { EnvironmentContext, ProgressOptions } from "../environment";
import { NotConfirmedError } from "../errors";
import { liveState } from "../history-record";
import { ApplyResult, applyWith, planWith, readHistory } from "./apply";
import type { Plan } from "./plan";

/** Options for {@link deploy}. */
export interface DeployOptions extends ProgressOptions {
  /** The version to deploy (`v42` or `42`). */
  version: string;
  /** Why, recorded in history. */
  message?: string;
  /**
   * Called with the plan before anything changes; return false to stop (raises {@link NotConfirmedError}).
   * When absent, the deploy applies without a separate preview.
   */
  confirm?: (plan: Plan) => Promise<boolean>;
}

/** Deploys a version: validates its file, optionally previews and asks, applies, and records a new entry. */
export async function deploy(ctx: EnvironmentContext, options: DeployOptions): Promise<ApplyResult & { plan?: Plan }> {
  options.onProgress?.({ type: "phase", phase: "validate", message: `validating ${options.version} for ${ctx.stack.name}` });
  const target = ctx.store.version(ctx.stack, options.version);
  const engine = await ctx.openEngine({ create: true });
  try {
    const history = await readHistory(engine);
    let plan: Plan | undefined;
    if (options.confirm) {
      plan = await planWith(ctx, engine, "deploy", target, history, options);
      if (!(await options.confirm(plan))) throw new NotConfirmedError(ctx.stack.name, target.version);
    }
    const from = liveState(history).version;
    const result = await applyWith(
      ctx,
      engine,
      { op: "deploy", from, to: target.version, who: ctx.actor, reason: options.message },
      target,
      options,
    );
    return { ...result, plan };
  } finally {
    engine.close();
  }
}
