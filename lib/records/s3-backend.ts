import * as crypto from "node:crypto";
import type { S3Client } from "@aws-sdk/client-s3";
import { BackendUnsupportedError, ConcurrentOperationError } from "../errors";
import { awsConfigFilesText, listObjectKeys, readObject, SignedReads, signedReadsOf } from "./s3-reads";

/**
 * The AWS SDK's S3 client, loaded on first use: it is about 30 modules that every command would load at
 * start otherwise, and only an `s3://` backend's writes (and its reads, where {@link S3Location.reads}
 * cannot do them) need it.
 */
function s3Sdk(): typeof import("@aws-sdk/client-s3") {
  return require("@aws-sdk/client-s3") as typeof import("@aws-sdk/client-s3");
}

/**
 * stackpin's own objects in the bucket of an `s3://` Pulumi backend, read and written with conditional
 * requests so that concurrent writers cannot lose each other's writes: an object is replaced only if its
 * ETag is still the one read (`If-Match`), and created only if it does not exist yet (`If-None-Match: *`).
 */
export interface S3Location {
  /** `s3://bucket/prefix`, for messages. */
  readonly url: string;
  readonly bucket: string;
  /** The key prefix the backend's `.pulumi/` lives under ("" or ending in "/"). */
  readonly prefix: string;
  /** The SDK's client, made (and the SDK loaded) on first use. */
  readonly client: S3Client;
  /** The URL's `endpoint` (an S3-compatible store), undefined for AWS S3; for messages. */
  readonly endpoint?: string;
  /** How {@link getObject} and {@link listKeys} read without the SDK; undefined where only the SDK can ({@link signedReadsOf}). */
  readonly reads?: SignedReads;
}

/**
 * The bucket, key prefix and client of an `s3://` backend URL, read as Pulumi reads it (gocloud.dev's
 * s3blob): `region`, `endpoint`, `use_path_style` (or the older `s3ForcePathStyle`) and `disable_https`
 * from the query, a path after the bucket (or `prefix=`) as the key prefix, and credentials from the
 * standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...). Undefined for other URLs.
 * Nothing is loaded or asked yet: the SDK's client is made on its first use, and reads go without it
 * where the environment holds all they need.
 */
export function s3LocationOf(backendUrl: string): S3Location | undefined {
  if (!backendUrl.startsWith("s3://")) return undefined;
  const u = new URL(backendUrl);
  const q = u.searchParams;
  const truthy = (v: string | null) => v !== null && /^(1|true|yes)$/i.test(v);
  let endpoint = q.get("endpoint") ?? undefined;
  if (endpoint && !/^[a-z]+:\/\//i.test(endpoint)) endpoint = `${truthy(q.get("disable_https")) ? "http" : "https"}://${endpoint}`;
  const prefix = [decodeURIComponent(u.pathname), q.get("prefix") ?? ""]
    .map((p) => p.replace(/^\/+|\/+$/g, ""))
    .filter(Boolean)
    .join("/");
  const region = q.get("region") ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  const forcePathStyle = truthy(q.get("use_path_style")) || truthy(q.get("s3ForcePathStyle"));
  let client: S3Client | undefined;
  return {
    url: `s3://${u.hostname}${prefix ? `/${prefix}` : ""}`,
    bucket: u.hostname,
    prefix: prefix ? `${prefix}/` : "",
    get client() {
      // The pinned SDK runs on Node 20 (package.json's engines); its notice that later SDK releases will
      // need Node 22 would otherwise be printed on every command's stderr.
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
      return (client ??= new (s3Sdk().S3Client)({ region, endpoint, forcePathStyle }));
    },
    endpoint,
    reads: signedReadsOf({ bucket: u.hostname, region, endpoint, forcePathStyle }, process.env, () => awsConfigFilesText(process.env)),
  };
}

/** An object's text and the ETag it was read with. */
export interface Versioned {
  text: string;
  etag: string;
}

function status(err: unknown): number | undefined {
  return err instanceof s3Sdk().S3ServiceException ? err.$metadata.httpStatusCode : undefined;
}

/** Reads an object; undefined when it does not exist. */
export async function getObject(loc: S3Location, key: string): Promise<Versioned | undefined> {
  if (loc.reads) return readObject(loc.reads, loc.prefix + key);
  try {
    const r = await loc.client.send(new (s3Sdk().GetObjectCommand)({ Bucket: loc.bucket, Key: loc.prefix + key }));
    return { text: (await r.Body?.transformToString("utf8")) ?? "", etag: r.ETag ?? "" };
  } catch (err) {
    if (status(err) === 404) return undefined;
    throw err;
  }
}

/**
 * Writes an object only if it is still the version read (`base`), or still absent (`base` undefined).
 * False when another writer got there first (412 Precondition Failed, 409 for a conflicting
 * conditional write in progress, 404 when the object read was deleted).
 */
export async function putIfUnchanged(loc: S3Location, key: string, text: string, base: Versioned | undefined): Promise<boolean> {
  try {
    await loc.client.send(
      new (s3Sdk().PutObjectCommand)({
        Bucket: loc.bucket,
        Key: loc.prefix + key,
        Body: text,
        ContentType: "application/json",
        ...(base ? { IfMatch: base.etag } : { IfNoneMatch: "*" }),
      }),
    );
    return true;
  } catch (err) {
    const code = status(err);
    // 404 with If-Match: the object read was deleted meanwhile, another writer's doing as well.
    if (code === 412 || code === 409 || (base && code === 404)) return false;
    throw err;
  }
}

/** What a store answered to one conditional write: it wrote, it refused (412), or it does not support it. */
type ProbeAnswer = { wrote: true; etag?: string } | { wrote: false; unsupported?: string };

async function probePut(loc: S3Location, key: string, body: string, condition: { IfMatch: string } | { IfNoneMatch: "*" }): Promise<ProbeAnswer> {
  try {
    const r = await loc.client.send(new (s3Sdk().PutObjectCommand)({ Bucket: loc.bucket, Key: key, Body: body, ContentType: "text/plain", ...condition }));
    return { wrote: true, etag: r.ETag };
  } catch (err) {
    const code = status(err);
    if (code === 412 || code === 409) return { wrote: false };
    // A store that does not know the header says so (501 Not Implemented, or 400 for an argument it rejects).
    if (code === 501 || code === 400) return { wrote: false, unsupported: `${code} ${(err as Error).name}` };
    throw err;
  }
}

const checked = new Map<string, Promise<void>>();

/**
 * Proves, once per process for each bucket and prefix, that the store honours the conditional writes
 * {@link putIfUnchanged} relies on; {@link updateObject} calls it before its first write, so nothing is
 * written to stackpin's records or trail on a store that does not. On a probe object of its own,
 * `<prefix>.stackpin/cas-check-<random>` (removed afterwards; a store that refuses the removal keeps the
 * few bytes), it writes with `If-None-Match: *` (created), then with `If-Match` on a wrong ETag (must be
 * refused, 412), `If-None-Match: *` again (must be refused), and `If-Match` on the ETag it got (must be
 * written). A store that accepts a write it should refuse, or does not support the headers, raises
 * {@link BackendUnsupportedError} naming the store and what it lacks; any other failure (no credentials,
 * access denied, unreachable) is raised as it came, and the check runs again next time.
 */
export function checkConditionalWrites(loc: S3Location): Promise<void> {
  const id = `${loc.endpoint ?? "aws"}|${loc.bucket}|${loc.prefix}`;
  let done = checked.get(id);
  if (!done) {
    done = probeConditionalWrites(loc);
    checked.set(id, done);
    // A refusal is the store's nature and is kept; anything else (a network error) may pass: asked again next time.
    done.catch((err) => {
      if (!(err instanceof BackendUnsupportedError)) checked.delete(id);
    });
  }
  return done;
}

async function probeConditionalWrites(loc: S3Location): Promise<void> {
  const store = `${loc.url} at ${loc.endpoint ?? "AWS S3"}`;
  const refuse = (lacks: string, found: string) => new BackendUnsupportedError(store, lacks, found);
  const unsupported = (header: string, answer: string) => refuse(`does not support conditional writes (${header})`, `it answered a write with ${header} with ${answer}`);
  const key = `${loc.prefix}.stackpin/cas-check-${crypto.randomUUID()}`;
  const created = await probePut(loc, key, "created\n", { IfNoneMatch: "*" });
  if (!created.wrote) {
    if (created.unsupported) throw unsupported("If-None-Match: *", created.unsupported);
    throw refuse("refuses conditional writes (If-None-Match: *)", "it refused to create a new object with If-None-Match: *");
  }
  try {
    // An ETag no object of this content can have.
    const wrongEtag = await probePut(loc, key, "written with a wrong ETag\n", { IfMatch: `"${"0".repeat(32)}"` });
    if (wrongEtag.wrote) throw refuse("ignores conditional writes (If-Match)", "it replaced an object whose ETag did not match");
    if (wrongEtag.unsupported) throw unsupported("If-Match", wrongEtag.unsupported);
    const exists = await probePut(loc, key, "created twice\n", { IfNoneMatch: "*" });
    if (exists.wrote) throw refuse("ignores conditional writes (If-None-Match: *)", "it overwrote an object that exists");
    if (exists.unsupported) throw unsupported("If-None-Match: *", exists.unsupported);
    if (created.etag) {
      const rightEtag = await probePut(loc, key, "replaced\n", { IfMatch: created.etag });
      if (!rightEtag.wrote) {
        if (rightEtag.unsupported) throw unsupported("If-Match", rightEtag.unsupported);
        throw refuse("refuses conditional writes (If-Match)", "it refused a write with If-Match on the ETag it had just given");
      }
    }
  } finally {
    await loc.client.send(new (s3Sdk().DeleteObjectCommand)({ Bucket: loc.bucket, Key: key })).catch(() => undefined);
  }
}

const casTimeoutMs = 30_000;

/**
 * Read-modify-write of one object that no other writer can interleave with: `change` gets the current
 * text (undefined when absent) and returns the new text (undefined: write nothing); the write is
 * conditional on the version read, and retried from a fresh read when another writer got in between
 * (so `change` may run more than once, and must only depend on what it is given). After 30 s of losing,
 * {@link ConcurrentOperationError}. Before the first write in a process, the store is checked to honour
 * conditional writes ({@link checkConditionalWrites}).
 *
 * A retried write may have landed already: the SDK retries a request whose response was lost (a 5xx, a
 * reset connection), and the retry is refused (412) by the very write it repeats. So a `change` that
 * appends must recognise its own write in what it reads (an id it made once, before calling this) and
 * then return no text.
 */
export async function updateObject<T>(
  loc: S3Location,
  key: string,
  stackName: string,
  change: (current: Versioned | undefined) => Promise<{ text?: string; result: T }>,
): Promise<T> {
  await checkConditionalWrites(loc);
  const deadline = Date.now() + casTimeoutMs;
  let delay = 5;
  for (;;) {
    const current = await getObject(loc, key);
    const { text, result } = await change(current);
    if (text === undefined || (await putIfUnchanged(loc, key, text, current))) return result;
    if (Date.now() > deadline) {
      throw new ConcurrentOperationError(stackName, { holder: `${loc.url}/${key} kept changing under conditional writes for 30 s`, hint: "try again" });
    }
    // Random back-off, so writers that collided do not collide again in step.
    await new Promise((r) => setTimeout(r, Math.random() * delay));
    delay = Math.min(delay * 2, 200);
  }
}

/** The keys under `prefix` (relative to the backend's prefix, as {@link getObject} takes them), every page. */
export async function listKeys(loc: S3Location, prefix: string): Promise<string[]> {
  if (loc.reads) return (await listObjectKeys(loc.reads, loc.prefix + prefix)).map((k) => k.slice(loc.prefix.length));
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await loc.client.send(new (s3Sdk().ListObjectsV2Command)({ Bucket: loc.bucket, Prefix: loc.prefix + prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key.slice(loc.prefix.length));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

/** Deletes one object (relative key); deleting one that is already gone is not an error. */
export async function deleteObject(loc: S3Location, key: string): Promise<void> {
  await loc.client.send(new (s3Sdk().DeleteObjectCommand)({ Bucket: loc.bucket, Key: loc.prefix + key }));
}

/** Writes an object unconditionally: for objects only their writer ever writes (named by its own id). */
export async function putObject(loc: S3Location, key: string, text: string): Promise<void> {
  await loc.client.send(new (s3Sdk().PutObjectCommand)({ Bucket: loc.bucket, Key: loc.prefix + key, Body: text, ContentType: "application/json" }));
}
