import * as crypto from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A test double of an S3-compatible store: a node:http server speaking just enough of the S3 API for
 * stackpin's own objects (PUT, GET, HEAD and DELETE of an object, path-style `/<bucket>/<key>`, and
 * ListObjectsV2, `listPageSize` keys a page), holding objects in memory. It does not check signatures. With `conditional: false` it ignores `If-Match` and
 * `If-None-Match`, as some S3-compatible stores do; with `conditional: true` it honours them (412).
 * `{ conditional: "If-Match" }` honours that header only. `loseResponses` makes it perform a PUT and then answer 500, as when the answer of a write that landed
 * is lost: the SDK retries that PUT.
 */
export interface S3Double {
  /** `http://127.0.0.1:<port>`. */
  endpoint: string;
  /** The one bucket it serves. */
  bucket: string;
  /** Objects by key (without the bucket). */
  objects: Map<string, { body: string; etag: string }>;
  /** Every request, as `METHOD key status` (with ` if-match`/` if-none-match` when sent). */
  requests: string[];
  /** The backend URL of the bucket, path-style on this endpoint (a prefix appended as the URL's path). */
  backendUrl(prefix?: string): string;
  /** Performs the next `n` PUTs whose key matches `key`, and answers each with a 500 instead of its result. */
  loseResponses(key: RegExp, n: number): void;
  stop(): Promise<void>;
}

/** Credentials the SDK signs with (the double does not check them). */
export const doubleEnv: NodeJS.ProcessEnv = { AWS_ACCESS_KEY_ID: "double", AWS_SECRET_ACCESS_KEY: "double-secret", AWS_REGION: "us-east-1" };

function errorXml(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
}

/** Starts the double on a free loopback port. */
export async function startS3Double(options: { conditional: boolean | "If-Match"; listPageSize?: number }): Promise<S3Double> {
  const bucket = "double-bucket";
  const objects = new Map<string, { body: string; etag: string }>();
  const requests: string[] = [];
  const losing: { key: RegExp; n: number }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://double");
      const [, b, ...rest] = url.pathname.split("/");
      const key = decodeURIComponent(rest.join("/"));
      const ifMatch = req.headers["if-match"];
      const ifNoneMatch = req.headers["if-none-match"];
      const answer = (status: number, headers: Record<string, string> = {}, body = "") => {
        requests.push(`${req.method} ${key} ${status}${ifMatch ? " if-match" : ""}${ifNoneMatch ? " if-none-match" : ""}`);
        res.writeHead(status, { ...headers, ...(body && status >= 300 ? { "content-type": "application/xml" } : {}), "content-length": Buffer.byteLength(body) });
        res.end(req.method === "HEAD" ? undefined : body);
      };
      if (b === bucket && !key && req.method === "GET" && url.searchParams.get("list-type") === "2") {
        // ListObjectsV2: keys in order from after the continuation token (the last key of the page before).
        const prefix = url.searchParams.get("prefix") ?? "";
        const after = Buffer.from(url.searchParams.get("continuation-token") ?? "", "base64url").toString("utf8");
        const matching = [...objects.keys()].filter((k) => k.startsWith(prefix) && k > after).sort();
        const page = matching.slice(0, options.listPageSize ?? 1000);
        const truncated = page.length < matching.length;
        const xmlEscape = (t: string) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
        const body = [
          `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>${bucket}</Name><Prefix>${xmlEscape(prefix)}</Prefix><KeyCount>${page.length}</KeyCount>`,
          ...page.map((k) => `<Contents><Key>${xmlEscape(k)}</Key><ETag>${xmlEscape(objects.get(k)!.etag)}</ETag></Contents>`),
          `<IsTruncated>${truncated}</IsTruncated>`,
          truncated ? `<NextContinuationToken>${Buffer.from(page[page.length - 1]).toString("base64url")}</NextContinuationToken>` : "",
          "</ListBucketResult>",
        ].join("");
        requests.push(`LIST ${prefix} 200`);
        res.writeHead(200, { "content-type": "application/xml", "content-length": Buffer.byteLength(body) });
        return res.end(body);
      }
      if (b !== bucket || !key) return answer(404, {}, errorXml("NoSuchBucket", "only object requests on the one bucket"));
      const current = objects.get(key);
      if (req.method === "PUT") {
        if (options.conditional && ifMatch !== undefined && (!current || current.etag !== ifMatch)) {
          return current ? answer(412, {}, errorXml("PreconditionFailed", "If-Match")) : answer(404, {}, errorXml("NoSuchKey", "no such key"));
        }
        if (options.conditional === true && ifNoneMatch === "*" && current) return answer(412, {}, errorXml("PreconditionFailed", "If-None-Match"));
        const body = Buffer.concat(chunks).toString("utf8");
        const etag = `"${crypto.createHash("md5").update(body).digest("hex")}"`;
        objects.set(key, { body, etag });
        const lose = losing.find((l) => l.n > 0 && l.key.test(key));
        if (lose) {
          lose.n--;
          return answer(500, {}, errorXml("InternalError", "the answer of a write that landed, lost"));
        }
        return answer(200, { etag });
      }
      if (req.method === "GET" || req.method === "HEAD") {
        if (!current) return answer(404, {}, errorXml("NoSuchKey", "no such key"));
        return answer(200, { etag: current.etag, "content-type": "application/json" }, current.body);
      }
      if (req.method === "DELETE") {
        objects.delete(key);
        return answer(204);
      }
      return answer(501, {}, errorXml("NotImplemented", `${req.method} is not implemented`));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    endpoint,
    bucket,
    objects,
    requests,
    backendUrl: (prefix) => `s3://${bucket}${prefix ? `/${prefix}` : ""}?endpoint=${encodeURIComponent(endpoint)}&use_path_style=true&region=us-east-1`,
    loseResponses: (key, n) => void losing.push({ key, n }),
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
