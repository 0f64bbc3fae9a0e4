/**
 * Helm 4, for `npm run bench:k8s` only (CI does not build it): `go install helm.sh/helm/v4/cmd/helm@v4.3.2`
 * into tools/helm/bin (git-ignored), reused when present. The build's time is kept beside the binary, so
 * a run that reuses it can still say what the build cost.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { packageRoot } from "../lib/engine/pulumi-cli";

const exec = promisify(execFile);

export const helmVersion = "4.3.2";
export const helmBinDir = (): string => path.join(packageRoot(), "tools", "helm", "bin");

/** What {@link ensureHelm} found or built. */
export interface HelmTool {
  path: string;
  /** What `helm version --short` says. */
  version: string;
  /** Built by this call (else reused). */
  built: boolean;
  /** This call's build time, or the recorded one of the build being reused (undefined when not recorded). */
  buildSeconds?: number;
  /** The Go toolchain that built it (`go version`), when this call built it or recorded it. */
  go?: string;
}

/** Builds Helm into tools/helm/bin unless a binary of that version is there; Go at the lowest priority. */
export async function ensureHelm(say: (line: string) => void = () => undefined): Promise<HelmTool> {
  const bin = path.join(helmBinDir(), "helm");
  const stamp = path.join(helmBinDir(), "helm.build.json");
  const versionOf = async () => (await exec(bin, ["version", "--short"])).stdout.trim();
  if (fs.existsSync(bin)) {
    const version = await versionOf().catch(() => "");
    if (version.startsWith(`v${helmVersion}`)) {
      const recorded = fs.existsSync(stamp) ? (JSON.parse(fs.readFileSync(stamp, "utf8")) as { seconds?: number; go?: string }) : {};
      say(`helm ${version}: reused ${bin}${recorded.seconds !== undefined ? ` (its build took ${recorded.seconds.toFixed(0)} s)` : ""}`);
      return { path: bin, version, built: false, buildSeconds: recorded.seconds, go: recorded.go };
    }
  }
  fs.mkdirSync(helmBinDir(), { recursive: true });
  const go = (await exec("go", ["version"])).stdout.trim();
  say(`helm ${helmVersion}: building from its Go module with ${go} (minutes the first time)`);
  const started = Date.now();
  // Stamped as Helm's own Makefile does: a plain `go install` says only "v4.3".
  const ldflags = `-s -w -X helm.sh/helm/v4/internal/version.version=v${helmVersion}`;
  await exec("nice", ["-n", "19", "go", "install", "-trimpath", "-ldflags", ldflags, `helm.sh/helm/v4/cmd/helm@v${helmVersion}`], {
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, GOBIN: helmBinDir(), GOFLAGS: "-buildvcs=false" },
  });
  const buildSeconds = (Date.now() - started) / 1000;
  fs.writeFileSync(stamp, `${JSON.stringify({ seconds: buildSeconds, go, at: new Date().toISOString() })}\n`);
  const version = await versionOf();
  say(`helm ${version}: built in ${buildSeconds.toFixed(0)} s`);
  return { path: bin, version, built: true, buildSeconds, go };
}
