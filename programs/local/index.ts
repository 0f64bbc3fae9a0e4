import * as crypto from "node:crypto";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import type { ProgramFactory } from "../types";
import { LocalFile } from "./file";

/**
 * The embedded default target: everything it creates lives under the stack's state directory, through
 * Node dynamic providers, so it needs no provider binaries and no cloud account.
 *
 * Config (in the project namespace): `message` (required), `replicas`, `features` (object), `banner`,
 * `region`, `rolloutDelayMs` (a slow rollout), `dataDir` (a sub-directory; changing it replaces the files), `apiToken` (secret).
 */
export const localProgram: ProgramFactory = (context) => async () => {
  const config = new pulumi.Config();
  const version = new pulumi.Config("stackpin").require("version");
  const message = config.require("message");
  const replicas = config.getNumber("replicas") ?? 1;
  const features = config.getObject<Record<string, unknown>>("features") ?? {};
  const banner = config.get("banner");
  const region = config.get("region") ?? "local";
  const dir = path.join(context.stateDir, config.get("dataDir") ?? "app");
  const settings = new LocalFile("app-settings", {
    path: path.join(dir, "settings.json"),
    content: JSON.stringify({ version, message, replicas, features, banner, region }, null, 2) + "\n",
    delayMs: config.getNumber("rolloutDelayMs") ?? 0,
  });
  const token = config.getSecret("apiToken");
  const tokenFile = token
    ? new LocalFile("api-token", { path: path.join(dir, "api-token"), content: token, mode: "600" })
    : undefined;
  return {
    version,
    message,
    replicas,
    features,
    region,
    settingsPath: settings.path,
    tokenPath: tokenFile?.path,
    tokenSha256: token?.apply((t) => crypto.createHash("sha256").update(t).digest("hex")),
  };
};
