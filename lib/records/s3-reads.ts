import * as fs from "node:fs";
import type * as http from "node:http";
import { isIP } from "node:net";
import * as os from "node:os";
import * as path from "node:path";

/**
 * Reads of an `s3://` backend's objects without the AWS SDK: GET of one object and ListObjectsV2 (every
 * page), each one request signed with AWS Signature Version 4 (by aws4) over node:http or node:https.
 * Loading the SDK and running its credential chain is most of what `status` or `history` on `s3://`
 * would take, and these reads need neither when the credentials are in the environment. Where the SDK
 * would find something these reads do not look for — credentials elsewhere than AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY (a profile, which AWS_PROFILE names even beside them, SSO, the instance's
 * metadata), no region, an endpoint, FIPS or dual-stack setting from the environment or the AWS config
 * files, a partition other than AWS's commercial, China and GovCloud ones — {@link signedReadsOf}
 * answers undefined and the SDK reads.
 */
export interface SignedReads {
  readonly protocol: "http:" | "https:";
  /** The host (and port) requests go to: the bucket's own name under the endpoint's in virtual-hosted style. */
  readonly host: string;
  /** The path before an object's key: the endpoint's own path, then `/<bucket>` in path style; "" or starting with "/". */
  readonly base: string;
  readonly region: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

/** Where a backend URL says the bucket is, as `s3LocationOf` reads it. */
export interface S3Address {
  bucket: string;
  region?: string;
  /** A full URL (scheme included), or undefined for AWS S3. */
  endpoint?: string;
  forcePathStyle: boolean;
}

/** Settings with which the SDK would send a request elsewhere than {@link signedReadsOf} does. */
const endpointSettings = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT"];
const endpointConfigKeys = /^\s*(endpoint_url|use_fips_endpoint|use_dualstack_endpoint)\s*=/m;

/** The AWS config and credentials files' text, where the SDK reads them ("" for one that does not exist). */
export function awsConfigFilesText(env: NodeJS.ProcessEnv): string {
  const home = env.HOME || os.homedir();
  const files = [env.AWS_CONFIG_FILE || path.join(home, ".aws", "config"), env.AWS_SHARED_CREDENTIALS_FILE || path.join(home, ".aws", "credentials")];
  return files
    .map((f) => {
      try {
        return fs.readFileSync(f, "utf8");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return "";
        throw err;
      }
    })
    .join("\n");
}

/** A bucket name that can be a host name's first label: the SDK addresses such a bucket virtual-hosted. */
function hostableBucket(bucket: string): boolean {
  return /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket);
}

/** AWS S3's regional endpoint host for the partitions read here (aws, aws-cn, aws-us-gov); undefined for others. */
function awsS3Host(region: string): string | undefined {
  if (/^cn-[a-z]+-\d+$/.test(region)) return `s3.${region}.amazonaws.com.cn`;
  if (/^[a-z]{2}(-gov)?-[a-z]+-\d+$/.test(region)) return `s3.${region}.amazonaws.com`;
  return undefined;
}

/**
 * How to read the bucket without the SDK, sending each request where the SDK would (the same endpoint,
 * path or virtual-hosted style by the same rules) with the credentials it would use first (the
 * environment's); undefined when the SDK could do otherwise (see {@link SignedReads}). `configFiles`
 * gives the AWS config files' text, read only when everything else allows these reads.
 */
export function signedReadsOf(address: S3Address, env: NodeJS.ProcessEnv, configFiles: () => string): SignedReads | undefined {
  const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey, AWS_SESSION_TOKEN: sessionToken } = env;
  // With AWS_PROFILE set, the SDK takes the profile's credentials even beside keys in the environment.
  if (!accessKeyId || !secretAccessKey || env.AWS_PROFILE || !address.region) return undefined;
  if (endpointSettings.some((name) => env[name])) return undefined;
  const credentials = { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
  let endpoint: URL;
  if (address.endpoint) {
    try {
      endpoint = new URL(address.endpoint);
    } catch {
      return undefined;
    }
    if (endpoint.protocol !== "http:" && endpoint.protocol !== "https:") return undefined;
  } else {
    const host = awsS3Host(address.region);
    if (!host) return undefined;
    endpoint = new URL(`https://${host}`);
  }
  let configText: string;
  try {
    configText = configFiles();
  } catch {
    // Unreadable: the SDK may find in it what these reads do not know.
    return undefined;
  }
  if (endpointConfigKeys.test(configText)) return undefined;
  const endpointPath = endpoint.pathname.replace(/\/+$/, "");
  const ipHost = isIP(endpoint.hostname.replace(/^\[|\]$/g, "")) !== 0;
  const virtualHosted = !address.forcePathStyle && !ipHost && hostableBucket(address.bucket);
  return {
    protocol: endpoint.protocol as SignedReads["protocol"],
    host: virtualHosted ? `${address.bucket}.${endpoint.host}` : endpoint.host,
    base: virtualHosted ? endpointPath : `${endpointPath}/${encodeRfc3986(address.bucket)}`,
    region: address.region,
    credentials,
  };
}

/** `encodeURIComponent`, and the characters it leaves that SigV4 encodes too (`!'()*`). */
function encodeRfc3986(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** One request to send: where, with which headers (signed). */
export interface SignedRequest {
  protocol: "http:" | "https:";
  host: string;
  path: string;
  headers: Record<string, string>;
}

/** `20261206T163000Z`: SigV4's form of the request's time. */
function amzDate(now: Date): string {
  return now.toISOString().replace(/[:-]|\.\d{3}/g, "");
}

function signed(reads: SignedReads, pathAndQuery: string, now: Date): SignedRequest {
  const { sign } = require("aws4") as typeof import("aws4");
  const request = sign({ service: "s3", region: reads.region, method: "GET", host: reads.host, path: pathAndQuery, headers: { "X-Amz-Date": amzDate(now) } }, reads.credentials);
  const headers = Object.fromEntries(Object.entries(request.headers ?? {}).map(([k, v]) => [k, String(v)]));
  return { protocol: reads.protocol, host: reads.host, path: request.path ?? pathAndQuery, headers };
}

/** The signed GET of one object (its full key, the backend's prefix included). */
export function getObjectRequest(reads: SignedReads, key: string, now: Date): SignedRequest {
  return signed(reads, `${reads.base}/${key.split("/").map(encodeRfc3986).join("/")}`, now);
}

/** The signed ListObjectsV2 of the keys under `prefix` (full), from the page `continuationToken` names. */
export function listObjectsRequest(reads: SignedReads, prefix: string, continuationToken: string | undefined, now: Date): SignedRequest {
  const query = [["list-type", "2"], ["prefix", prefix], ...(continuationToken === undefined ? [] : [["continuation-token", continuationToken]])];
  return signed(reads, `${reads.base}/?${query.map(([k, v]) => `${k}=${encodeRfc3986(v)}`).join("&")}`, now);
}

/** The text of an XML element's content, its entities and character references decoded. */
function xmlText(raw: string): string {
  const named: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };
  return raw.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, ref: string) => {
    if (ref[0] !== "#") return named[ref] ?? whole;
    return String.fromCodePoint(ref[1] === "x" || ref[1] === "X" ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10));
  });
}

/** The contents of every `<name>` element in `xml` (elements of that name are not nested in S3's answers). */
function elements(xml: string, name: string): string[] {
  return [...xml.matchAll(new RegExp(`<${name}>([\\s\\S]*?)</${name}>`, "g"))].map((m) => m[1]);
}

/** One page of a ListObjectsV2 answer: its keys, and the token of the next page when it was cut short. */
export function parseListObjectsPage(xml: string): { keys: string[]; next?: string } {
  const keys = elements(xml, "Contents").flatMap((c) => elements(c, "Key").slice(0, 1).map(xmlText));
  const truncated = elements(xml, "IsTruncated")[0]?.trim() === "true";
  const token = elements(xml, "NextContinuationToken")[0];
  return truncated && token !== undefined ? { keys, next: xmlText(token) } : { keys };
}

/** A store's refusal of a read: its HTTP status, S3's error code (`AccessDenied`, `NoSuchBucket`...) and message. */
export class S3ReadError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = code;
  }
}

/** The error an S3 error answer describes (`<Error><Code/><Message/></Error>`, or only a status for a HEAD). */
export function s3ReadErrorOf(status: number, body: string): S3ReadError {
  const code = elements(body, "Code")[0];
  const message = elements(body, "Message")[0];
  const fallback = `the store answered ${status}${code ? ` ${xmlText(code)}` : ""}`;
  return new S3ReadError(status, code ? xmlText(code) : `Http${status}`, message ? xmlText(message) : fallback);
}

/** Failures worth another attempt, as the SDK's standard retry has them: the store's 5xx and 429, a lost connection. */
function transient(err: unknown): boolean {
  if (err instanceof S3ReadError) return err.status >= 500 || err.status === 429;
  return ["ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT"].includes((err as NodeJS.ErrnoException).code ?? "");
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function sendOnce(request: SignedRequest): Promise<Answer> {
  const transport = (request.protocol === "https:" ? require("node:https") : require("node:http")) as typeof http;
  const url = new URL(`${request.protocol}//${request.host}`);
  return new Promise((resolve, reject) => {
    const req = transport.request(
      { method: "GET", protocol: request.protocol, hostname: url.hostname.replace(/^\[|\]$/g, ""), port: url.port || undefined, path: request.path, headers: request.headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/**
 * Sends a GET made afresh (signed at that moment) for each attempt; resolves to a 2xx answer, or a 404
 * when `notFound` allows it. Another status is an {@link S3ReadError}, a network failure Node's error;
 * the transient ones are tried up to three times in all, as the SDK does.
 */
async function send(make: (now: Date) => SignedRequest, notFound: boolean): Promise<Answer> {
  const pRetry = require("p-retry") as typeof import("p-retry");
  return pRetry(
    async () => {
      let answer: Answer;
      try {
        answer = await sendOnce(make(new Date()));
      } catch (err) {
        if (transient(err)) throw err;
        throw new pRetry.AbortError(err as Error);
      }
      if ((answer.status >= 200 && answer.status < 300) || (notFound && answer.status === 404)) return answer;
      const err = s3ReadErrorOf(answer.status, answer.body.toString("utf8"));
      if (transient(err)) throw err;
      throw new pRetry.AbortError(err);
    },
    { retries: 2, minTimeout: 100, factor: 2, randomize: true },
  );
}

/** One object's text and ETag (full key); undefined when there is no such object. */
export async function readObject(reads: SignedReads, key: string): Promise<{ text: string; etag: string } | undefined> {
  const answer = await send((now) => getObjectRequest(reads, key, now), true);
  if (answer.status === 404) return undefined;
  const etag = answer.headers.etag;
  return { text: answer.body.toString("utf8"), etag: typeof etag === "string" ? etag : "" };
}

/** Every key under `prefix` (full keys), all pages. */
export async function listObjectKeys(reads: SignedReads, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const from = token;
    const page = parseListObjectsPage((await send((now) => listObjectsRequest(reads, prefix, from, now), false)).body.toString("utf8"));
    keys.push(...page.keys);
    token = page.next;
  } while (token !== undefined);
  return keys;
}
