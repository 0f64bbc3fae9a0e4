import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import type { VerifySettings } from "../../lib/versions/schema";
import { refusalMarker } from "../../lib/engine/refusal";

/** Inputs of a {@link HealthGate}. */
export interface HealthGateArgs {
  /** The health URL of the slot about to take traffic (not through the switch). */
  url: pulumi.Input<string>;
  /** The version it must report. */
  expectVersion: pulumi.Input<string>;
  /** The process id, so a restarted slot is checked again. */
  pid: pulumi.Input<number>;
  health: VerifySettings["health"];
}

interface GateProps {
  url: string;
  expectVersion: string;
  pid: number;
  health: VerifySettings["health"];
  verifier: string;
}

async function check(props: GateProps) {
  // The same health check stackpin runs after an apply, loaded by path inside the provider process.
  const { waitHealthy } = require(props.verifier) as typeof import("../../lib/verify/verification");
  // The marker lets stackpin tell a failed gate (the release never took traffic) from other failures.
  const { attempts } = await waitHealthy(props.url, props.health, props.expectVersion).catch((err: Error) => {
    throw new Error(`${refusalMarker("health-gate")} ${err.message.split("\n")[0]}`);
  });
  return { ...props, attempts, checkedAt: new Date().toISOString() };
}

const gateProvider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: GateProps) {
    return { id: `gate-${Date.now()}`, outs: await check(inputs) };
  },
  async diff(_id: string, olds: GateProps, news: GateProps) {
    const changed = olds.url !== news.url || olds.expectVersion !== news.expectVersion || olds.pid !== news.pid;
    return { changes: changed || JSON.stringify(olds.health) !== JSON.stringify(news.health) };
  },
  async update(_id: string, _olds: GateProps, news: GateProps) {
    return { outs: await check(news) };
  },
};

/**
 * Health-checks a slot before the traffic switch depends on it: when the check fails, the update fails
 * here and the switch is never touched, so users never reach an unhealthy release.
 */
export class HealthGate extends pulumi.dynamic.Resource {
  constructor(name: string, args: HealthGateArgs, opts?: pulumi.CustomResourceOptions) {
    const verifier = path.join(__dirname, "..", "..", "lib", "verify", "verification.js");
    super(gateProvider, name, { ...args, verifier, attempts: undefined, checkedAt: undefined }, opts, "stackpin-local", "HealthGate");
  }
}
