import type { ProgramFactory } from "./types";

export type { ProgramContext, ProgramFactory } from "./types";

// Cloud SDKs are large; a program's module loads only when a stack names it.
const lazy =
  (load: () => ProgramFactory): ProgramFactory =>
  (context) =>
    load()(context);

/** The programs a stack can name in `stack.yaml` (`program: local`). */
export const builtinPrograms: Record<string, ProgramFactory> = {
  local: lazy(() => require("./local").localProgram),
  aws: lazy(() => require("./aws").awsProgram),
  kubernetes: lazy(() => require("./kubernetes").kubernetesProgram),
};
