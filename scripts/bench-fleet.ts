/**
 * `npm run bench:fleet`: how a fleet rollback's wall time scales with the number of stacks and the
 * concurrency, printed, not asserted. N copies of `stacks/dev` (local target, file:// backend, in a temp
 * project) are deployed v1 then v2; each measured run is one fleet rollback of N stacks in a single wave
 * of the given concurrency (no canary, so only the concurrency shapes it), alternating the target
 * between v1 and v2 so every run changes every stack. The wall time includes the fleet's previews.
 *
 * BENCH_FLEET=quick|full (default quick): 1 and 8 stacks, or 1, 8 and 32; BENCH_FLEET_SIZES=32 names the sizes.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fleetRollback } from "../lib/operations/fleet";
import { locatePulumi } from "../lib/engine/pulumi-cli";
import { tempProject } from "../test/e2e/harness";

const full = process.env.BENCH_FLEET === "full";
// BENCH_FLEET_SIZES=32 measures only those sizes (a comma-separated list), e.g. to add a point later.
const sizes = process.env.BENCH_FLEET_SIZES ? process.env.BENCH_FLEET_SIZES.split(",").map(Number) : full ? [1, 8, 32] : [1, 8];
const concurrencies = [1, 4, 8];

async function main(): Promise<void> {
  const pulumi = await locatePulumi({ explicit: process.env.STACKPIN_PULUMI, searchPath: process.env.PATH });
  const project = tempProject(pulumi, { stack: "fleet-00" });
  const max = Math.max(...sizes);
  const names = Array.from({ length: max }, (_, i) => `fleet-${String(i).padStart(2, "0")}`);
  const src = path.join(project.dir, "stacks", "fleet-00");
  for (const n of names.slice(1)) fs.cpSync(src, path.join(project.dir, "stacks", n), { recursive: true });
  const rows: string[] = [];
  try {
    const t0 = performance.now();
    // Setup: every stack at v1 then v2, two at a time (the machine's cores).
    const queue = [...names];
    const worker = async () => {
      for (let s = queue.shift(); s; s = queue.shift()) {
        for (const v of ["v1", "v2"]) {
          const r = await project.cli(["deploy", "--stack", s, "--version", v, "--yes"]);
          if (r.code !== 0) throw new Error(`deploy ${v} to ${s}: exit ${r.code}\n${r.stderr}`);
        }
      }
    };
    await Promise.all([worker(), worker()]);
    process.stderr.write(`setup: ${max} stacks at v2 in ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);

    // Where each stack is, so that every measured run changes every stack it covers.
    const at = Object.fromEntries(names.map((n) => [n, "v2"]));
    const other = (v: string) => (v === "v1" ? "v2" : "v1");
    const fleetFile = path.join(project.dir, "fleet.yaml");
    const fleet = (stacks: string[], c: number, to: string) => {
      fs.writeFileSync(fleetFile, `waves:\n  - name: all\n    concurrency: ${c}\n    stacks: [${stacks.join(", ")}]\n`);
      return fleetRollback({ projectDir: project.dir, selection: { fleetFile }, to, env: project.env });
    };
    rows.push("| stacks | concurrency | wall time | per stack (median) | stacks/min | load (1 min) |", "|---|---|---|---|---|---|");
    for (const n of sizes) {
      for (const c of n === 1 ? [1] : concurrencies) {
        const stacks = names.slice(0, n);
        const target = other(at[stacks[0]]);
        const behind = stacks.filter((s) => at[s] === target);
        if (behind.length) await fleet(behind, 2, other(target)); // unmeasured: line them up
        const start = performance.now();
        const r = await fleet(stacks, c, target);
        const wall = performance.now() - start;
        for (const s of stacks) at[s] = target;
        const per = r.results.map((x) => x.durationMs ?? 0).sort((a, b) => a - b)[Math.floor(r.results.length / 2)];
        const row = `| ${n} | ${c} | ${(wall / 1000).toFixed(1)} s | ${(per / 1000).toFixed(1)} s | ${((n / wall) * 60000).toFixed(1)} | ${os.loadavg()[0].toFixed(1)} |`;
        rows.push(row);
        process.stderr.write(`${row}\n`);
      }
    }
  } finally {
    for (const s of names.slice(1)) await project.cli(["destroy", "--stack", s, "--yes"]);
    await project.teardown();
  }
  process.stdout.write(`\nfleet rollback, ${os.cpus().length} cores (${sizes.join(", ")} stacks):\n${rows.join("\n")}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exitCode = 1;
});
