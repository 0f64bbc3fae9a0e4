import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import { ExitCode } from "../../lib/errors";
import { fakePrometheus } from "./fake-prometheus";
import { freePort, json, pulumiOrSkip, StartedCli, TempProject, tempProject } from "./harness";

describe("watch follows the stack: a deploy during a watch moves what it probes and where it rolls back to", function () {
  let project: TempProject;
  let prom: Awaited<ReturnType<typeof fakePrometheus>>;
  const signals: Record<string, number> = { "job:errors:ratio": 0.002 };
  let watcher: StartedCli | undefined;
  /** Stops the watch (its process group) if it still runs, and waits for it to end. */
  const stopWatcher = async () => {
    if (!watcher) return;
    try {
      process.kill(-watcher.pid, "SIGTERM");
    } catch {
      // it ended already
    }
    await watcher.done;
    watcher = undefined;
  };

  before(async function () {
    project = tempProject(await pulumiOrSkip(this));
    prom = await fakePrometheus(signals);
    const stackFile = path.join(project.dir, "stacks", "dev", "stack.yaml");
    fs.writeFileSync(
      stackFile,
      stringify({
        ...parse(fs.readFileSync(stackFile, "utf8")),
        policy: {
          triggers: {
            intervalMs: 200,
            prometheus: prom.url,
            // The health rule never fires here; its detail shows whether the endpoint it probes answers.
            rules: [
              { name: "error rate above 5%", query: "job:errors:ratio", above: 0.05 },
              { name: "health", healthFailures: 1_000_000 },
            ],
          },
        },
      }),
    );
    for (const v of ["v1", "v2"]) assert.equal((await project.cli(["deploy", "--stack", "dev", "--version", v, "--yes"])).code, ExitCode.ok);
  });
  after(async () => {
    // Also when a test timed out waiting for a line the watch never printed.
    await stopWatcher();
    await prom?.close();
    await project?.teardown();
  });

  it("after a deploy of v4 on a new port mid-watch, it probes v4's endpoint and rolls back v4 -> v2, not v2 -> v1", async () => {
    const port = await freePort();
    const v1 = parse(fs.readFileSync(path.join(project.dir, "stacks", "dev", "v1.yaml"), "utf8"));
    // A new public port replaces the traffic switch: the endpoint the watch started with goes away.
    project.writeVersion("v4", stringify({ ...v1, version: "v4", config: { ...v1.config, message: "hello from v4", publicPort: port } }));

    watcher = project.start(["watch", "--stack", "dev", "--auto-rollback", "--json"], { detached: true });
    try {
      await watcher!.waitFor(/watching v2 on dev \(revision \d+\) at http:\/\/127\.0\.0\.1:\d+; a trigger rolls back to v1\n[^\n]*ok error rate above 5%[^\n]*ok health: healthy/);
      const deployed = await project.cli(["deploy", "--stack", "dev", "--version", "v4", "--yes"]);
      assert.equal(deployed.code, ExitCode.ok, deployed.stderr);
      // The first evaluation after the watch saw the deploy probes the new endpoint, and it answers.
      await watcher!.waitFor(new RegExp(`watching v4 on dev \\(revision \\d+\\) at http://127\\.0\\.0\\.1:${port}; a trigger rolls back to v2\\n[^\\n]*ok error rate above 5%[^\\n]*ok health: healthy`));
      signals["job:errors:ratio"] = 0.09;
      const r = await watcher!.done;
      assert.equal(r.code, ExitCode.ok, r.stderr);
      assert.match(r.stderr, /FIRED error rate above 5%: 0.09 > 0.05/);
      const result = json(r);
      assert.deepEqual([result.rollback.from, result.rollback.to], ["v4", "v2"]);
      const history = json(await project.cli(["history", "--stack", "dev", "--json"]));
      assert.deepEqual([history[0].op, history[0].from, history[0].to, history[0].result], ["rollback", "v4", "v2", "succeeded"]);
    } finally {
      signals["job:errors:ratio"] = 0.002;
      await stopWatcher();
    }
  });
});
