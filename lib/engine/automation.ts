/**
 * The Automation API, loaded on first use: loading `@pulumi/pulumi/automation` costs about half a second
 * of every CLI run, which the commands that never reach it (`--help`, and `status` and `history`, which
 * read through the CLI directly) skip.
 */
export function automation(): typeof import("@pulumi/pulumi/automation") {
  return require("@pulumi/pulumi/automation") as typeof import("@pulumi/pulumi/automation");
}
