/**
 * `npm run bench:k8s`: stackpin's Kubernetes rollback beside the Pulumi engine's floor and Helm 4's, on one
 * real API server (the control plane of test/e2e/k8s-cluster.ts: etcd, kube-apiserver, controller-manager,
 * scheduler, kwok), measured in the same run and printed as one markdown table; nothing is asserted.
 *
 * - stackpin: the CLI (`node dist/lib/cli/main.js`) on the Kubernetes program, a 3-replica app with two
 *   rotating secrets (the cloud fixture's stack.yaml, versions v41 and v42 without the database); each
 *   round rolls back v42 -> v41 (the switch back to blue), reads `status` and `history`, deploys v42 again.
 * - the engine floor, on the same stack after stackpin's rounds, through the Automation API and nothing
 *   around it: (1) an update targeted at the Service and blue's Deployment (the colour it switches to,
 *   registered before it), with the config of stackpin's rollback, so the only change is the selector;
 *   (2) the rollback's whole update (its config, untargeted).
 * - Helm 4 (built into tools/helm/bin, reused when present): an equivalent chart in its own namespace,
 *   `helm rollback --wait=watcher` to revision 1 (v41), `helm status`, `helm history`, `helm upgrade`.
 *
 * Every switch is timed from the command's start to (a) the Service's selector on the target, (b) every
 * ready endpoint of the Service on the target's pods, all replicas of them, and (c) the command's exit;
 * (a) and (b) come from watch streams on the API server (Service, EndpointSlices, Pods), not from any
 * tool's output. Beside them a client samples the Service's ready endpoints every 25 ms and counts the
 * samples with none.
 *
 * BENCH_ROUNDS (default 5): rounds, printed as median (min-max).
 */
import { ChildProcess, execFile, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { ConfigMap, EngineEvent, LocalWorkspace, Stack } from "@pulumi/pulumi/automation";
import { parse } from "yaml";
import { locatePulumi, packageRoot, PulumiCli, writeDynamicProviderPlugin } from "../lib/engine/pulumi-cli";
import { builtinPrograms } from "../programs";
import { processesOf, tempProject, TempProject } from "../test/e2e/harness";
import { EndpointSamples, K8sCluster, missingK8sTools, startCluster, watchEndpoints } from "../test/e2e/k8s-cluster";
import { ensureHelm, HelmTool } from "./helm-tool";
import { k8sBinDir, kubernetesProviderVersion } from "./k8s-tools";

const exec = promisify(execFile);
const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 5));
const cliEntry = path.join(packageRoot(), "dist", "lib", "cli", "main.js");
const STACK = "prod";
const NS = "shop";
const HELM_NS = "helm-shop";
const APP = "shop";
const REPLICAS = 3;
/** How long after a command's exit a switch may still complete before it counts as not reached. */
const SETTLE_MS = 30_000;

// ---------------------------------------------------------------------------------------------------
// Watch streams on the API server

interface Credentials {
  host: string;
  port: number;
  ca: Buffer;
  token: string;
}

function credentials(kubeconfig: string): Credentials {
  const config = parse(fs.readFileSync(kubeconfig, "utf8")) as {
    clusters: { cluster: { server: string; "certificate-authority-data": string } }[];
    users: { user: { token: string } }[];
  };
  const url = new URL(config.clusters[0].cluster.server);
  return { host: url.hostname, port: Number(url.port), ca: Buffer.from(config.clusters[0].cluster["certificate-authority-data"], "base64"), token: config.users[0].user.token };
}

/**
 * The objects of one collection, kept current by a watch (`?watch=1` from the list's resourceVersion);
 * `onChange` runs on every event with the time it arrived. Re-lists when the server ends the stream.
 */
class Informer {
  readonly items = new Map<string, any>();
  private request?: ReturnType<typeof https.request>;
  private stopped = false;

  constructor(
    private readonly creds: Credentials,
    private readonly collection: string,
    private readonly query: string,
    private readonly onChange: (at: number) => void,
  ) {}

  private get(urlPath: string): Promise<any> {
    return new Promise((resolve, reject) => {
      const req = https.request({ host: this.creds.host, port: this.creds.port, path: urlPath, ca: this.creds.ca, headers: { Authorization: `Bearer ${this.creds.token}`, Accept: "application/json" } }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (text += d));
        res.on("end", () => (res.statusCode === 200 ? resolve(JSON.parse(text)) : reject(new Error(`GET ${urlPath}: ${res.statusCode} ${text.slice(0, 200)}`))));
      });
      req.on("error", reject);
      req.end();
    });
  }

  /** Lists, then watches from there; resolves once the watch stream is open. */
  async start(): Promise<void> {
    const list = await this.get(`${this.collection}?${this.query}`);
    this.items.clear();
    for (const item of list.items) this.items.set(item.metadata.name, item);
    this.onChange(performance.now());
    await new Promise<void>((resolve, reject) => {
      const watchPath = `${this.collection}?${this.query}${this.query ? "&" : ""}watch=1&resourceVersion=${list.metadata.resourceVersion}&timeoutSeconds=3600`;
      const req = https.request({ host: this.creds.host, port: this.creds.port, path: watchPath, ca: this.creds.ca, headers: { Authorization: `Bearer ${this.creds.token}`, Accept: "application/json" } }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`watch ${watchPath}: ${res.statusCode}`));
        resolve();
        // Destroying the request at stop() ends the response with an error: expected then.
        res.on("error", () => undefined);
        let buffered = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          const at = performance.now();
          buffered += chunk;
          let nl: number;
          while ((nl = buffered.indexOf("\n")) >= 0) {
            const line = buffered.slice(0, nl);
            buffered = buffered.slice(nl + 1);
            if (!line.trim()) continue;
            const event = JSON.parse(line) as { type: string; object: any };
            if (event.type === "ADDED" || event.type === "MODIFIED") this.items.set(event.object.metadata.name, event.object);
            else if (event.type === "DELETED") this.items.delete(event.object.metadata.name);
            else continue;
            this.onChange(at);
          }
        });
        res.on("end", () => {
          if (!this.stopped) void this.start().catch((err: Error) => process.stderr.write(`watch ${this.collection} ended and could not restart: ${err.message}\n`));
        });
      });
      req.on("error", (err) => (this.stopped ? undefined : reject(err)));
      req.end();
      this.request = req;
    });
  }

  stop(): void {
    this.stopped = true;
    this.request?.destroy();
  }
}

/** What one switch (a rollback or a deploy) looked like from the API server. */
interface Switch {
  /** From the command's start to the Service's selector on the target (undefined: not within the settle time). */
  selectorMs?: number;
  /** ... to every ready endpoint on the target's pods, as many as the replicas. */
  endpointsMs?: number;
  /** ... to the command's exit. */
  exitMs: number;
  /** Time with no ready endpoint at all, from the watch stream. */
  gapMs: number;
  /** The 25 ms client's samples. */
  sampled: EndpointSamples;
}

/** What a switch moves to: a selector on the Service, and pods labelled with the version. */
interface Target {
  selector: (selector: Record<string, string>) => boolean;
  version: string;
}

/** The Service, its EndpointSlices and the namespace's pods, watched; times switches from the events. */
class ServiceWatch {
  private readonly service: Informer;
  private readonly slices: Informer;
  private readonly pods: Informer;
  private current?: { target: Target; t0: number; selectorAt?: number; endpointsAt?: number; zeroSince?: number; gapMs: number; done?: () => void };

  constructor(
    creds: Credentials,
    private readonly api: K8sCluster["api"],
    private readonly namespace: string,
    private readonly name: string,
  ) {
    const check = (at: number) => this.check(at);
    this.service = new Informer(creds, `/api/v1/namespaces/${namespace}/services`, `fieldSelector=metadata.name%3D${name}`, check);
    this.slices = new Informer(creds, `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices`, `labelSelector=kubernetes.io%2Fservice-name%3D${name}`, check);
    this.pods = new Informer(creds, `/api/v1/namespaces/${namespace}/pods`, "", check);
  }

  async start(): Promise<void> {
    await Promise.all([this.service.start(), this.slices.start(), this.pods.start()]);
  }

  stop(): void {
    for (const i of [this.service, this.slices, this.pods]) i.stop();
  }

  /** The pod names of the Service's ready endpoints. */
  private readyPods(): string[] {
    return [...this.slices.items.values()].flatMap((s) => (s.endpoints ?? []).filter((e: any) => e.conditions?.ready).map((e: any) => e.targetRef?.name ?? ""));
  }

  private check(at: number): void {
    const m = this.current;
    if (!m) return;
    const selector = this.service.items.get(this.name)?.spec?.selector ?? {};
    if (m.selectorAt === undefined && m.target.selector(selector)) m.selectorAt = at;
    const ready = this.readyPods();
    const onTarget = ready.filter((p) => this.pods.items.get(p)?.metadata?.labels?.version === m.target.version);
    if (m.endpointsAt === undefined && ready.length >= REPLICAS && onTarget.length === ready.length) m.endpointsAt = at;
    if (ready.length === 0) m.zeroSince ??= at;
    else if (m.zeroSince !== undefined) {
      m.gapMs += at - m.zeroSince;
      m.zeroSince = undefined;
    }
    if (m.selectorAt !== undefined && m.endpointsAt !== undefined) m.done?.();
  }

  /** Runs `command` (which resolves at its exit) and times the switch to `target`. */
  async measure(target: Target, command: () => Promise<void>): Promise<Switch> {
    const t0 = performance.now();
    const m: NonNullable<typeof this.current> = { target, t0, gapMs: 0 };
    this.current = m;
    this.check(t0);
    const sampler = watchEndpoints(this.api, this.namespace, this.name, 25);
    try {
      await command();
      const exitMs = performance.now() - t0;
      if (m.selectorAt === undefined || m.endpointsAt === undefined) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, SETTLE_MS);
          m.done = () => (clearTimeout(timer), resolve());
        });
      }
      const end = performance.now();
      const gapMs = m.gapMs + (m.zeroSince !== undefined ? end - m.zeroSince : 0);
      return { selectorMs: m.selectorAt === undefined ? undefined : m.selectorAt - t0, endpointsMs: m.endpointsAt === undefined ? undefined : m.endpointsAt - t0, exitMs, gapMs, sampled: await sampler.stop() };
    } finally {
      this.current = undefined;
      await sampler.stop();
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// The three sides

/** A process run to its end; fails with its output unless it exits 0. */
function runProcess(command: string, args: string[], options: { cwd?: string; env: Record<string, string | undefined> }): Promise<{ stdout: string; stderr: string }> {
  const env = Object.fromEntries(Object.entries(options.env).filter(([, v]) => v !== undefined)) as Record<string, string>;
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(command, args, { cwd: options.cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve({ stdout, stderr }) : reject(new Error(`${path.basename(command)} ${args.join(" ")} exited ${code}:\n${stderr.trim().split("\n").slice(-15).join("\n")}`))));
  });
}

/** The version files: the cloud fixture's v41 and v42 with a second rotating secret and no database. */
function writeStack(dir: string): void {
  const cloud = path.join(packageRoot(), "test", "fixtures", "cloud");
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(path.join(cloud, "kubernetes.stack.yaml"), path.join(dir, "stack.yaml"));
  const version = (v: string, description: string, apiKey: number) =>
    [
      `version: ${v}`,
      `description: ${description}`,
      "config:",
      `  replicas: ${REPLICAS}`,
      "secrets:",
      `  apiKey: { generation: ${apiKey} }`,
      "  sessionKey: { generation: 1 }",
      "verify:",
      "  health: { path: /healthz, retries: 4, intervalMs: 5000, timeoutMs: 2000 }",
      "",
    ].join("\n");
  fs.writeFileSync(path.join(dir, "v41.yaml"), version("v41", "the release to go back to", 1));
  fs.writeFileSync(path.join(dir, "v42.yaml"), version("v42", "the release rolled back (apiKey rotated)", 2));
}

/** stackpin's CLI on the project, with the cluster's kubeconfig; resolves at its exit. */
async function stackpin(project: TempProject, kubeconfig: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return runProcess(process.execPath, [cliEntry, ...args, "--stack", STACK], { cwd: project.dir, env: { ...project.env, KUBECONFIG: kubeconfig, STACKPIN_DEBUG: "timing" } });
}

/** The engine floor: a workspace on the project's backend and the Kubernetes program, driven directly. */
class Floor {
  private constructor(
    private readonly workspace: LocalWorkspace,
    private readonly stack: Stack,
  ) {}

  static async open(project: TempProject, pulumi: PulumiCli, kubeconfig: string): Promise<Floor> {
    const settings = parse(fs.readFileSync(path.join(project.dir, "stacks", STACK, "stack.yaml"), "utf8")) as { project: string; encryptionsalt: string };
    const pluginDir = writeDynamicProviderPlugin(path.join(project.dir, ".stackpin", "engine", "bin"));
    const workDir = path.join(project.dir, ".bench-floor");
    fs.mkdirSync(workDir, { recursive: true });
    const program = builtinPrograms.kubernetes({ stackName: STACK, stateDir: path.join(project.dir, ".stackpin", "local", STACK) });
    const workspace = await LocalWorkspace.create({
      workDir,
      program,
      pulumiCommand: pulumi.command,
      pulumiHome: project.env.PULUMI_HOME,
      envVars: {
        PATH: `${pluginDir}${path.delimiter}${pulumi.root}${path.delimiter}${process.env.PATH ?? ""}`,
        PULUMI_SKIP_UPDATE_CHECK: "true",
        PULUMI_SKIP_CONFIRMATIONS: "true",
        PULUMI_CONFIG_PASSPHRASE: project.env.PULUMI_CONFIG_PASSPHRASE!,
        KUBECONFIG: kubeconfig,
      },
      projectSettings: { name: settings.project, runtime: "nodejs", backend: { url: `file://${project.stateDir}` } },
      stackSettings: { [STACK]: { encryptionSalt: settings.encryptionsalt } },
    });
    return new Floor(workspace, await Stack.select(STACK, workspace));
  }

  /** The config the newest update applied (secrets decrypted, to be re-encrypted as secrets): what stackpin set. */
  async appliedConfig(): Promise<ConfigMap> {
    const [newest] = await this.stack.history(1, 1, true);
    return Object.fromEntries(Object.entries(newest.config).map(([k, v]) => [k, { value: v.value, secret: v.secret }]));
  }

  /** Replaces the workspace's config with `config` (untimed: setup, not the engine's work). */
  async use(config: ConfigMap): Promise<void> {
    const settings = await this.workspace.stackSettings(STACK);
    await this.workspace.saveStackSettings(STACK, { ...settings, config: {} });
    await this.workspace.setAllConfig(STACK, config);
  }

  /**
   * The URNs of the Service and of the Deployment `slot`'s colour runs, for an update targeted at the two:
   * the Service alone cannot be targeted. The program registers the colour to serve before the Service
   * and the other colour after it (it depends on the Service); the state holds the colour now to serve as
   * the one that depended on the Service. An untargeted resource is copied from the state together with
   * the old dependencies it lists, so the engine would copy the Service before the program registers it,
   * and the registration fails as a duplicate URN. Targeted, that colour is diffed instead.
   */
  async switchUrns(slot: string): Promise<string[]> {
    const state = await this.stack.exportStack();
    const resources = state.deployment.resources as { urn: string; type: string }[];
    const service = resources.find((r) => r.type === "kubernetes:core/v1:Service");
    const colour = resources.find((r) => r.type === "kubernetes:apps/v1:Deployment" && r.urn.endsWith(`::app-${slot}`));
    if (!service || !colour) throw new Error(`the stack has no Service or no Deployment app-${slot}`);
    return [colour.urn, service.urn];
  }

  /** The Service's step in each update (from the engine's events): the provider's update and its await. */
  readonly serviceStepMs: number[] = [];
  /** What each kind of update changed (op and name of every step that was not `same`), by label. */
  readonly changes = new Map<string, Set<string>>();

  async up(label: string, target?: string[]): Promise<void> {
    let serviceStarted: number | undefined;
    const changed: string[] = [];
    const onEvent = (e: EngineEvent) => {
      if (e.resourcePreEvent?.metadata.type === "kubernetes:core/v1:Service" && e.resourcePreEvent.metadata.op !== "same") serviceStarted = performance.now();
      if (e.resOutputsEvent?.metadata.type === "kubernetes:core/v1:Service" && serviceStarted !== undefined) this.serviceStepMs.push(performance.now() - serviceStarted);
      const m = e.resOutputsEvent?.metadata;
      if (m && m.op !== "same" && m.type !== "pulumi:pulumi:Stack") changed.push(`${m.op} ${m.type.startsWith("pulumi:providers:") ? `the ${m.type.slice(17)} provider` : m.urn.split("::").pop()}`);
    };
    await this.stack.up({ message: "bench: engine floor", onEvent, ...(target ? { target } : {}) });
    const seen = this.changes.get(label) ?? new Set<string>();
    seen.add(changed.length ? changed.join(", ") : "nothing");
    this.changes.set(label, seen);
  }
}

/** The Helm chart: a ConfigMap, two Secrets, a 3-replica Deployment with a readinessProbe, a Service selecting the version. */
function writeChart(dir: string): void {
  const t = path.join(dir, "templates");
  fs.mkdirSync(t, { recursive: true });
  fs.writeFileSync(path.join(dir, "Chart.yaml"), "apiVersion: v2\nname: shop\nversion: 0.1.0\n");
  fs.writeFileSync(path.join(dir, "values.yaml"), `version: v41\nreplicas: ${REPLICAS}\nimageRepository: registry.example.com/shop\nsecrets: {}\n`);
  fs.writeFileSync(
    path.join(t, "config.yaml"),
    `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  VERSION: {{ .Values.version | quote }}
  HEALTH_PATH: /healthz
{{- range $name, $s := .Values.secrets }}
---
apiVersion: v1
kind: Secret
metadata:
  name: {{ $.Release.Name }}-{{ $name }}
  annotations:
    example.com/generation: {{ $s.generation | quote }}
stringData:
  value: {{ $s.value | quote }}
{{- end }}
`,
  );
  fs.writeFileSync(
    path.join(t, "deployment.yaml"),
    `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels: { app: {{ .Release.Name }}, version: {{ .Values.version }} }
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: { app: {{ .Release.Name }} }
  template:
    metadata:
      labels: { app: {{ .Release.Name }}, version: {{ .Values.version }} }
      annotations:
        example.com/secret-generations: "{{ range $name, $s := .Values.secrets }}{{ $name }}={{ $s.generation }},{{ end }}"
    spec:
      containers:
        - name: app
          image: {{ .Values.imageRepository }}:{{ .Values.version }}
          ports: [{ containerPort: 8080 }]
          envFrom: [{ configMapRef: { name: {{ .Release.Name }}-config } }]
          env:
{{- range $name, $s := .Values.secrets }}
            - name: SECRET_{{ $name | upper | replace "-" "_" }}
              valueFrom: { secretKeyRef: { name: {{ $.Release.Name }}-{{ $name }}, key: value } }
{{- end }}
          readinessProbe:
            httpGet: { path: /healthz, port: 8080 }
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 5
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  selector: { app: {{ .Release.Name }}, version: {{ .Values.version }} }
  ports: [{ port: 80, targetPort: 8080 }]
`,
  );
  const values = (version: string, apiKey: number) =>
    [
      `version: ${version}`,
      "secrets:",
      `  api-key: { generation: ${apiKey}, value: ${JSON.stringify(`api-key-generation-${apiKey}`)} }`,
      `  session-key: { generation: 1, value: "session-key-generation-1" }`,
      "",
    ].join("\n");
  fs.writeFileSync(path.join(dir, "v41.values.yaml"), values("v41", 1));
  fs.writeFileSync(path.join(dir, "v42.values.yaml"), values("v42", 2));
}

// ---------------------------------------------------------------------------------------------------
// Figures and the table

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const sec = (ms: number) => (ms / 1000).toFixed(2);
/** "median s (min–max)", or "-" with nothing measured; "n of m not reached" when some runs never got there. */
function spread(xs: (number | undefined)[]): string {
  const got = xs.filter((x): x is number => x !== undefined);
  if (!xs.length) return "-";
  if (!got.length) return `not reached (${xs.length} runs)`;
  const missed = xs.length - got.length;
  const text = got.length === 1 ? `${sec(got[0])} s` : `${sec(median(got))} s (${sec(Math.min(...got))}–${sec(Math.max(...got))})`;
  return missed ? `${text}; ${missed} of ${xs.length} not reached in ${SETTLE_MS / 1000} s` : text;
}
function gaps(switches: Switch[]): string {
  if (!switches.length) return "-";
  const samples = switches.reduce((n, s) => n + s.sampled.samples, 0);
  const zero = switches.reduce((n, s) => n + s.sampled.zeroReady, 0);
  const runsWithGap = switches.filter((s) => s.sampled.zeroReady > 0 || s.gapMs > 0).length;
  const gapMs = switches.map((s) => s.gapMs);
  return `${zero} of ${samples} (${runsWithGap} of ${switches.length} runs); watch: ${gapMs.some((g) => g > 0) ? `${sec(median(gapMs))} s (${sec(Math.min(...gapMs))}–${sec(Math.max(...gapMs))})` : "0 s"}`;
}

/** One run's (a) / (b) / (c). */
const firstRow = (s: Switch) => [s.selectorMs, s.endpointsMs, s.exitMs].map((x) => (x === undefined ? "not reached" : `${sec(x)} s`)).join(" / ");

/** Pulumi CLI calls per run and their mean time, by subcommand, biggest first. */
function breakdown(runs: { sub: string; ms: number }[][]): string {
  const by = new Map<string, { n: number; ms: number }>();
  for (const c of runs.flat()) {
    const b = by.get(c.sub) ?? { n: 0, ms: 0 };
    b.n += 1;
    b.ms += c.ms;
    by.set(c.sub, b);
  }
  const k = runs.length;
  const total = [...by.values()].reduce((t, b) => t + b.ms, 0) / k;
  const n = [...by.values()].reduce((t, b) => t + b.n, 0) / k;
  const parts = [...by].sort((a, b) => b[1].ms - a[1].ms).map(([sub, b]) => `${sub} ${+(b.n / k).toFixed(1)}x ${Math.round(b.ms / k)} ms`);
  return `${+n.toFixed(1)} calls, ${Math.round(total)} ms${parts.length ? `: ${parts.join(", ")}` : ""}`;
}

function loadLine(): string {
  return os.loadavg().map((l) => l.toFixed(1)).join(" / ");
}

async function run(): Promise<void> {
  const started = Date.now();
  const missing = missingK8sTools();
  if (missing.length) throw new Error(`bench:k8s needs ${missing.join(", ")}: run \`npm run setup:k8s\``);
  const pulumi = await locatePulumi({ explicit: process.env.STACKPIN_PULUMI, searchPath: process.env.PATH });
  const log = (line: string) => process.stderr.write(`[bench:k8s] ${line}\n`);
  const helm: HelmTool = await ensureHelm(log);
  const loadAtStart = loadLine();
  log(`Pulumi CLI ${pulumi.version}; ${rounds} rounds; load ${loadAtStart}`);

  const temp = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-bench-k8s-"));
  let cluster: K8sCluster | undefined;
  let project: TempProject | undefined;
  const watches: ServiceWatch[] = [];
  try {
    cluster = await startCluster({ snapshotCrds: true });
    const api = cluster.api;
    for (const ns of [NS, HELM_NS]) await api.create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    await cluster.addVolumes("standard", 2);
    await api.create("/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses", {
      apiVersion: "snapshot.storage.k8s.io/v1",
      kind: "VolumeSnapshotClass",
      metadata: { name: "csi-snapclass" },
      driver: "hostpath.csi.k8s.io",
      deletionPolicy: "Delete",
    });
    for (const ns of [NS, HELM_NS]) {
      await cluster.until(`the ${ns} namespace's default ServiceAccount`, async () => (await api.request("GET", `/api/v1/namespaces/${ns}/serviceaccounts/default`)).status === 200);
    }
    const creds = credentials(cluster.kubeconfig);
    const kubeconfig = cluster.kubeconfig;

    // stackpin's project, with the provider plugin installed in its Pulumi home at the SDK's version.
    const stackDir = path.join(temp, "stack");
    writeStack(stackDir);
    const proj = tempProject(pulumi, { stack: STACK, from: stackDir });
    project = proj;
    const pluginStarted = performance.now();
    await exec(path.join(pulumi.root, "pulumi"), ["plugin", "install", "resource", "kubernetes", kubernetesProviderVersion, "--file", path.join(k8sBinDir(), "pulumi-resource-kubernetes")], {
      env: { ...process.env, ...proj.env },
    });
    const pluginMs = performance.now() - pluginStarted;

    // Helm's chart and homes, all in the temp dir.
    const chart = path.join(temp, "chart");
    writeChart(chart);
    const helmEnv = { PATH: process.env.PATH, HOME: temp, KUBECONFIG: kubeconfig, HELM_CACHE_HOME: path.join(temp, "helm", "cache"), HELM_CONFIG_HOME: path.join(temp, "helm", "config"), HELM_DATA_HOME: path.join(temp, "helm", "data") };
    const helmRun = (args: string[]) => runProcess(helm.path, [...args, "--namespace", HELM_NS], { env: helmEnv });
    const wait = ["--wait=watcher", "--timeout", "3m"];

    const ours = new ServiceWatch(creds, api, NS, APP);
    const theirs = new ServiceWatch(creds, api, HELM_NS, APP);
    watches.push(ours, theirs);
    await Promise.all([ours.start(), theirs.start()]);

    const blue: Target = { selector: (s) => s.slot === "blue", version: "v41" };
    const green: Target = { selector: (s) => s.slot === "green", version: "v42" };
    const helmV41: Target = { selector: (s) => s.version === "v41", version: "v41" };
    const helmV42: Target = { selector: (s) => s.version === "v42", version: "v42" };
    const timed = async (f: () => Promise<unknown>) => {
      const t = performance.now();
      await f();
      return performance.now() - t;
    };
    /** Per stackpin command: the Pulumi CLI calls each run reported (`STACKPIN_DEBUG=timing`). */
    const calls: Record<string, { sub: string; ms: number }[][]> = {};
    const spRun = async (op: string, args: string[]) => {
      const { stderr } = await stackpin(proj, kubeconfig, args);
      (calls[op] ??= []).push([...stderr.matchAll(/^\[timing\] pulumi (.+): (\d+) ms$/gm)].map((m) => ({ sub: m[1], ms: Number(m[2]) })));
    };
    const helmRollback = () => helmRun(["rollback", APP, ...wait]).then(() => undefined);
    const helmUpgrade = () => helmRun(["upgrade", APP, chart, "-f", path.join(chart, "v42.values.yaml"), ...wait]).then(() => undefined);

    // Once each: the first deploys, v42, and the first rollback after v42 raised apiKey's generation (a
    // rollback never lowers it; the deploy already rolled the idle blue onto generation 2, after the switch).
    log("stackpin: deploy v41, deploy v42, rollback to v41; helm: install v41, upgrade to v42, rollback");
    const spFirst = await ours.measure(blue, () => spRun("deploy v41 (first)", ["deploy", "--version", "v41", "--yes"]));
    await spRun("deploy v42", ["deploy", "--version", "v42", "--yes"]);
    const spFirstBack = await ours.measure(blue, () => spRun("rollback (first)", ["rollback", "--to", "v41", "--yes"]));
    const helmFirst = await theirs.measure(helmV41, async () => void (await helmRun(["install", APP, chart, "-f", path.join(chart, "v41.values.yaml"), ...wait])));
    await helmUpgrade();
    const helmFirstBack = await theirs.measure(helmV41, helmRollback);

    const sp = { rollback: [] as Switch[], deploy: [] as Switch[], status: [] as number[], history: [] as number[] };
    const hm = { rollback: [] as Switch[], deploy: [] as Switch[], status: [] as number[], history: [] as number[] };
    const loads: string[] = [];
    for (let r = 1; r <= rounds; r++) {
      log(`round ${r}/${rounds} (load ${loadLine()})`);
      loads.push(loadLine());
      sp.deploy.push(await ours.measure(green, () => spRun("deploy v42", ["deploy", "--version", "v42", "--yes"])));
      hm.deploy.push(await theirs.measure(helmV42, helmUpgrade));
      sp.rollback.push(await ours.measure(blue, () => spRun("rollback", ["rollback", "--to", "v41", "--yes"])));
      hm.rollback.push(await theirs.measure(helmV41, helmRollback));
      sp.status.push(await timed(() => spRun("status", ["status"])));
      sp.history.push(await timed(() => spRun("history", ["history"])));
      hm.status.push(await timed(() => helmRun(["status", APP])));
      hm.history.push(await timed(() => helmRun(["history", APP])));
    }

    // The engine floor, on the same stack once stackpin is done with it: the configs of stackpin's last
    // rollback and of a deploy of v42, applied without stackpin.
    log("engine floor");
    const floor = await Floor.open(proj, pulumi, kubeconfig);
    const cfgBack = await floor.appliedConfig();
    await stackpin(proj, kubeconfig, ["deploy", "--version", "v42", "--yes"]);
    const cfgDeploy = await floor.appliedConfig();
    const toBlue = await floor.switchUrns("blue");
    const toGreen = await floor.switchUrns("green");
    const fl = { selector: [] as Switch[], whole: [] as Switch[], deploy: [] as Switch[], errors: [] as string[] };
    for (let r = 1; r <= rounds; r++) {
      log(`floor round ${r}/${rounds} (load ${loadLine()})`);
      try {
        await floor.use(cfgBack);
        fl.selector.push(await ours.measure(blue, () => floor.up("the Service and blue's Deployment (targeted)", toBlue)));
        await floor.use(cfgDeploy);
        await floor.up("back to green: the Service and green's Deployment (targeted, untimed)", toGreen);
        await floor.use(cfgBack);
        fl.whole.push(await ours.measure(blue, () => floor.up("the rollback's whole update")));
        await floor.use(cfgDeploy);
        fl.deploy.push(await ours.measure(green, () => floor.up("the deploy of v42's whole update")));
      } catch (err) {
        const lines = (err as Error).message.split("\n");
        const errors = lines.filter((l) => /\berror\b/i.test(l) && !/^\s*(stderr|err\?): Command failed/.test(l));
        fl.errors.push((errors.length ? errors : lines.slice(-6)).slice(0, 8).join(" "));
        break;
      }
    }
    const loadAtEnd = loadLine();

    // The table.
    const cells = (f: (s: Switch) => number | undefined, ...sets: Switch[][]) => sets.map((set) => spread(set.map(f)));
    const rows: [string, string[]][] = [
      ["rollback: selector on the target (a)", cells((s) => s.selectorMs, sp.rollback, fl.selector, fl.whole, hm.rollback)],
      [`rollback: every ready endpoint on the target, ${REPLICAS} of them (b)`, cells((s) => s.endpointsMs, sp.rollback, fl.selector, fl.whole, hm.rollback)],
      ["rollback: the command's exit (c)", cells((s) => s.exitMs, sp.rollback, fl.selector, fl.whole, hm.rollback)],
      ["rollback: samples with 0 ready endpoints (every 25 ms); time with none (watch)", [sp.rollback, fl.selector, fl.whole, hm.rollback].map(gaps)],
      ["deploy v42 / upgrade: exit", cells((s) => s.exitMs, sp.deploy, [], fl.deploy, hm.deploy)],
      ["deploy v42 / upgrade: selector on v42", cells((s) => s.selectorMs, sp.deploy, [], fl.deploy, hm.deploy)],
      ["deploy v42 / upgrade: samples with 0 ready endpoints; time with none", [sp.deploy, [], fl.deploy, hm.deploy].map(gaps)],
      ["the first rollback after v42 rotated apiKey: (a) / (b) / (c)", [firstRow(spFirstBack), "-", "-", firstRow(helmFirstBack)]],
      ["first deploy (v41) / install: exit", cells((s) => s.exitMs, [spFirst], [], [], [helmFirst])],
      ["`status`", [spread(sp.status), "-", "-", spread(hm.status)]],
      ["`history`", [spread(sp.history), "-", "-", spread(hm.history)]],
    ];
    const out: string[] = [];
    out.push(
      `bench:k8s, ${new Date().toISOString()}: ${rounds} rounds, median (min–max); ${os.cpus().length} cores, load (1/5/15 min) ${loadAtStart} at the start, ${loadAtEnd} at the end; ` +
        `Pulumi CLI ${pulumi.version}, provider plugin ${kubernetesProviderVersion}, Helm ${helm.version} (${helm.built ? `built now in ${helm.buildSeconds!.toFixed(0)} s` : `reused from tools/helm/bin${helm.buildSeconds !== undefined ? `; its build took ${helm.buildSeconds.toFixed(0)} s` : ""}`}${helm.go ? `, ${helm.go.replace(/^go version /, "")}` : ""}); ` +
        `control plane up in ${cluster.startSeconds.toFixed(1)} s, plugin install ${sec(pluginMs)} s`,
      "",
      "| what | stackpin | engine floor: targeted (the Service and blue's Deployment) | engine floor: the rollback's whole update | Helm 4 |",
      "|---|---|---|---|---|",
      ...rows.map(([label, c]) => `| ${label} | ${c.join(" | ")} |`),
    );
    if (fl.errors.length) out.push("", `engine floor failed: ${fl.errors.join("; ")}`);
    if (floor.changes.size) {
      out.push("", "What the floor's updates changed (the steps that were not `same`, from the engine's events):");
      for (const [label, seen] of floor.changes) out.push(`- ${label}: ${[...seen].join("; or ")}`);
    }
    if (floor.serviceStepMs.length) {
      out.push("", `The Service's step inside the floor's updates that moved the selector (the provider's update and its await, from the engine's events): ${spread(floor.serviceStepMs)}.`);
    }
    out.push("", "Pulumi CLI calls per stackpin command (`STACKPIN_DEBUG=timing`; per run, mean over runs):");
    for (const [op, runs] of Object.entries(calls)) out.push(`- ${op}: ${breakdown(runs)}`);
    out.push("", `load at each round's start: ${loads.join(", ")}; whole run ${((Date.now() - started) / 1000).toFixed(0)} s`);
    console.log(out.join("\n"));
  } finally {
    for (const w of watches) w.stop();
    if (cluster) await cluster.stop();
    const left = project ? processesOf(project.dir) : [];
    if (left.length) process.stderr.write(`[bench:k8s] processes still running from the project: ${left.join(", ")}\n`);
    if (project) fs.rmSync(project.dir, { recursive: true, force: true });
    fs.rmSync(temp, { recursive: true, force: true });
  }
}

run().catch((err: Error) => {
  console.error(`error: ${err.message}`);
  process.exitCode = 1;
});
