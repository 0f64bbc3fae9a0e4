import * as pulumi from "@pulumi/pulumi";

/** Inputs of a {@link RotatingSecret}. */
export interface RotatingSecretArgs {
  /** The generation; a higher one generates a new value. stackpin never lowers it. */
  generation: pulumi.Input<number>;
  /** The file the service reads the secret from (mode 600). */
  path: pulumi.Input<string>;
}

interface SecretProps {
  generation: number;
  path: string;
}

interface SecretOuts extends SecretProps {
  value: string;
  fingerprint: string;
}

// Serialized into the dynamic provider process, so it must reach modules through require, not imports.
function writeSecret(props: SecretProps): SecretOuts {
  const crypto = require("node:crypto") as typeof import("node:crypto");
  const fs = require("node:fs") as typeof import("node:fs");
  const p = require("node:path") as typeof import("node:path");
  const value = crypto.randomBytes(24).toString("base64url");
  fs.mkdirSync(p.dirname(props.path), { recursive: true });
  // Written beside and renamed over, so a service reading it never sees half a file.
  const tmp = `${props.path}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ generation: props.generation, value }), { mode: 0o600 });
  fs.renameSync(tmp, props.path);
  return { ...props, value, fingerprint: crypto.createHash("sha256").update(value).digest("hex").slice(0, 12) };
}

// Serialized into the dynamic provider process, so it must reach modules through require, not imports.
const secretProvider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: SecretProps) {
    return { id: inputs.path, outs: writeSecret(inputs) };
  },
  async diff(_id: string, olds: SecretOuts, news: SecretProps) {
    return {
      changes: olds.generation !== news.generation || olds.path !== news.path,
      replaces: olds.path !== news.path ? ["path"] : [],
    };
  },
  async update(_id: string, olds: SecretOuts, news: SecretProps) {
    // Only a higher generation makes a new value; a lower one keeps the current secret.
    return { outs: news.generation > olds.generation ? writeSecret(news) : olds };
  },
  async delete(_id: string, props: SecretOuts) {
    const fs = require("node:fs") as typeof import("node:fs");
    fs.rmSync(props.path, { force: true });
  },
};

/** A generated secret, held only as a Pulumi secret in state and in a 600 file for the service. */
export class RotatingSecret extends pulumi.dynamic.Resource {
  declare readonly generation: pulumi.Output<number>;
  declare readonly fingerprint: pulumi.Output<string>;
  declare readonly value: pulumi.Output<string>;
  constructor(name: string, args: RotatingSecretArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      secretProvider,
      name,
      { ...args, value: undefined, fingerprint: undefined },
      { ...opts, additionalSecretOutputs: ["value"] },
      "stackpin-local",
      "RotatingSecret",
    );
  }
}
