import type { ProgramFactory, ProgramReconciler } from "./types";

export type { ProgramContext, ProgramFactory, ProgramReconciler, StateResourceView } from "./types";

// Cloud SDKs are large; a program's module loads only when a stack names it.
const lazy =
  (load: () => ProgramFactory): ProgramFactory =>
  (context) =>
    load()(context);

/** The programs a stack can name in `stack.yaml` (`program: local`). */
export const builtinPrograms: Record<string, ProgramFactory> = {
  local: Object.assign(lazy(() => require("./local").localProgram), {
    reconcile: ((context, state) => require("./local").reconcileLocal(context, state)) as ProgramReconciler,
  }),
  aws: lazy(() => require("./aws").awsProgram),
  kubernetes: lazy(() => require("./kubernetes").kubernetesProgram),
};
