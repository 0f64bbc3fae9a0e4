import type { ApplyWatcher, FailureExplainer, ProgramConfigSpec, ProgramFactory, ProgramReconciler, ReadinessCheck, ReadinessExplainer, TrafficSwitch } from "./types";

export type { ApplyWatch, ApplyWatcher, ApplyWatchRequest, FailureExplainer, ProgramConfigSpec, ProgramContext, ProgramFactory, ProgramReconciler, ReadinessCheck, ReadinessExplainer, ReadinessFinding, ReadinessRequest, StateResourceView, SwitchOutcome, SwitchRequest, TrafficSwitch } from "./types";

// Cloud SDKs are large; a program's module loads only when a stack names it. Its config schema is small
// and separate, so a version file is checked without loading the program; it is built when first read,
// so a command builds only the schema of the program its stack names.
const lazy = (load: () => ProgramFactory, config: () => ProgramConfigSpec): ProgramFactory =>
  Object.defineProperty((context: Parameters<ProgramFactory>[0]) => load()(context), "config", { get: config, enumerable: true });

const awsSchema = () => require("./aws/schema") as typeof import("./aws/schema");
const kubernetesSchema = () => require("./kubernetes/schema") as typeof import("./kubernetes/schema");
const localSchema = () => require("./local/schema") as typeof import("./local/schema");

/** The programs a stack can name in `stack.yaml` (`program: local`), each with its config schema. */
export const builtinPrograms: Record<string, ProgramFactory> = {
  local: Object.assign(
    lazy(() => require("./local").localProgram, () => localSchema().localConfig),
    {
      reconcile: ((context, state) => require("./local").reconcileLocal(context, state)) as ProgramReconciler,
      switchTraffic: ((request) => require("./local/switch").switchLocal(request)) as TrafficSwitch,
      checkReadiness: ((request) => require("./local/readiness").checkLocalReadiness(request)) as ReadinessCheck,
    },
  ),
  aws: lazy(() => require("./aws").awsProgram, () => awsSchema().awsConfig),
  kubernetes: Object.assign(
    lazy(() => require("./kubernetes").kubernetesProgram, () => kubernetesSchema().kubernetesConfig),
    {
      explainFailure: ((report) => kubernetesSchema().explainKubernetesFailure(report)) as FailureExplainer,
      explainNotReady: ((report) => kubernetesSchema().explainKubernetesNotReady(report)) as ReadinessExplainer,
      switchTraffic: ((request) => require("./kubernetes/switch").switchKubernetes(request)) as TrafficSwitch,
      watchDuringApply: ((request) => require("./kubernetes/claims").watchClaims(request)) as ApplyWatcher,
      checkReadiness: ((request) => require("./kubernetes/readiness").checkKubernetesReadiness(request)) as ReadinessCheck,
    },
  ),
};
