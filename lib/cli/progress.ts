/**
 * Progress lines for people, from an operation's progress events: what the CLI prints on stderr, and
 * what a fleet rollback shows of each stack, prefixed with its name.
 */
import pc from "picocolors";
import type { ProgressEvent } from "../environment";

/** The colour of each engine operation, in progress lines and plans. */
export const opColour: Record<string, (s: string) => string> = {
  create: pc.green,
  update: pc.yellow,
  delete: pc.red,
  replace: pc.magenta,
  "create-replacement": pc.magenta,
  "delete-replaced": pc.magenta,
};

/** One progress line for stderr, or undefined for events not worth a line. */
export function renderProgress(e: ProgressEvent): string | undefined {
  switch (e.type) {
    case "phase":
      return pc.cyan(`▸ ${e.message}`);
    case "resource": {
      const colour = opColour[e.op] ?? ((x: string) => x);
      const mark = e.status === "started" ? "…" : e.status === "done" ? pc.green("✓") : pc.red("✗");
      return `  ${mark} ${colour(e.op)} ${e.name}`;
    }
    case "check":
      return `  ${e.passed ? pc.green("✓") : pc.red("✗")} ${e.name}: ${e.detail}`;
    case "diagnostic": {
      // Several errors (a provider lists them one a line) each get a line of their own under the first.
      const text = e.message.split("\n").join("\n    ");
      return e.severity === "error" ? pc.red(`  error: ${text}`) : pc.yellow(`  warning: ${text}`);
    }
    case "waiting":
      return pc.dim(`  … waiting on ${e.name} (${e.resourceType}): ${e.reason}`);
  }
}
