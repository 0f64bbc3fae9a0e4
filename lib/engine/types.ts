import type { Holder } from "./interruption";

/** A stack output; `value` is `"[secret]"` when the output is secret. */
export interface StackOutput {
  value: unknown;
  secret: boolean;
}

/** What an in-flight mark covers: an engine call that takes Pulumi's lock on the stack. */
export type MarkKind = "preview" | "update" | "destroy" | "refresh" | "recover";

/**
 * The mark an engine call leaves in stackpin's records while it runs: who, where, what, and its lease
 * (renewed on a heartbeat while the call runs).
 */
export interface InFlightMark extends Holder {
  /** The update message's first line: `stackpin rollback v42 -> v41 by alice: why`. */
  what: string;
  /** This mark's own id: clearing or replacing a mark compares it, so a successor's mark is never touched. */
  id?: string;
  /** The engine call it covers; absent in marks of an older stackpin (an update). */
  kind?: MarkKind;
}
