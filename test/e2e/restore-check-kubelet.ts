import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { findPgBin, startPostgres } from "../../scripts/local-postgres";
import type { K8sCluster } from "./k8s-cluster";

/**
 * The kubelet's part for stackpin's restore-check pods, which kwok leaves alone (tools/k8s/kwok-stages.yaml):
 * no container runs on kwok's fake node, so the test runs the pod's own command, as the API holds it, on
 * this machine, with PGDATA pointing at a local directory that stands in for the restored volume, and
 * writes the outcome into the pod's status as a kubelet would (exit code; with FallbackToLogsOnError the
 * output's last lines as the termination message). What it cannot stand in for: a CSI driver copying
 * the snapshot's blocks into the volume.
 */
export interface CheckRun {
  pod: string;
  exitCode: number;
  output: string;
  /** The pod's env as the API holds it (PGDATA before the stand-in replaced it). */
  env: Record<string, string>;
}

/**
 * A PostgreSQL data directory holding what stackpin's migrations record up to `schema` (the local
 * program's `stackpin_migrations`), stopped, under `dir` — or an empty directory for `schema: undefined`
 * (what a restore that no CSI driver filled mounts).
 */
export async function restoredVolumeStandIn(dir: string, schema: number | undefined): Promise<string> {
  fs.mkdirSync(dir, { recursive: true });
  if (schema === undefined) {
    const empty = path.join(dir, "empty");
    fs.mkdirSync(empty);
    return empty;
  }
  const pg = await startPostgres(dir);
  try {
    const postgres = pg.url.replace(/\/app$/, "/postgres");
    await pg.query("create table stackpin_migrations (schema int primary key, name text not null, applied_at timestamptz not null default now())", [], postgres);
    for (let s = 1; s <= schema; s++) await pg.query("insert into stackpin_migrations (schema, name) values ($1, $2)", [s, `m${s}`], postgres);
  } finally {
    pg.stop();
  }
  return pg.dataDir;
}

/**
 * Waits for the next restore-check pod that has no outcome yet, runs it against `volume`, and writes its
 * outcome; undefined when `over()` says the operation ended before any such pod appeared.
 */
export async function playCheckPod(cluster: K8sCluster, namespace: string, volume: string, over: () => boolean): Promise<CheckRun | undefined> {
  const found = await cluster.until(
    "a restore-check pod waiting to run",
    async () => {
      const ended = over();
      const list = await cluster.api.get(`/api/v1/namespaces/${namespace}/pods?labelSelector=stackpin.dev%2Fcheck%3Drestore`);
      const pod = list.items.find((p: any) => !p.metadata.deletionTimestamp && !["Succeeded", "Failed"].includes(p.status?.phase) && p.spec.nodeName);
      return pod ? { pod } : ended ? { pod: undefined } : undefined;
    },
    240_000,
    100,
  );
  const pod = found.pod;
  if (!pod) return undefined;
  const container = pod.spec.containers[0];
  const env: Record<string, string> = Object.fromEntries((container.env ?? []).map((e: any) => [e.name, e.value ?? ""]));
  const pgBin = findPgBin();
  if (!pgBin) throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)");
  const { exitCode, output } = await run(container.command, { ...env, PGDATA: volume, PATH: `${pgBin}:${process.env.PATH}` });
  const now = new Date().toISOString();
  const patched = await cluster.api.request(
    "PATCH",
    `/api/v1/namespaces/${namespace}/pods/${pod.metadata.name}/status`,
    {
      status: {
        phase: exitCode === 0 ? "Succeeded" : "Failed",
        // The conditions a kubelet sets on a pod whose one container ended (the provider reads them).
        conditions: [
          { type: "PodScheduled", status: "True", lastTransitionTime: now },
          { type: "Initialized", status: "True", lastTransitionTime: now },
          ...["Ready", "ContainersReady"].map((type) => ({ type, status: "False", reason: exitCode === 0 ? "PodCompleted" : "PodFailed", lastTransitionTime: now })),
        ],
        containerStatuses: [
          {
            name: container.name,
            image: container.image,
            imageID: "",
            ready: false,
            restartCount: 0,
            started: false,
            state: {
              terminated: {
                exitCode,
                reason: exitCode === 0 ? "Completed" : "Error",
                startedAt: now,
                finishedAt: now,
                // FallbackToLogsOnError: the last lines of the output of a container that failed.
                ...(exitCode !== 0 ? { message: output.trimEnd().split("\n").slice(-5).join("\n") } : {}),
              },
            },
          },
        ],
      },
    },
    "application/merge-patch+json",
  );
  if (patched.status !== 200) throw new Error(`patching ${pod.metadata.name}'s status: ${JSON.stringify(patched.body)}`);
  return { pod: pod.metadata.name, exitCode, output, env };
}

function run(command: string[], env: Record<string, string>): Promise<{ exitCode: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command[0], command.slice(1), { env, cwd: "/", stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ exitCode: code ?? 1, output }));
  });
}
