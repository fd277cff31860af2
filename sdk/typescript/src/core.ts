/**
 * The HTTP core: one logical request = up to `maxRetries + 1` attempts.
 *
 * - Retried: connection errors, per-attempt timeouts, and 408/409/429/5xx, unless the
 *   response says `x-should-retry: true|false` (which always wins). 402 never is.
 * - Delay: `retry-after-ms`, else `Retry-After` (seconds or HTTP date) when it is 0–60 s,
 *   else 0.5 s · 2^n capped at 8 s, minus up to 25 % jitter.
 * - A POST gets one `Idempotency-Key` before the first attempt; every retry reuses it, so
 *   the server runs the work at most once.
 * - A stream is retried only until its response headers arrive; after the first byte the
 *   request is never sent again (a chat stream resumes through a GET instead, see streaming.ts).
 */
import { randomUUID } from "node:crypto";
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  RivyaError,
} from "./errors.js";
import { VERSION } from "./version.js";

export interface ClientOptions {
  /** Defaults to `process.env.RIVYA_API_KEY`. */
  apiKey?: string;
  /** The API root, e.g. `https://rivya.example.com/api/v1`. Defaults to `RIVYA_BASE_URL`, else `http://127.0.0.1:8000/api/v1`. */
  baseURL?: string;
  /** Retries after the first attempt (default 2). */
  maxRetries?: number;
  /** Milliseconds per attempt (default 600 000). For a stream: until its headers arrive. */
  timeout?: number;
  /** A `fetch` to use instead of the platform's. */
  fetch?: typeof fetch;
  /** Sent with every request. */
  defaultHeaders?: Record<string, string>;
}

export interface RequestOptions {
  headers?: Record<string, string | null | undefined>;
  /** Aborts the request (and a stream's reading); raises `APIUserAbortError`. */
  signal?: AbortSignal;
  maxRetries?: number;
  timeout?: number;
  /** POST only: your own key instead of the generated one (e.g. to retry across processes). */
  idempotencyKey?: string;
}

export type Method = "GET" | "POST" | "PATCH" | "DELETE";
export type Query = Record<string, string | number | boolean | null | undefined>;

export interface APIRequest {
  method: Method;
  path: string;
  query?: Query | undefined;
  body?: unknown;
  options?: RequestOptions | undefined;
  /** Ask for `text/event-stream` and hand back the open response. */
  stream?: boolean;
}

/** A successful response whose body is still unread, with the controller that aborts it. */
export interface OpenResponse {
  response: Response;
  controller: AbortController;
  /** Clears the attempt's timeout (done for streams once headers are in). */
  done(): void;
}

const DEFAULT_BASE_URL = "http://127.0.0.1:8000/api/v1";
const MAX_SERVER_DELAY_MS = 60_000;
const env = (name: string): string | undefined => globalThis.process?.env?.[name] || undefined;

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new APIUserAbortError());
    const onAbort = () => {
      clearTimeout(timer);
      reject(new APIUserAbortError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });

/** Whether a failed response may be retried (`x-should-retry` wins; never 402). */
export function isRetryable(response: Response): boolean {
  if (response.status === 402) return false;
  const hint = response.headers.get("x-should-retry");
  if (hint === "true") return true;
  if (hint === "false") return false;
  const status = response.status;
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** Milliseconds to wait before retry number `retry` (0-based), honouring the server's hints. */
export function retryDelay(headers: Headers | undefined, retry: number, random: () => number = Math.random): number {
  let ms = Number.NaN;
  const afterMs = headers?.get("retry-after-ms");
  if (afterMs) ms = Number(afterMs);
  const after = headers?.get("retry-after");
  if (Number.isNaN(ms) && after) {
    ms = Number(after) * 1000;
    if (Number.isNaN(ms)) ms = Date.parse(after) - Date.now();
  }
  if (ms >= 0 && ms <= MAX_SERVER_DELAY_MS) return ms;
  return Math.min(500 * 2 ** retry, 8000) * (1 - random() * 0.25);
}

export class Core {
  readonly apiKey: string;
  readonly baseURL: string;
  readonly maxRetries: number;
  readonly timeout: number;
  protected readonly fetchImpl: typeof fetch;
  protected readonly defaultHeaders: Record<string, string>;

  constructor(options: ClientOptions = {}) {
    const apiKey = options.apiKey ?? env("RIVYA_API_KEY");
    if (!apiKey) {
      throw new RivyaError(
        "No API key: pass `new Rivya({ apiKey })` or set RIVYA_API_KEY (a key looks like rvya_sk_…).",
      );
    }
    this.apiKey = apiKey;
    this.baseURL = (options.baseURL ?? env("RIVYA_BASE_URL") ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
    this.maxRetries = options.maxRetries ?? 2;
    this.timeout = options.timeout ?? 600_000;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.defaultHeaders = options.defaultHeaders ?? {};
  }

  /** Sends `req` (with retries) and parses the JSON answer. */
  async request<T>(req: APIRequest): Promise<T> {
    const open = await this.open(req);
    try {
      const text = await open.response.text();
      return (text ? JSON.parse(text) : undefined) as T;
    } catch (err) {
      throw this.wrapError(err, open.controller, req.options?.signal);
    } finally {
      open.done();
    }
  }

  get<T>(path: string, query?: Query, options?: RequestOptions): Promise<T> {
    return this.request<T>({ method: "GET", path, query, options });
  }

  post<T>(path: string, body?: unknown, options?: RequestOptions): Promise<T> {
    return this.request<T>({ method: "POST", path, body, options });
  }

  patch<T>(path: string, body?: unknown, options?: RequestOptions): Promise<T> {
    return this.request<T>({ method: "PATCH", path, body, options });
  }

  delete<T>(path: string, options?: RequestOptions): Promise<T> {
    return this.request<T>({ method: "DELETE", path, options });
  }

  buildURL(path: string, query?: Query): string {
    const url = new URL(this.baseURL + path);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  /**
   * Sends `req` until it succeeds, fails for good, or runs out of retries, and returns
   * the successful response unread. Throws an `APIError` subclass otherwise.
   */
  async open(req: APIRequest): Promise<OpenResponse> {
    const options = req.options ?? {};
    const maxRetries = options.maxRetries ?? this.maxRetries;
    const timeout = options.timeout ?? this.timeout;
    const signal = options.signal;
    const headers = this.buildHeaders(req);
    const url = this.buildURL(req.path, req.query);
    let body: FormData | string | undefined;
    if (req.body instanceof FormData) body = req.body;
    else if (req.body !== undefined) body = JSON.stringify(req.body);

    for (let retry = 0; ; retry++) {
      if (signal?.aborted) throw new APIUserAbortError();
      const controller = new AbortController();
      const onAbort = () => controller.abort(signal?.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const retriesLeft = retry < maxRetries;

      let response: Response;
      try {
        response = await this.fetchImpl(url, {
          method: req.method,
          headers: { ...headers, ...(retry ? { "x-retry-count": String(retry) } : {}) },
          body,
          signal: controller.signal,
          redirect: "manual",
        });
      } catch (err) {
        done();
        if (signal?.aborted) throw new APIUserAbortError();
        if (!retriesLeft) {
          throw timedOut ? new APIConnectionTimeoutError() : new APIConnectionError(undefined, { cause: err });
        }
        await sleep(retryDelay(undefined, retry), signal);
        continue;
      }

      if (response.ok) {
        if (req.stream) clearTimeout(timer); // the stream may run longer than one attempt's timeout
        return { response, controller, done };
      }

      if (retriesLeft && isRetryable(response)) {
        done();
        await response.body?.cancel().catch(() => undefined);
        await sleep(retryDelay(response.headers, retry), signal);
        continue;
      }

      let text = "";
      try {
        text = await response.text();
      } catch (err) {
        done();
        throw this.wrapError(err, controller, signal);
      }
      done();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      throw APIError.generate(response.status, parsed, text, response.headers);
    }
  }

  protected buildHeaders(req: APIRequest): Record<string, string> {
    const headers: Record<string, string> = {
      accept: req.stream ? "text/event-stream" : "application/json",
      authorization: `Bearer ${this.apiKey}`,
      "user-agent": `rivya-sdk-js/${VERSION}`,
    };
    if (req.body !== undefined && !(req.body instanceof FormData)) headers["content-type"] = "application/json";
    if (req.method === "POST") headers["idempotency-key"] = req.options?.idempotencyKey ?? `sdk-${randomUUID()}`;
    Object.assign(headers, lower(this.defaultHeaders));
    for (const [name, value] of Object.entries(lower(req.options?.headers ?? {}))) {
      if (value === null || value === undefined) delete headers[name];
      else headers[name] = value;
    }
    return headers;
  }

  protected wrapError(err: unknown, controller: AbortController, signal?: AbortSignal): unknown {
    if (err instanceof RivyaError) return err;
    if (signal?.aborted) return new APIUserAbortError();
    if (controller.signal.aborted) return new APIConnectionTimeoutError();
    if (err instanceof SyntaxError) return new APIError(undefined, undefined, `Invalid JSON in response: ${err.message}`);
    return new APIConnectionError(undefined, { cause: err });
  }
}

function lower<V>(headers: Record<string, V>): Record<string, V> {
  const out: Record<string, V> = {};
  for (const [name, value] of Object.entries(headers)) out[name.toLowerCase()] = value;
  return out;
}
