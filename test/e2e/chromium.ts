import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** Debian's Chromium (`apt-get install chromium`); `STACKPIN_CHROMIUM` names another binary. */
export const chromiumBinary = process.env.STACKPIN_CHROMIUM ?? "/usr/bin/chromium";

/**
 * Chromium for the tests that look at a page, or the reason it cannot run: skipped with a banner,
 * unless STACKPIN_REQUIRE_PROM=1 (set by .ci/run for the incident suite), where it fails.
 */
export function chromiumOrSkip(ctx: Mocha.Context): void {
  if (fs.existsSync(chromiumBinary)) return;
  const reason = `no Chromium at ${chromiumBinary} (apt-get install chromium)`;
  if (process.env.STACKPIN_REQUIRE_PROM === "1") throw new Error(`the incident page test needs it: ${reason}`);
  const banner = "!".repeat(78);
  process.stderr.write(`\n${banner}\n  INCIDENT PAGE TEST SKIPPED: ${reason}.\n${banner}\n`);
  ctx.skip();
}

/** Processes whose command line names `marker` (Chromium's helpers carry its --user-data-dir). */
function processesNaming(marker: string): number[] {
  return fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e)).flatMap((e) => {
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, "utf8");
      if (stat.split(") ")[1]?.[0] === "Z") return [];
      return fs.readFileSync(`/proc/${e}/cmdline`, "utf8").includes(marker) ? [Number(e)] : [];
    } catch {
      return [];
    }
  });
}

/**
 * Runs headless Chromium once on `url` with a profile of its own in a temp dir, resolving with what it
 * printed on stdout once it exits (at most `timeoutMs`, then it is killed); then waits until none of its
 * helper processes is left, and removes the profile.
 */
async function runChromium(args: string[], url: string, timeoutMs = 180_000): Promise<string> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-chromium-"));
  try {
    const child = spawn(
      chromiumBinary,
      // As root Chromium needs --no-sandbox; no GPU, no /dev/shm in containers.
      ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", `--user-data-dir=${profile}`, ...args, url],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
    clearTimeout(timer);
    if (code !== 0) throw new Error(`chromium exited ${code}:\n${stderr.split("\n").slice(-10).join("\n")}`);
    const deadline = Date.now() + 30_000;
    while (processesNaming(profile).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const left = processesNaming(profile);
    if (left.length) throw new Error(`chromium left processes ${left.join(", ")}`);
    return stdout;
  } finally {
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

/** The page's DOM as Chromium built it (after its scripts and layout), serialised. */
export function renderedDom(url: string): Promise<string> {
  return runChromium(["--dump-dom"], url);
}

/** A PNG screenshot of the page at `width` x `height` CSS pixels. */
export async function screenshot(url: string, out: string, width = 1000, height = 900): Promise<void> {
  await runChromium([`--screenshot=${out}`, `--window-size=${width},${height}`], url);
  if (!fs.existsSync(out)) throw new Error(`chromium wrote no screenshot to ${out}`);
}

/** Width and height from a PNG's IHDR chunk. */
export function pngSize(file: string): { width: number; height: number } {
  const b = fs.readFileSync(file);
  if (b.toString("latin1", 1, 4) !== "PNG") throw new Error(`${file} is not a PNG`);
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}
