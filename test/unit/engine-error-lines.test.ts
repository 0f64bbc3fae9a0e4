import { strict as assert } from "node:assert";
import { diagnosticText, engineErrorLines } from "../../lib/errors";

describe("engineErrorLines: the engine's own error lines from a CLI report", () => {
  it("keeps a provider's errors listed under \"N errors occurred:\" instead of the dangling header", () => {
    const report = [
      "Updating (prod):",
      "  kubernetes:batch/v1:Job check-restore (update):",
      "    error: 2 errors occurred:",
      "    \t* resource \"urn:…:Job::check\" was successfully created, but the Kubernetes API server reported that it failed to fully initialize or become live",
      "    \t* [Pod shop/check-x]: [Error] [stackpin:restore-impossible] the restored volume holds no PostgreSQL data directory",
      "error: update failed",
    ].join("\n");
    assert.equal(
      engineErrorLines(report),
      'resource "urn:…:Job::check" was successfully created, but the Kubernetes API server reported that it failed to fully initialize or become live\n' +
        "[Pod shop/check-x]: [Error] [stackpin:restore-impossible] the restored volume holds no PostgreSQL data directory",
    );
  });

  it("leaves single error lines as they were", () => {
    assert.equal(engineErrorLines("error: Preview failed: resource 'fast-ssd' does not exist\nerror: preview failed"), "Preview failed: resource 'fast-ssd' does not exist");
  });

  it("never leaves a bare \"N errors occurred:\" line, even with no error listed under it", () => {
    assert.equal(engineErrorLines("error: 1 error occurred:\nnothing listed"), "nothing listed");
    assert.equal(engineErrorLines("error: 1 error occurred:\nerror: Timeout occurred polling for 'nopv-data'\nerror: update failed"), "Timeout occurred polling for 'nopv-data'");
    assert.doesNotMatch(engineErrorLines("    error: 3 errors occurred:\n"), /errors? occurred/);
  });

  it("a progress line of the engine's diagnostics lists the provider's errors, without their count", () => {
    assert.equal(
      diagnosticText("4 errors occurred:\n\t* resource \"urn:…::app-green\" was successfully created, but …: 'shop-green' timed out waiting to be Ready\n\t* Minimum number of live Pods was not attained\n\n"),
      "resource \"urn:…::app-green\" was successfully created, but …: 'shop-green' timed out waiting to be Ready\nMinimum number of live Pods was not attained",
    );
    assert.equal(diagnosticText("1 error occurred:\n"), undefined);
    assert.equal(diagnosticText("  one plain warning  "), "one plain warning");
  });

  it("names the error that stopped an update held to a saved plan, not the planned steps it never reached", () => {
    const report = [
      "error: Cannot find module 'x'",
      "error: expected resource operations for urn:pulumi:dev::p::t::route but none were seen",
      "error: expected resource operations for urn:pulumi:dev::p::t::switch but none were seen",
      "error: update failed",
    ].join("\n");
    assert.equal(engineErrorLines(report), "Cannot find module 'x'");
    assert.equal(
      engineErrorLines("error: expected resource operations for urn:pulumi:dev::p::t::route but none were seen"),
      "expected resource operations for urn:pulumi:dev::p::t::route but none were seen",
    );
  });
});
