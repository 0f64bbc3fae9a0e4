import type { Holder } from "./interruption";

/** A stack output; `value` is `"[secret]"` when the output is secret. */
export interface StackOutput {
  value: unknown;
  secret: boolean;
}

/** The mark an update or destroy leaves in stackpin's records while it runs: who, and what. */
export interface InFlightMark extends Holder {
  /** The update message's first line: `stackpin rollback v42 -> v41 by alice: why`. */
  what: string;
}
