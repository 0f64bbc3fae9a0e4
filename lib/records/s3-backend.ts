import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, S3ServiceException } from "@aws-sdk/client-s3";
import { ConcurrentOperationError } from "../errors";

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
  readonly client: S3Client;
}

/**
 * The bucket, key prefix and client of an `s3://` backend URL, read as Pulumi reads it (gocloud.dev's
 * s3blob): `region`, `endpoint`, `use_path_style` (or the older `s3ForcePathStyle`) and `disable_https`
 * from the query, a path after the bucket (or `prefix=`) as the key prefix, and credentials from the
 * standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...). Undefined for other URLs.
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
  // The pinned SDK runs on Node 20 (package.json's engines); its notice that later SDK releases will need
  // Node 22 would otherwise be printed on every command's stderr.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const client = new S3Client({
    region: q.get("region") ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION,
    endpoint,
    forcePathStyle: truthy(q.get("use_path_style")) || truthy(q.get("s3ForcePathStyle")),
  });
  return { url: `s3://${u.hostname}${prefix ? `/${prefix}` : ""}`, bucket: u.hostname, prefix: prefix ? `${prefix}/` : "", client };
}

/** An object's text and the ETag it was read with. */
export interface Versioned {
  text: string;
  etag: string;
}

function status(err: unknown): number | undefined {
  return err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
}

/** Reads an object; undefined when it does not exist. */
export async function getObject(loc: S3Location, key: string): Promise<Versioned | undefined> {
  try {
    const r = await loc.client.send(new GetObjectCommand({ Bucket: loc.bucket, Key: loc.prefix + key }));
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
      new PutObjectCommand({
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

const casTimeoutMs = 30_000;

/**
 * Read-modify-write of one object that no other writer can interleave with: `change` gets the current
 * text (undefined when absent) and returns the new text (undefined: write nothing); the write is
 * conditional on the version read, and retried from a fresh read when another writer got in between
 * (so `change` may run more than once, and must only depend on what it is given). After 30 s of losing,
 * {@link ConcurrentOperationError}.
 */
export async function updateObject<T>(
  loc: S3Location,
  key: string,
  stackName: string,
  change: (current: Versioned | undefined) => Promise<{ text?: string; result: T }>,
): Promise<T> {
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
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await loc.client.send(new ListObjectsV2Command({ Bucket: loc.bucket, Prefix: loc.prefix + prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key.slice(loc.prefix.length));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

/** Deletes one object (relative key); deleting one that is already gone is not an error. */
export async function deleteObject(loc: S3Location, key: string): Promise<void> {
  await loc.client.send(new DeleteObjectCommand({ Bucket: loc.bucket, Key: loc.prefix + key }));
}
