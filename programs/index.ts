import type { ApplyWatcher, ProgramConfigSpec, ProgramFactory, ProgramReconciler, TrafficSwitch } from "./types";
import { awsConfig } from "./aws/schema";
import { explainKubernetesFailure, explainKubernetesNotReady, kubernetesConfig } from "./kubernetes/schema";
import { localConfig } from "./local/schema";

export type { ApplyWatch, ApplyWatcher, ApplyWatchRequest, FailureExplainer, ProgramConfigSpec, ProgramContext, ProgramFactory, ProgramReconciler, ReadinessExplainer, StateResourceView, SwitchOutcome, SwitchRequest, TrafficSwitch } from "./types";

// Cloud SDKs are large; a program's module loads only when a stack names it. Its config schema is
// small and loads now, so a version file is checked without loading the program.
const lazy = (load: () => ProgramFactory, config: ProgramConfigSpec): ProgramFactory =>
  Object.assign((context: Parameters<ProgramFactory>[0]) => load()(context), { config });

/** The programs a stack can name in `stack.yaml` (`program: local`), each with its config schema. */
export const builtinPrograms: Record<string, ProgramFactory> = {
  local: Object.assign(lazy(() => require("./local").localProgram, localConfig), {
    reconcile: ((context, state) => require("./local").reconcileLocal(context, state)) as ProgramReconciler,
    switchTraffic: ((request) => require("./local/switch").switchLocal(request)) as TrafficSwitch,
  }),
  aws: lazy(() => require("./aws").awsProgram, awsConfig),
  kubernetes: Object.assign(lazy(() => require("./kubernetes").kubernetesProgram, kubernetesConfig), {
    explainFailure: explainKubernetesFailure,
    explainNotReady: explainKubernetesNotReady,
    switchTraffic: ((request) => require("./kubernetes/switch").switchKubernetes(request)) as TrafficSwitch,
    watchDuringApply: ((request) => require("./kubernetes/claims").watchClaims(request)) as ApplyWatcher,
  }),
};
