import * as fs from "node:fs";
import * as path from "node:path";
import { waitHealthy } from "../../lib/verify/verification";
import type { SwitchOutcome, SwitchRequest } from "../types";

/**
 * The local switch: when the slot's service process answers its health check reporting the version, the
 * traffic switch's route file names it (written beside and renamed over, so the proxy never reads half of it;
 * the proxy reads it per request). The content is what the program would write, so the engine's update
 * that follows writes the same route.
 */
export async function switchLocal(request: SwitchRequest): Promise<SwitchOutcome> {
  const slots = (request.outputs.slots ?? {}) as Record<string, { version?: string; port?: number; pid?: number }>;
  const slot = slots[request.slot];
  if (!slot?.port) return { moved: false, reason: `the ${request.slot} slot runs nothing` };
  if (slot.version !== request.version) return { moved: false, reason: `the ${request.slot} slot runs ${slot.version}, not ${request.version}` };
  const target = `http://127.0.0.1:${slot.port}`;
  try {
    // One attempt: a warm slot answers at once; anything else goes through the engine's health gate.
    await waitHealthy(`${target}${request.health.path}`, { ...request.health, retries: 0 }, request.version);
  } catch (err) {
    return { moved: false, reason: `the ${request.slot} slot is not healthy: ${(err as Error).message.split("\n")[0]}` };
  }
  const route = path.join(request.context.stateDir, "run", "route.json");
  if (!fs.existsSync(route)) return { moved: false, reason: "the traffic switch has no route file" };
  const scratch = `${route}.${process.pid}.switch`;
  fs.writeFileSync(scratch, JSON.stringify({ slot: request.slot, version: request.version, target }));
  fs.renameSync(scratch, route);
  const at = Date.now();
  return { moved: true, movedAt: at, settledAt: at, detail: `the traffic switch routes to the ${request.slot} slot (${target})` };
}
