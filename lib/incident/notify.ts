/**
 * What a rollback tells the team, at its start and at its end; and what `watch --auto-rollback` tells it
 * when a guard defers its rollback (`rollback.deferred`, once per incident) or withholds it for a person
 * to decide (`rollback.withheld`).
 */
export interface RollbackEvent {
  event: "rollback.started" | "rollback.completed" | "rollback.failed" | "rollback.deferred" | "rollback.withheld";
  stack: string;
  from?: string;
  to: string;
  reason?: string;
  /** The trigger that started it, when `watch` did. */
  trigger?: string;
  /** `succeeded`, or the failure, once it ended. */
  result?: string;
  /** Why the rollback waits or was not run (`rollback.deferred`, `rollback.withheld`). */
  detail?: string;
  at: string;
}

/** How one webhook call went; a failure is reported here, never raised. */
export interface NotificationResult {
  url: string;
  event: RollbackEvent["event"];
  ok: boolean;
  status?: number;
  error?: string;
}

const colour = { "rollback.started": "#f2c744", "rollback.completed": "#2eb67d", "rollback.failed": "#e01e5a", "rollback.deferred": "#f2c744", "rollback.withheld": "#e01e5a" };

/** The Slack-compatible body: `text` and `attachments` for people, `stackpin` for machines. */
export function webhookBody(e: RollbackEvent): Record<string, unknown> {
  const verb = {
    "rollback.started": "ROLLBACK IN PROGRESS",
    "rollback.completed": "Rollback completed",
    "rollback.failed": "ROLLBACK FAILED",
    "rollback.deferred": "AUTOMATIC ROLLBACK WAITING",
    "rollback.withheld": "AUTOMATIC ROLLBACK NOT RUN, A PERSON DECIDES",
  }[e.event];
  const fields = [
    ["Environment", e.stack],
    ["From", e.from ?? "(none)"],
    ["To", e.to],
    ["Reason", e.reason ?? "(none given)"],
    ["Trigger", e.trigger ?? "manual"],
    ...(e.result ? [["Result", e.result]] : []),
    ...(e.detail ? [["Why", e.detail]] : []),
  ];
  return {
    text: `${verb}: ${e.stack} ${e.from ?? ""} -> ${e.to}${e.reason ? ` (${e.reason})` : ""}${e.detail ? `: ${e.detail}` : ""}`,
    attachments: [{ color: colour[e.event], fields: fields.map(([title, value]) => ({ title, value, short: title !== "Reason" && title !== "Why" })), ts: Math.floor(Date.parse(e.at) / 1000) }],
    stackpin: e,
  };
}

/** One POST of a JSON body with a timeout; a failure is the answer, never raised. */
async function post(url: string, body: Record<string, unknown>, timeoutMs: number): Promise<{ ok: boolean; status?: number; error?: string }> {
  try {
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
    return { ok: res.ok, status: res.status, ...(res.ok ? {} : { error: `answered ${res.status}` }) };
  } catch (err) {
    const e = err as Error;
    return { ok: false, error: String(e.cause instanceof Error ? e.cause.message : e.message) };
  }
}

/** Posts the event to every webhook, in parallel, each with a timeout. Never throws. */
export async function notify(webhooks: string[], event: RollbackEvent, timeoutMs = 3000): Promise<NotificationResult[]> {
  return Promise.all(webhooks.map(async (url) => ({ url, event: event.event, ...(await post(url, webhookBody(event), timeoutMs)) })));
}

/** What `watch` tells the team when a way back breaks or comes back (see `stackpin check`). */
export interface ReadinessEvent {
  event: "readiness.broken" | "readiness.restored";
  stack: string;
  /** The version the way back goes to. */
  to: string;
  /** The leg that broke (for `readiness.broken`). */
  leg?: string;
  /** One line: the reason it broke, or the way back as it is again. */
  detail: string;
  at: string;
}

/** The Slack-compatible body of a readiness change: `text` for people, `stackpin` for machines. */
export function readinessWebhookBody(e: ReadinessEvent): Record<string, unknown> {
  const broken = e.event === "readiness.broken";
  return {
    text: broken ? `WAY BACK BROKEN: ${e.stack}: rollback to ${e.to} would not work now — ${e.detail}` : `Way back restored: ${e.stack}: ${e.detail}`,
    attachments: [
      {
        color: broken ? "#e01e5a" : "#2eb67d",
        fields: [
          { title: "Environment", value: e.stack, short: true },
          { title: "Rollback to", value: e.to, short: true },
          ...(e.leg ? [{ title: "Leg", value: e.leg, short: true }] : []),
          { title: broken ? "Why" : "Now", value: e.detail, short: false },
        ],
        ts: Math.floor(Date.parse(e.at) / 1000),
      },
    ],
    stackpin: e,
  };
}

/** Posts a readiness change to every webhook, in parallel, each with a timeout. Never throws. */
export async function notifyReadiness(webhooks: string[], event: ReadinessEvent, timeoutMs = 3000): Promise<Array<{ url: string; ok: boolean; status?: number; error?: string }>> {
  return Promise.all(webhooks.map(async (url) => ({ url, ...(await post(url, readinessWebhookBody(event), timeoutMs)) })));
}
