import { strict as assert } from "node:assert";
import { spawnSync } from "node:child_process";
import * as os from "node:os";
import { livenessOf, nodeCommand, pulumiCommand } from "../../lib/engine/interruption";

describe("judging whether a lock's holder is gone", () => {
  const here = os.hostname();
  const longAgo = new Date(Date.now() - 3_600_000).toISOString();

  it("a running holder of the expected program is alive", () => {
    const l = livenessOf({ pid: process.pid, hostname: here, since: new Date().toISOString() }, nodeCommand);
    assert.equal(l.state, "alive", l.detail);
  });

  it("a pid that no longer exists is dead", () => {
    const child = spawnSync(process.execPath, ["-e", "0"]);
    const l = livenessOf({ pid: child.pid as number, hostname: here, since: longAgo }, pulumiCommand);
    assert.equal(l.state, "dead", l.detail);
  });

  it("a pid reused by a process started after the lock was taken is dead", () => {
    const l = livenessOf({ pid: process.pid, hostname: here, since: longAgo }, nodeCommand);
    assert.equal(l.state, "dead", l.detail);
    assert.match(l.detail, /started .* after/);
  });

  it("a pid now running another program than the holder's is dead", () => {
    const l = livenessOf({ pid: process.pid, hostname: here, since: new Date().toISOString() }, pulumiCommand);
    assert.equal(l.state, "dead", l.detail);
  });

  it("a holder on another host cannot be judged from here", () => {
    const l = livenessOf({ pid: 1, hostname: `not-${here}`, since: longAgo }, pulumiCommand);
    assert.equal(l.state, "unknown", l.detail);
  });
});
