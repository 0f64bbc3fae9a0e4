/**
 * A small client of the Kubernetes API for what stackpin does beside the engine: move a Service's
 * selector, follow a Deployment's and a Service's endpoints as they change, read a claim's events.
 *
 * Why not `@kubernetes/client-node`: it takes about half a second to load here (every API group at
 * once), which is half of a switch-back's whole budget. This reads the same kubeconfig the provider
 * reads (the stack's `kubernetes:kubeconfig`, else `KUBECONFIG`, else `~/.kube/config`; the
 * `kubernetes:context` or the current context) and supports bearer tokens, client certificates and
 * exec credential plugins.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import * as YAML from "yaml";

/** An answer from the API server. */
export interface ApiAnswer<T = any> {
  status: number;
  body: T;
}

/** The client: plain requests and watches. */
export interface KubeClient {
  /** The server's URL (for messages). */
  readonly server: string;
  request<T = any>(method: string, urlPath: string, body?: unknown, contentType?: string): Promise<ApiAnswer<T>>;
  /** GET that fails on anything but 200, naming the path and the server's message. */
  get<T = any>(urlPath: string): Promise<T>;
  /**
   * Follows `collectionPath` (a list URL, with its query) as it changes: `seen` is called with the whole
   * current list after the first read and after every event, until it returns a value other than
   * undefined, which `watch` resolves with. Fails after `timeoutMs` naming `what`, or when `signal` aborts.
   */
  watch<T>(what: string, collectionPath: string, seen: (items: any[]) => T | undefined, timeoutMs: number, signal?: AbortSignal): Promise<T>;
  close(): void;
}

interface KubeconfigFile {
  clusters?: Array<{ name: string; cluster: Record<string, any> }>;
  users?: Array<{ name: string; user: Record<string, any> }>;
  contexts?: Array<{ name: string; context: { cluster: string; user: string; namespace?: string } }>;
  "current-context"?: string;
}

/** Where the provider would find its kubeconfig: `kubernetes:kubeconfig` (a path or the YAML itself), `KUBECONFIG`, `~/.kube/config`. */
export function loadKubeconfig(config: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): { file: KubeconfigFile; dir: string; context?: string } {
  const setting = typeof config["kubernetes:kubeconfig"] === "string" ? (config["kubernetes:kubeconfig"] as string) : undefined;
  const context = typeof config["kubernetes:context"] === "string" ? (config["kubernetes:context"] as string) : undefined;
  if (setting && /^\s*(apiVersion|kind|clusters|\{)/m.test(setting) && !fs.existsSync(setting)) {
    return { file: YAML.parse(setting) as KubeconfigFile, dir: process.cwd(), context };
  }
  const candidates = setting ? [setting] : env.KUBECONFIG ? env.KUBECONFIG.split(path.delimiter).filter(Boolean) : [path.join(os.homedir(), ".kube", "config")];
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`no kubeconfig: ${candidates.join(", ")} ${candidates.length > 1 ? "do" : "does"} not exist`);
  return { file: YAML.parse(fs.readFileSync(found, "utf8")) as KubeconfigFile, dir: path.dirname(path.resolve(found)), context };
}

const fileOrData = (entry: Record<string, any>, key: string, dir: string): Buffer | undefined => {
  if (entry[`${key}-data`]) return Buffer.from(String(entry[`${key}-data`]), "base64");
  if (entry[key]) return fs.readFileSync(path.resolve(dir, String(entry[key])));
  return undefined;
};

/** A client for the cluster the kubeconfig's context names. */
export function kubeClient(config: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): KubeClient {
  const { file, dir, context: wanted } = loadKubeconfig(config, env);
  const contextName = wanted ?? file["current-context"];
  const context = file.contexts?.find((c) => c.name === contextName)?.context;
  if (!context) throw new Error(`the kubeconfig has no context ${JSON.stringify(contextName)}`);
  const cluster = file.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster?.server) throw new Error(`the kubeconfig's context ${contextName} names no cluster with a server`);
  const user = file.users?.find((u) => u.name === context.user)?.user ?? {};
  const server = new URL(String(cluster.server));
  const secure = server.protocol === "https:";
  const agent = secure
    ? new https.Agent({
        keepAlive: true,
        ca: fileOrData(cluster, "certificate-authority", dir),
        cert: fileOrData(user, "client-certificate", dir),
        key: fileOrData(user, "client-key", dir),
        rejectUnauthorized: cluster["insecure-skip-tls-verify"] !== true,
        servername: cluster["tls-server-name"],
      })
    : new http.Agent({ keepAlive: true });
  let execToken: { token: string; until: number } | undefined;
  const bearer = (): string | undefined => {
    if (user.token) return String(user.token);
    if (user.tokenFile) return fs.readFileSync(path.resolve(dir, String(user.tokenFile)), "utf8").trim();
    if (user.exec) {
      if (!execToken || execToken.until < Date.now()) {
        // An exec credential plugin (cloud CLIs): its ExecCredential status carries a token.
        const e = user.exec as { command: string; args?: string[]; env?: Array<{ name: string; value: string }> };
        const out = execFileSync(e.command, e.args ?? [], {
          env: { ...env, ...Object.fromEntries((e.env ?? []).map((x) => [x.name, x.value])), KUBERNETES_EXEC_INFO: JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1beta1", kind: "ExecCredential", spec: { interactive: false } }) },
          encoding: "utf8",
          timeout: 30_000,
        });
        const status = (JSON.parse(out) as { status?: { token?: string; expirationTimestamp?: string } }).status;
        if (!status?.token) throw new Error(`the kubeconfig's exec plugin ${e.command} gave no token`);
        execToken = { token: status.token, until: status.expirationTimestamp ? Date.parse(status.expirationTimestamp) - 30_000 : Date.now() + 60_000 };
      }
      return execToken.token;
    }
    return undefined;
  };
  const basic = user.username !== undefined ? `Basic ${Buffer.from(`${user.username}:${user.password ?? ""}`).toString("base64")}` : undefined;
  const base = server.pathname.replace(/\/$/, "");

  const open = (method: string, urlPath: string, headers: Record<string, string>, timeoutMs: number, signal?: AbortSignal) => {
    const token = bearer();
    const options: https.RequestOptions = {
      host: server.hostname,
      port: server.port || (secure ? 443 : 80),
      path: `${base}${urlPath}`,
      method,
      agent,
      timeout: timeoutMs,
      headers: { Accept: "application/json", ...(token ? { Authorization: `Bearer ${token}` } : basic ? { Authorization: basic } : {}), ...headers },
      ...(signal ? { signal } : {}),
    };
    return secure ? https.request(options) : http.request(options);
  };

  const request = <T>(method: string, urlPath: string, body?: unknown, contentType = "application/json", signal?: AbortSignal): Promise<ApiAnswer<T>> =>
    new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
      const req = open(method, urlPath, data ? { "Content-Type": contentType } : {}, 15_000, signal);
      req.on("response", (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (text += d));
        res.on("end", () => {
          let parsed: any = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      });
      req.on("timeout", () => req.destroy(new Error(`${method} ${urlPath}: no answer from ${server.origin} in 15 s`)));
      req.on("error", reject);
      req.end(data);
    });

  const get = async <T>(urlPath: string, signal?: AbortSignal): Promise<T> => {
    const r = await request<any>("GET", urlPath, undefined, undefined, signal);
    if (r.status !== 200) throw new Error(`GET ${urlPath}: ${r.status} ${r.body?.message ?? JSON.stringify(r.body).slice(0, 300)}`);
    return r.body as T;
  };

  const watch = async <T>(what: string, collectionPath: string, seen: (items: any[]) => T | undefined, timeoutMs: number, signal?: AbortSignal): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    const sep = collectionPath.includes("?") ? "&" : "?";
    for (;;) {
      signal?.throwIfAborted();
      const list = await get<any>(collectionPath, signal);
      const items = new Map<string, any>(list.items.map((i: any) => [i.metadata.uid, i]));
      const first = seen([...items.values()]);
      if (first !== undefined) return first;
      // Follow the events from the list's version: every change is seen as it happens, none is polled for.
      const result = await new Promise<{ value: T } | "expired" | "ended">((resolve, reject) => {
        const left = deadline - Date.now();
        if (left <= 0) return reject(new Error(`${what}: not within ${Math.round(timeoutMs / 1000)} s`));
        const req = open("GET", `${collectionPath}${sep}watch=1&allowWatchBookmarks=true&resourceVersion=${list.metadata.resourceVersion}&timeoutSeconds=${Math.ceil(left / 1000)}`, {}, left + 5_000, signal);
        const timer = setTimeout(() => {
          req.destroy();
          reject(new Error(`${what}: not within ${Math.round(timeoutMs / 1000)} s`));
        }, left);
        req.on("response", (res) => {
          if (res.statusCode !== 200) {
            clearTimeout(timer);
            res.resume();
            return reject(new Error(`watch ${collectionPath}: ${res.statusCode}`));
          }
          let buffer = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            buffer += chunk;
            let nl: number;
            while ((nl = buffer.indexOf("\n")) >= 0) {
              const line = buffer.slice(0, nl).trim();
              buffer = buffer.slice(nl + 1);
              if (!line) continue;
              const event = JSON.parse(line) as { type: string; object: any };
              if (event.type === "ERROR") {
                clearTimeout(timer);
                req.destroy();
                return resolve("expired"); // 410 Gone: list again
              }
              if (event.type === "BOOKMARK") continue;
              if (event.type === "DELETED") items.delete(event.object.metadata.uid);
              else items.set(event.object.metadata.uid, event.object);
              const value = seen([...items.values()]);
              if (value !== undefined) {
                clearTimeout(timer);
                req.destroy();
                return resolve({ value });
              }
            }
          });
          res.on("end", () => {
            clearTimeout(timer);
            resolve("ended");
          });
        });
        req.on("error", (err) => {
          clearTimeout(timer);
          reject(err);
        });
        req.end();
      });
      if (typeof result === "object") return result.value;
      if (Date.now() >= deadline) throw new Error(`${what}: not within ${Math.round(timeoutMs / 1000)} s`);
    }
  };

  return { server: server.origin, request, get, watch, close: () => agent.destroy() };
}
