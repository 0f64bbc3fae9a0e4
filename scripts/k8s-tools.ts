/**
 * `npm run setup:k8s`: the binaries the real-Kubernetes tests need, built from Go modules into
 * tools/k8s/bin (git-ignored) and reused when present, one build after another (parallel Go builds on a
 * 2-core machine only fight), each build's time printed. etcd comes from Debian (`etcd-server`).
 *
 * - kube-apiserver, kube-controller-manager, kube-scheduler: Kubernetes 1.34.4 (tools/k8s/control-plane)
 * - kwok 0.8.0: fake nodes that drive pods to Running/Ready without a kubelet (`go install`)
 * - pulumi-resource-kubernetes 4.25.0: the Pulumi Kubernetes provider plugin (tools/k8s/provider)
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { packageRoot } from "../lib/engine/pulumi-cli";

const exec = promisify(execFile);

export const kubernetesVersion = "1.34.4";
export const kwokVersion = "0.8.0";
/** The provider plugin's version: the @pulumi/kubernetes release its module commit became (see tools/k8s/README.md). */
export const kubernetesProviderVersion = "4.25.0";

export const k8sToolsDir = (): string => path.join(packageRoot(), "tools", "k8s");
export const k8sBinDir = (): string => path.join(k8sToolsDir(), "bin");

interface Tool {
  name: string;
  /** Module directory the build runs in. */
  cwd: () => string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** Runs before the build (the provider's generated embed files). */
  prepare?: () => Promise<void>;
  /** Checks a cached binary is the pinned version; undefined when the binary cannot say. */
  version?: (bin: string) => Promise<boolean>;
}

const componentLdflags = `-s -w -X k8s.io/component-base/version.gitVersion=v${kubernetesVersion}`;
const says = (pattern: RegExp) => async (bin: string) => pattern.test((await exec(bin, ["--version"])).stdout);
const controlPlane = (cmd: string): Tool => ({
  name: cmd,
  cwd: () => path.join(k8sToolsDir(), "control-plane"),
  args: ["build", "-trimpath", "-ldflags", componentLdflags, "-o", path.join(k8sBinDir(), cmd), `k8s.io/kubernetes/cmd/${cmd}`],
  version: says(new RegExp(`v${kubernetesVersion.replace(/\./g, "\\.")}\\b`)),
});

export const k8sTools: Tool[] = [
  controlPlane("kube-apiserver"),
  controlPlane("kube-controller-manager"),
  controlPlane("kube-scheduler"),
  {
    name: "kwok",
    cwd: () => k8sToolsDir(),
    // No wrapper module needed: kwok's own go.mod builds as is; the checksum database pins it.
    args: ["install", "-trimpath", "-ldflags", "-s -w", `sigs.k8s.io/kwok/cmd/kwok@v${kwokVersion}`],
    env: { GOBIN: k8sBinDir() },
  },
  {
    name: "pulumi-resource-kubernetes",
    cwd: () => path.join(k8sToolsDir(), "provider"),
    args: [
      "build",
      "-trimpath",
      "-ldflags",
      `-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=${kubernetesProviderVersion}`,
      "-o",
      path.join(k8sBinDir(), "pulumi-resource-kubernetes"),
      ".",
    ],
    // Pulumi's modules are not in the checksum database reachable here; go.sum pins them instead.
    env: { GONOSUMDB: "github.com/pulumi" },
    prepare: () => writeProviderEmbeds(),
  },
];

/**
 * Writes the two files the provider's main embeds, as the module's own `generate.go` does: its
 * `schema.json` with the package version set, and `terraform-mapping.json`, both compacted.
 */
async function writeProviderEmbeds(): Promise<void> {
  const dir = path.join(k8sToolsDir(), "provider");
  const env = { ...process.env, GONOSUMDB: "github.com/pulumi", GOFLAGS: "-buildvcs=false -mod=readonly" };
  const { stdout } = await exec("go", ["list", "-m", "-f", "{{.Dir}}", "github.com/pulumi/pulumi-kubernetes/provider/v4"], { cwd: dir, env });
  let moduleDir = stdout.trim();
  if (!moduleDir) {
    await exec("go", ["mod", "download", "github.com/pulumi/pulumi-kubernetes/provider/v4"], { cwd: dir, env });
    moduleDir = (await exec("go", ["list", "-m", "-f", "{{.Dir}}", "github.com/pulumi/pulumi-kubernetes/provider/v4"], { cwd: dir, env })).stdout.trim();
  }
  const src = path.join(moduleDir, "cmd", "pulumi-resource-kubernetes");
  const schema = JSON.parse(fs.readFileSync(path.join(src, "schema.json"), "utf8"));
  schema.version = kubernetesProviderVersion;
  fs.writeFileSync(path.join(dir, "schema-embed.json"), JSON.stringify(schema));
  fs.writeFileSync(path.join(dir, "terraform-mapping-embed.json"), JSON.stringify(JSON.parse(fs.readFileSync(path.join(src, "terraform-mapping.json"), "utf8"))));
}

/** What {@link ensureK8sTools} did for one binary. */
export interface ToolResult {
  name: string;
  path: string;
  built: boolean;
  seconds: number;
}

/**
 * Builds each missing binary (or one that says another version), reusing the rest. Go runs at the
 * lowest priority, since other work shares the machine.
 */
export async function ensureK8sTools(say: (line: string) => void = () => undefined): Promise<ToolResult[]> {
  fs.mkdirSync(k8sBinDir(), { recursive: true });
  const results: ToolResult[] = [];
  for (const tool of k8sTools) {
    const bin = path.join(k8sBinDir(), tool.name);
    const started = Date.now();
    if (fs.existsSync(bin) && (await (tool.version?.(bin) ?? Promise.resolve(true)).catch(() => false))) {
      results.push({ name: tool.name, path: bin, built: false, seconds: 0 });
      say(`${tool.name}: reused ${bin}`);
      continue;
    }
    say(`${tool.name}: building from Go modules (minutes the first time)`);
    await tool.prepare?.();
    await exec("nice", ["-n", "19", "go", ...tool.args], {
      cwd: tool.cwd(),
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, GOFLAGS: "-buildvcs=false -mod=readonly", ...tool.env },
    });
    const seconds = (Date.now() - started) / 1000;
    results.push({ name: tool.name, path: bin, built: true, seconds });
    say(`${tool.name}: built in ${seconds.toFixed(0)} s`);
  }
  return results;
}

/** The etcd server (Debian's `etcd-server`), found on PATH; its version line. */
export async function etcdVersion(): Promise<string> {
  try {
    const { stdout } = await exec("etcd", ["--version"]);
    return stdout.split("\n")[0].trim();
  } catch {
    throw new Error("no etcd on PATH: install Debian's etcd-server (apt-get install -y --no-install-recommends etcd-server)");
  }
}

if (require.main === module) {
  const started = Date.now();
  (async () => {
    console.error(await etcdVersion());
    const results = await ensureK8sTools((line) => console.error(line));
    const built = results.filter((r) => r.built).map((r) => `${r.name} ${r.seconds.toFixed(0)} s`);
    console.log(
      `Kubernetes test tools in ${k8sBinDir()}: ${built.length ? `built ${built.join(", ")}` : "all reused"} (${((Date.now() - started) / 1000).toFixed(1)} s)`,
    );
  })().catch((err: Error & { stderr?: string }) => {
    console.error(`error: ${(err.stderr || err.message).trim().split("\n").slice(-8).join("\n")}`);
    process.exitCode = 10;
  });
}
