import type { EnvironmentContext, ProgressOptions } from "../environment";
import { NotReadyError, StackpinError } from "../errors";
import { notifyReadiness } from "../incident/notify";
import { ReadinessChange, readinessChanges, readinessLine, ReadinessReport, TargetReadiness } from "../planning/readiness";
import { check } from "./check";

/** A change of a way back seen by `watch`, when, and what the webhooks answered. */
export interface SeenReadinessChange extends ReadinessChange {
  at: string;
  /** How many webhooks accepted it. */
  notified: number;
}

/**
 * `watch`'s readiness checks: every `intervalMs` (start to start; never two at once) it runs `check` on
 * the stack's default ways back and, when one breaks or comes back, tells the policy's webhooks and
 * keeps the change (a rollback's incident gets them as marks). A check that cannot run at all (the
 * backend unreadable) is said in progress and retried at the next interval; it is not a change.
 */
export class ReadinessWatch {
  private running?: Promise<void>;
  private nextAt = 0;
  private last?: TargetReadiness[];
  /** Checks made, and every change seen, oldest first. */
  checks = 0;
  readonly changes: SeenReadinessChange[] = [];

  constructor(
    private readonly ctx: EnvironmentContext,
    private readonly intervalMs: number,
    private readonly options: ProgressOptions,
  ) {}

  /** Starts a check when one is due and none runs; returns at once. */
  tick(now = Date.now()): void {
    if (this.running || now < this.nextAt) return;
    this.nextAt = now + this.intervalMs;
    this.running = this.once().finally(() => {
      this.running = undefined;
    });
  }

  /** Waits for the check that runs, if any (before a rollback, and at the end). */
  async settle(): Promise<void> {
    await this.running;
  }

  private async once(): Promise<void> {
    let report: ReadinessReport;
    try {
      report = await check(this.ctx, {});
    } catch (err) {
      if (err instanceof NotReadyError) report = err.details as ReadinessReport;
      else {
        const why = err instanceof StackpinError ? err.message.split("\n")[0] : String(err);
        this.options.onProgress?.({ type: "diagnostic", severity: "warning", message: `readiness check not made: ${why}; trying again in ${Math.round(this.intervalMs / 1000)} s` });
        return;
      }
    }
    this.checks += 1;
    this.options.onProgress?.({ type: "phase", phase: "watch", message: `ways back (check ${this.checks}): ${report.targets.map(readinessLine).join("; ") || "no version to roll back to"}` });
    const changes = readinessChanges(this.last, report.targets);
    this.last = report.targets;
    const notify = this.ctx.stack.settings.policy.notify;
    for (const c of changes) {
      const at = new Date().toISOString();
      const answers = notify?.webhooks.length
        ? await notifyReadiness(notify.webhooks, { event: c.change === "broken" ? "readiness.broken" : "readiness.restored", stack: this.ctx.stack.name, to: c.version, ...(c.leg ? { leg: c.leg } : {}), detail: c.detail, at }, notify.timeoutMs)
        : [];
      const seen = { ...c, at, notified: answers.filter((a) => a.ok).length };
      this.changes.push(seen);
      this.options.onProgress?.({
        type: "diagnostic",
        severity: c.change === "broken" ? "warning" : "info",
        message: `${c.change === "broken" ? `the way back to ${c.version} broke` : `the way back to ${c.version} works again`}: ${c.detail}${answers.length ? ` (told ${seen.notified} of ${answers.length} webhooks)` : ""}`,
      });
    }
  }
}
