/**
 * A real Kubernetes control plane for one test suite, on free loopback ports: etcd (Debian's), the
 * kube-apiserver, kube-controller-manager and kube-scheduler 1.34.4 and kwok 0.8.0 with one fake node,
 * built by `npm run setup:k8s` into tools/k8s/bin. Readiness is asked of the API (never slept for), and
 * `stop()` ends every process and checks that no process or port is left.
 */
import { strict as assert } from "node:assert";
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as https from "node:https";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as YAML from "yaml";
import { ApiAnswer, kubeClient } from "../../programs/kubernetes/api";
import { k8sBinDir, k8sTools, k8sToolsDir } from "../../scripts/k8s-tools";
import { portFree } from "./harness";

/** A minimal client for the test cluster's API: the tests read back what a user would check with kubectl. */
export interface KubeApi {
  request<T = any>(method: string, urlPath: string, body?: unknown, contentType?: string): Promise<ApiAnswer<T>>;
  get<T = any>(urlPath: string): Promise<T>;
  /** Creates an object (POST to `collection`), failing on anything but 201. */
  create<T = any>(collection: string, object: unknown): Promise<T>;
  /** Closes the kept-alive connections. */
  close(): void;
}

export interface K8sCluster {
  /** A kubeconfig file for the cluster (token auth, the cluster's CA). */
  kubeconfig: string;
  server: string;
  api: KubeApi;
  /** Seconds from the first process started to the node Ready and the default ServiceAccount there. */
  startSeconds: number;
  /** Makes `count` PersistentVolumes of `size` in `storageClass` (and the class), so claims can bind without a provisioner. */
  addVolumes(storageClass: string, count: number, size?: string): Promise<void>;
  /** Waits until `check` answers true, asking every `everyMs`; fails naming `what` after `timeoutMs`. */
  until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs?: number, everyMs?: number): Promise<T>;
  /** Stops everything (SIGTERM, then SIGKILL after a grace), asserts no process or port is left, removes the files. */
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** Installs the snapshot.storage.k8s.io/v1 CRDs (from tools/k8s/crds). */
  snapshotCrds?: boolean;
}

/** The binaries that are missing (all of them, or the cluster's without the provider plugin), for a clear failure. */
export function missingK8sTools(options: { provider?: boolean } = {}): string[] {
  const wanted = k8sTools.filter((t) => options.provider !== false || t.name !== "pulumi-resource-kubernetes");
  const missing = wanted.map((t) => path.join(k8sBinDir(), t.name)).filter((bin) => !fs.existsSync(bin));
  try {
    execFileSync("etcd", ["--version"], { stdio: "ignore" });
  } catch {
    missing.push("etcd (Debian's etcd-server) on PATH");
  }
  return missing;
}

/**
 * Skips loudly when the binaries are missing, or fails under STACKPIN_REQUIRE_K8S=1. A separate switch
 * from STACKPIN_REQUIRE_E2E: `.ci/run` builds the Pulumi CLI but not yet these (about 20 minutes cold),
 * so CI sets it once it does (see tools/k8s/README.md).
 */
export function k8sToolsOrSkip(ctx: Mocha.Context, options: { provider?: boolean } = {}): void {
  const missing = missingK8sTools(options);
  if (!missing.length) return;
  const why = `the real-Kubernetes tests need: ${missing.join(", ")}; run \`npm run setup:k8s\``;
  if (process.env.STACKPIN_REQUIRE_K8S === "1") throw new Error(why);
  process.stderr.write(`\n${"!".repeat(78)}\n  KUBERNETES TESTS SKIPPED: ${why}\n${"!".repeat(78)}\n`);
  ctx.skip();
}

async function freePorts(count: number): Promise<number[]> {
  // All held open until every one is known, so no two are the same.
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

interface Running {
  name: string;
  child: ChildProcess;
  exited: Promise<void>;
  log: string;
}

/** Starts the control plane; see the file's comment. */
export async function startCluster(options: ClusterOptions = {}): Promise<K8sCluster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-k8s-"));
  const bin = (name: string) => path.join(k8sBinDir(), name);
  const file = (name: string) => path.join(dir, name);
  const [etcdClient, etcdPeer, apiPort, cmPort, schedPort, kwokPort] = await freePorts(6);
  const ports = [etcdClient, etcdPeer, apiPort, cmPort, schedPort, kwokPort];
  const running: Running[] = [];
  let closeApi = () => undefined as void;

  const startProcess = (name: string, command: string, args: string[]): Running => {
    const log = file(`${name}.log`);
    const fd = fs.openSync(log, "w");
    // A process group of its own, so stop() reaches anything it forks.
    const child = spawn(command, args, { cwd: dir, stdio: ["ignore", fd, fd], detached: true });
    fs.closeSync(fd);
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const r = { name, child, exited, log };
    running.push(r);
    return r;
  };
  const tail = (r: Running) => fs.readFileSync(r.log, "utf8").split("\n").slice(-15).join("\n");

  const stop = async () => {
    closeApi();
    for (const r of [...running].reverse()) {
      if (r.child.exitCode !== null || r.child.signalCode !== null) continue;
      try {
        process.kill(-r.child.pid!, "SIGTERM");
      } catch {
        // already gone
      }
      const killed = setTimeout(() => {
        try {
          process.kill(-r.child.pid!, "SIGKILL");
        } catch {
          // already gone
        }
      }, 10_000);
      await r.exited;
      clearTimeout(killed);
    }
    for (const r of running) {
      assert.ok(!fs.existsSync(`/proc/${r.child.pid}`) || /\) Z /.test(fs.readFileSync(`/proc/${r.child.pid}/stat`, "utf8")), `${r.name} still runs`);
    }
    for (const port of ports) assert.ok(await portFree(port), `port ${port} is still in use after the cluster stopped`);
    fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    const started = Date.now();
    // The serving certificate is its own CA: clients trust exactly it.
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
      "-subj", "/CN=stackpin-test-apiserver", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout", file("serving.key"), "-out", file("serving.crt"),
    ], { stdio: "ignore" });
    const sa = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
    fs.writeFileSync(file("sa.key"), sa.privateKey.export({ type: "pkcs8", format: "pem" }));
    fs.writeFileSync(file("sa.pub"), sa.publicKey.export({ type: "spki", format: "pem" }));
    const token = crypto.randomBytes(24).toString("hex");
    fs.writeFileSync(file("tokens.csv"), `${token},admin,admin-uid,system:masters\n`, { mode: 0o600 });
    const ca = fs.readFileSync(file("serving.crt"));
    const server = `https://127.0.0.1:${apiPort}`;
    const kubeconfig = file("kubeconfig");
    fs.writeFileSync(
      kubeconfig,
      YAML.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "test", cluster: { server, "certificate-authority-data": ca.toString("base64") } }],
        users: [{ name: "admin", user: { token } }],
        contexts: [{ name: "test", context: { cluster: "test", user: "admin" } }],
        "current-context": "test",
      }),
      { mode: 0o600 },
    );

    const api = client(kubeconfig);
    closeApi = () => api.close();
    const until = async <T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = 100): Promise<T> => {
      const deadline = Date.now() + timeoutMs;
      let last: unknown;
      for (;;) {
        for (const r of running) {
          if (r.child.exitCode !== null) throw new Error(`${r.name} exited (${r.child.exitCode}) while waiting for ${what}:\n${tail(r)}`);
        }
        try {
          const v = await check();
          if (v) return v;
        } catch (err) {
          last = err;
        }
        if (Date.now() > deadline) throw new Error(`no ${what} after ${timeoutMs / 1000} s${last ? `: ${(last as Error).message}` : ""}`);
        await new Promise((r) => setTimeout(r, everyMs));
      }
    };

    startProcess("etcd", "etcd", [
      "--name", "test", "--data-dir", file("etcd"),
      "--listen-client-urls", `http://127.0.0.1:${etcdClient}`, "--advertise-client-urls", `http://127.0.0.1:${etcdClient}`,
      "--listen-peer-urls", `http://127.0.0.1:${etcdPeer}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${etcdPeer}`,
      "--initial-cluster", `test=http://127.0.0.1:${etcdPeer}`,
    ]);
    startProcess("kube-apiserver", bin("kube-apiserver"), [
      `--etcd-servers=http://127.0.0.1:${etcdClient}`,
      "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", `--secure-port=${apiPort}`,
      `--cert-dir=${file("apiserver-certs")}`,
      `--tls-cert-file=${file("serving.crt")}`, `--tls-private-key-file=${file("serving.key")}`,
      `--token-auth-file=${file("tokens.csv")}`, "--authorization-mode=Node,RBAC",
      `--service-account-key-file=${file("sa.pub")}`, `--service-account-signing-key-file=${file("sa.key")}`,
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      "--service-cluster-ip-range=10.96.0.0/16",
      // Without these: the endpoint reconciler loops on the loopback address, and etcd 3.4 lacks the
      // watch progress requests that WatchList needs (kwok's watches then fail).
      "--endpoint-reconciler-type=none", "--feature-gates=WatchList=false",
    ]);
    // etcd is ready when the apiserver is: /readyz includes its etcd check.
    await until("kube-apiserver /readyz", async () => (await api.request("GET", "/readyz")).status === 200);
    const apiReadySeconds = (Date.now() - started) / 1000;

    startProcess("kube-controller-manager", bin("kube-controller-manager"), [
      `--kubeconfig=${kubeconfig}`, "--leader-elect=false", "--use-service-account-credentials=false",
      `--root-ca-file=${file("serving.crt")}`, `--service-account-private-key-file=${file("sa.key")}`,
      "--bind-address=127.0.0.1", `--secure-port=${cmPort}`, `--cert-dir=${file("cm-certs")}`,
      // Every controller: node-lifecycle lifts the not-ready taint from the fake node, the garbage
      // collector lets deletes finish, the PV binder binds claims, the job controller runs migrations.
      "--controllers=*",
    ]);
    startProcess("kube-scheduler", bin("kube-scheduler"), [
      `--kubeconfig=${kubeconfig}`, "--leader-elect=false", "--bind-address=127.0.0.1", `--secure-port=${schedPort}`,
      `--cert-dir=${file("scheduler-certs")}`,
    ]);
    startProcess("kwok", bin("kwok"), [
      `--kubeconfig=${kubeconfig}`, `--config=${path.join(k8sToolsDir(), "kwok-stages.yaml")}`,
      "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
      "--node-lease-duration-seconds=40", "--node-ip=10.0.0.1", "--cidr=10.244.0.0/16",
      `--server-address=127.0.0.1:${kwokPort}`,
    ]);

    await api.create("/api/v1/nodes", {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: "kwok-node-0", annotations: { "kwok.x-k8s.io/node": "fake" }, labels: { type: "kwok", "kubernetes.io/hostname": "kwok-node-0" } },
      status: {
        capacity: { cpu: "32", memory: "256Gi", pods: "110" },
        allocatable: { cpu: "32", memory: "256Gi", pods: "110" },
      },
    });
    await until("the fake node Ready and untainted", async () => {
      const node = await api.get("/api/v1/nodes/kwok-node-0");
      const ready = node.status?.conditions?.some((c: any) => c.type === "Ready" && c.status === "True");
      return ready && !(node.spec?.taints ?? []).length;
    });
    await until("the default ServiceAccount", async () => (await api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")).status === 200);
    await until("kube-scheduler /healthz", async () => (await healthz(schedPort)) === 200);
    const startSeconds = (Date.now() - started) / 1000;
    process.stderr.write(`      [k8s] control plane ready in ${startSeconds.toFixed(1)} s (apiserver ${apiReadySeconds.toFixed(1)} s) at ${server}\n`);

    if (options.snapshotCrds) {
      const crdDir = path.join(k8sToolsDir(), "crds");
      for (const f of fs.readdirSync(crdDir).sort()) {
        for (const doc of YAML.parseAllDocuments(fs.readFileSync(path.join(crdDir, f), "utf8"))) {
          const crd = doc.toJS();
          if (!crd) continue;
          await api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
          await until(`CRD ${crd.metadata.name} Established`, async () => {
            const got = await api.get(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
            return got.status?.conditions?.some((c: any) => c.type === "Established" && c.status === "True");
          });
        }
      }
    }

    return {
      kubeconfig,
      server,
      api,
      startSeconds,
      until,
      async addVolumes(storageClass, count, size = "10Gi") {
        const have = await api.request("GET", `/apis/storage.k8s.io/v1/storageclasses/${storageClass}`);
        if (have.status === 404) {
          await api.create("/apis/storage.k8s.io/v1/storageclasses", {
            apiVersion: "storage.k8s.io/v1",
            kind: "StorageClass",
            metadata: { name: storageClass },
            provisioner: "kubernetes.io/no-provisioner",
            volumeBindingMode: "Immediate",
          });
        }
        for (let i = 0; i < count; i++) {
          await api.create("/api/v1/persistentvolumes", {
            apiVersion: "v1",
            kind: "PersistentVolume",
            metadata: { generateName: `${storageClass}-pv-` },
            spec: {
              storageClassName: storageClass,
              capacity: { storage: size },
              accessModes: ["ReadWriteOnce"],
              persistentVolumeReclaimPolicy: "Retain",
              hostPath: { path: `/tmp/stackpin-test-pv-${i}` },
            },
          });
        }
      },
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

function healthz(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    // The scheduler serves /healthz with a certificate it made itself; only the status matters here.
    const req = https.request({ host: "127.0.0.1", port, path: "/healthz", rejectUnauthorized: false, timeout: 5000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
}

/** The product's own client on the cluster's kubeconfig, with `create` for the tests' setup. */
function client(kubeconfig: string): KubeApi {
  const api = kubeClient({}, { KUBECONFIG: kubeconfig });
  return {
    request: api.request,
    get: api.get,
    close: api.close,
    async create(collection, object) {
      const r = await api.request<any>("POST", collection, object);
      if (r.status !== 201) throw new Error(`POST ${collection}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
      return r.body;
    },
  };
}

/** What an {@link EndpointWatch} saw. */
export interface EndpointSamples {
  samples: number;
  minReady: number;
  /** Samples in which the Service had no ready endpoint: an outage. */
  zeroReady: number;
}

/** Samples a Service's ready endpoints (its EndpointSlices) every `everyMs` until `stop()`. */
export interface EndpointWatch {
  stop(): Promise<EndpointSamples>;
}

/** Starts sampling the ready endpoints of `namespace/service`, as a client of the Service would see them. */
export function watchEndpoints(api: KubeApi, namespace: string, service: string, everyMs = 50): EndpointWatch {
  const seen: EndpointSamples = { samples: 0, minReady: Number.POSITIVE_INFINITY, zeroReady: 0 };
  let stopping = false;
  const loop = (async () => {
    while (!stopping) {
      const at = Date.now();
      const slices = await api.get(`/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D${service}`);
      const ready = slices.items.flatMap((s: any) => s.endpoints ?? []).filter((e: any) => e.conditions?.ready).length;
      seen.samples++;
      seen.minReady = Math.min(seen.minReady, ready);
      if (ready === 0) seen.zeroReady++;
      await new Promise((r) => setTimeout(r, Math.max(0, everyMs - (Date.now() - at))));
    }
  })();
  return {
    async stop() {
      stopping = true;
      await loop;
      return seen;
    },
  };
}
