import { spawn, ChildProcess } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { packageRoot } from "../../lib/engine/pulumi-cli";
import { freePort } from "./harness";

/** The versitygw binary `scripts/s3-server.ts` builds into the project (gitignored). */
export const versitygwBinary = path.join(packageRoot(), "tools", "s3", "bin", "versitygw");

/** A real S3 server (versitygw, posix backend in a temp dir) on a free loopback port, with one bucket. */
export interface S3Server {
  endpoint: string;
  bucket: string;
  /** The Pulumi backend URL for the bucket (`prefix` appended as the URL's path when given). */
  backendUrl(prefix?: string): string;
  /** AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the server's root user. */
  env: NodeJS.ProcessEnv;
  client: S3Client;
  /** Stops the server and removes its directory; resolves once the process has exited and the port is free. */
  stop(): Promise<void>;
}

/**
 * The versitygw binary, or a skip with a loud banner when it was not built (`npm run setup:s3`), unless
 * STACKPIN_REQUIRE_S3=1 (set by .ci/run), where a missing binary fails the suite.
 */
export function versitygwOrSkip(ctx: Mocha.Context): string {
  if (fs.existsSync(versitygwBinary)) return versitygwBinary;
  const reason = `${versitygwBinary} does not exist`;
  if (process.env.STACKPIN_REQUIRE_S3 === "1") throw new Error(`the S3 backend tests need versitygw: ${reason} (run \`npm run setup:s3\`)`);
  const banner = "!".repeat(78);
  process.stderr.write(`\n${banner}\n  S3 BACKEND TESTS SKIPPED: no versitygw.\n  ${reason}\n  Run \`npm run setup:s3\`.\n${banner}\n`);
  ctx.skip();
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });
}

/** Starts versitygw; resolves once it accepts connections and the bucket exists. */
export async function startS3Server(binary: string): Promise<S3Server> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stackpin-s3-"));
  const data = path.join(dir, "data");
  fs.mkdirSync(data);
  const accessKey = `stackpin${crypto.randomBytes(4).toString("hex")}`;
  const secretKey = crypto.randomBytes(20).toString("hex");
  let child: ChildProcess | undefined;
  let log = "";
  let port = 0;
  // A port found free can be taken before the server binds it: try again with another.
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = await freePort();
    const c = spawn(binary, ["--port", `127.0.0.1:${port}`, "--region", "us-east-1", "posix", data], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ROOT_ACCESS_KEY_ID: accessKey, ROOT_SECRET_ACCESS_KEY: secretKey },
      stdio: ["ignore", "pipe", "pipe"],
    });
    c.stdout!.on("data", (d) => (log += d));
    c.stderr!.on("data", (d) => (log += d));
    const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
    let up = false;
    let gone = false;
    void exited.then(() => (gone = true));
    // Ready means: it accepts a connection on the port (it binds in a fraction of a second).
    while (!up && !gone) {
      up = await connects(port);
      if (!up) await new Promise((r) => setImmediate(r));
    }
    if (up && !gone) child = c;
  }
  if (!child) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`versitygw did not start:\n${log}`);
  }
  const proc = child;
  const endpoint = `http://127.0.0.1:${port}`;
  const bucket = `stackpin-${crypto.randomBytes(3).toString("hex")}`;
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true"; // see lib/records/s3-backend.ts
  const client = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: accessKey, secretAccessKey: secretKey } });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    endpoint,
    bucket,
    backendUrl: (prefix) => `s3://${bucket}${prefix ? `/${prefix}` : ""}?endpoint=${encodeURIComponent(endpoint)}&use_path_style=true&region=us-east-1`,
    env: { AWS_ACCESS_KEY_ID: accessKey, AWS_SECRET_ACCESS_KEY: secretKey },
    client,
    async stop() {
      client.destroy();
      const exited = new Promise<void>((resolve) => (proc.exitCode !== null || proc.signalCode !== null ? resolve() : proc.once("exit", () => resolve())));
      proc.kill("SIGTERM");
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
