/**
 * The client's request rules (retries, backoff, idempotency keys, timeouts, aborts, typed
 * errors, SSE decoding) against a scripted local HTTP server on a real socket.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  InsufficientCreditsError,
  MaxCreditsExceededError,
  InternalServerError,
  NotFoundError,
  PaymentRequiredError,
  RateLimitError,
  Rivya,
  RivyaError,
  UnprocessableEntityError,
  VERSION,
  decodeEvents,
} from "../src/index.js";
import { retryDelay } from "../src/core.js";
import { apiError, hangUp, json, stubServer } from "./support.js";

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

async function stub(...script: Parameters<typeof stubServer>) {
  const s = await stubServer(...script);
  closers.push(s.close);
  return { ...s, client: (options = {}) => new Rivya({ apiKey: "rvya_sk_test", baseURL: `${s.url}/api/v1`, ...options }) };
}

const fast = { "retry-after-ms": "1" };

describe("retries", () => {
  it("retries 5xx and reuses one Idempotency-Key for every attempt of a POST", async () => {
    const s = await stub(apiError(503, "overloaded", fast), apiError(500, "oops", fast), json(202, { id: "task_1" }));
    const task = await s.client().generations.create({ model: "m", input: {} });
    expect(task).toEqual({ id: "task_1" });
    expect(s.requests).toHaveLength(3);
    const keys = s.requests.map((r) => r.headers["idempotency-key"]);
    expect(keys[0]).toMatch(/^sdk-[0-9a-f-]{36}$/);
    expect(new Set(keys).size).toBe(1);
    expect(s.requests.map((r) => r.headers["x-retry-count"])).toEqual([undefined, "1", "2"]);
    expect(JSON.parse(s.requests[2]!.body.toString())).toEqual({ model: "m", input: {} });
  });

  it("gives each logical POST its own key, and uses the caller's key when given", async () => {
    const s = await stub(json(200, {}));
    const client = s.client();
    await client.webhooks.test("we_1");
    await client.webhooks.test("we_1");
    await client.webhooks.test("we_1", { idempotencyKey: "mine-1" });
    const keys = s.requests.map((r) => r.headers["idempotency-key"]);
    expect(keys[0]).not.toBe(keys[1]);
    expect(keys[2]).toBe("mine-1");
  });

  it("sends no Idempotency-Key on GET, PATCH or DELETE", async () => {
    const s = await stub(json(200, {}));
    const client = s.client();
    await client.models.retrieve("m");
    await client.webhooks.update("we_1", { enabled: false });
    await client.webhooks.delete("we_1");
    expect(s.requests.map((r) => r.headers["idempotency-key"])).toEqual([undefined, undefined, undefined]);
  });

  it.each([408, 409, 429, 500, 502, 503, 504])("retries %i", async (status) => {
    const s = await stub(apiError(status, "again", fast), json(200, { ok: true }));
    await expect(s.client().models.retrieve("m")).resolves.toEqual({ ok: true });
    expect(s.requests).toHaveLength(2);
  });

  it.each([400, 401, 403, 404, 413, 415, 422])("does not retry %i", async (status) => {
    const s = await stub(apiError(status, "no", fast), json(200, {}));
    await expect(s.client().models.retrieve("m")).rejects.toMatchObject({ status });
    expect(s.requests).toHaveLength(1);
  });

  it("never retries 402, even when the server says x-should-retry: true", async () => {
    const s = await stub(apiError(402, "insufficient_credits", { "x-should-retry": "true", ...fast }), json(202, {}));
    const error = await s.client().generations.create({ model: "m" }).catch((e) => e);
    expect(error).toBeInstanceOf(InsufficientCreditsError);
    expect(error).toMatchObject({ status: 402, code: "insufficient_credits", param: "p", requestId: "req_stub" });
    expect(s.requests).toHaveLength(1);
  });

  it("lets x-should-retry decide over the status", async () => {
    const s = await stub(apiError(503, "no", { "x-should-retry": "false" }), apiError(400, "yes", { "x-should-retry": "true", ...fast }), json(200, {}));
    await expect(s.client().models.retrieve("m")).rejects.toBeInstanceOf(InternalServerError);
    expect(s.requests).toHaveLength(1);
    await expect(s.client().models.retrieve("m")).resolves.toEqual({});
    expect(s.requests).toHaveLength(3);
  });

  it("stops after maxRetries and throws the last error", async () => {
    const s = await stub(apiError(503, "down", fast));
    await expect(s.client({ maxRetries: 1 }).models.list()).rejects.toBeInstanceOf(InternalServerError);
    expect(s.requests).toHaveLength(2);
    await expect(s.client().models.retrieve("m", { maxRetries: 0 })).rejects.toMatchObject({ status: 503, code: "down" });
    expect(s.requests).toHaveLength(3);
  });

  it("retries connection errors with the same key, then throws APIConnectionError", async () => {
    const s = await stub(hangUp, json(201, { id: "file_1" }));
    await expect(s.client().files.upload({ file: new Uint8Array([1, 2, 3]), purpose: "reference" })).resolves.toEqual({ id: "file_1" });
    expect(s.requests).toHaveLength(2);
    expect(s.requests[0]!.headers["idempotency-key"]).toBe(s.requests[1]!.headers["idempotency-key"]);
    const down = await stub(hangUp);
    await expect(down.client({ maxRetries: 1 }).models.list()).rejects.toBeInstanceOf(APIConnectionError);
    expect(down.requests).toHaveLength(2);
  });

  it("times out each attempt and throws APIConnectionTimeoutError after the retries", async () => {
    const s = await stub(async (_req, res) => {
      await new Promise((r) => setTimeout(r, 1000));
      json(200, {})(_req, res);
    });
    const started = Date.now();
    await expect(s.client({ timeout: 100, maxRetries: 1 }).models.list()).rejects.toBeInstanceOf(APIConnectionTimeoutError);
    expect(s.requests).toHaveLength(2);
    expect(Date.now() - started).toBeLessThan(5000); // two 100 ms attempts and one backoff, not the 1 s answer twice
  });

  it("aborts on the caller's signal, without retrying, also during a backoff", async () => {
    const s = await stub(async (_req, res) => {
      await new Promise((r) => setTimeout(r, 500));
      json(200, {})(_req, res);
    });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    await expect(s.client().models.list({}, { signal: controller.signal })).rejects.toBeInstanceOf(APIUserAbortError);
    expect(s.requests).toHaveLength(1);

    const slow = await stub(apiError(503, "later", { "retry-after": "30" }));
    const backoff = new AbortController();
    setTimeout(() => backoff.abort(), 100);
    const started = Date.now();
    await expect(slow.client().models.list({}, { signal: backoff.signal })).rejects.toBeInstanceOf(APIUserAbortError);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(slow.requests).toHaveLength(1);
  });
});

describe("retry delay", () => {
  const headers = (h: Record<string, string>) => new Headers(h);

  it("honours retry-after-ms, then Retry-After in seconds or as an HTTP date", () => {
    expect(retryDelay(headers({ "retry-after-ms": "1500", "retry-after": "9" }), 0)).toBe(1500);
    expect(retryDelay(headers({ "retry-after": "3" }), 0)).toBe(3000);
    const date = new Date(Date.now() + 5000).toUTCString();
    const ms = retryDelay(headers({ "retry-after": date }), 0);
    expect(ms).toBeGreaterThan(3000);
    expect(ms).toBeLessThanOrEqual(5000);
  });

  it("falls back to exponential backoff with up to 25 % jitter, capped at 8 s", () => {
    expect(retryDelay(undefined, 0, () => 0)).toBe(500);
    expect(retryDelay(undefined, 1, () => 0)).toBe(1000);
    expect(retryDelay(undefined, 2, () => 1)).toBe(1500); // at most 25 % off
    expect(retryDelay(undefined, 10, () => 0)).toBe(8000);
    // A server delay over 60 s (or garbage) is not obeyed blindly.
    expect(retryDelay(headers({ "retry-after": "3600" }), 0, () => 0)).toBe(500);
    expect(retryDelay(headers({ "retry-after": "soon" }), 1, () => 0)).toBe(1000);
  });
});

describe("errors", () => {
  it.each([
    [400, BadRequestError],
    [401, AuthenticationError],
    [402, PaymentRequiredError],
    [404, NotFoundError],
    [409, ConflictError],
    [422, UnprocessableEntityError],
    [429, RateLimitError],
    [500, InternalServerError],
  ])("maps %i to its class with code, param and requestId", async (status, Class) => {
    const s = await stub(apiError(status, `code_${status}`));
    const error = await s.client({ maxRetries: 0 }).models.retrieve("m").catch((e) => e);
    expect(error).toBeInstanceOf(Class);
    expect(error).toBeInstanceOf(RivyaError);
    expect(error).toMatchObject({ status, code: `code_${status}`, param: "p", requestId: "req_stub", type: "api_error" });
    expect(error.message).toBe(`${status} code_${status} happened`);
  });

  it.each([
    ["insufficient_credits", InsufficientCreditsError],
    ["max_credits_exceeded", MaxCreditsExceededError],
  ])("maps the code %s to its own class, whatever the status says", async (code, Class) => {
    for (const status of [402, 400]) {
      const s = await stub(apiError(status, code));
      const error = await s.client({ maxRetries: 0 }).generations.create({ model: "m" }).catch((e) => e);
      expect(error).toBeInstanceOf(Class);
      expect(error).toBeInstanceOf(PaymentRequiredError);
      expect(error).toMatchObject({ status, code });
    }
    const other = Class === InsufficientCreditsError ? MaxCreditsExceededError : InsufficientCreditsError;
    const s = await stub(apiError(402, code));
    expect(await s.client({ maxRetries: 0 }).models.retrieve("m").catch((e) => e)).not.toBeInstanceOf(other);
  });

  it("keeps a non-JSON error body in the message", async () => {
    const s = await stub((_req, res) => {
      res.writeHead(502, { "content-type": "text/html" }).end("<h1>Bad gateway</h1>");
    });
    const error: any = await s.client({ maxRetries: 0 }).models.list().catch((e) => e);
    expect(error).toBeInstanceOf(InternalServerError);
    expect(error.message).toContain("Bad gateway");
    expect(error.code).toBeUndefined();
  });
});

describe("options", () => {
  it("takes the key from RIVYA_API_KEY and refuses to start without one", async () => {
    const saved = process.env.RIVYA_API_KEY;
    try {
      delete process.env.RIVYA_API_KEY;
      expect(() => new Rivya()).toThrow(/RIVYA_API_KEY/);
      process.env.RIVYA_API_KEY = "rvya_sk_from_env";
      const s = await stub(json(200, {}));
      await new Rivya({ baseURL: `${s.url}/api/v1/` }).models.retrieve("a b");
      expect(s.requests[0]!.headers.authorization).toBe("Bearer rvya_sk_from_env");
      expect(s.requests[0]!.url).toBe("/api/v1/models/a%20b");
      expect(s.requests[0]!.headers["user-agent"]).toBe(`rivya-sdk-js/${VERSION}`);
    } finally {
      if (saved === undefined) delete process.env.RIVYA_API_KEY;
      else process.env.RIVYA_API_KEY = saved;
    }
  });

  it("uses a custom fetch, default headers and per-request headers", async () => {
    const s = await stub(json(200, {}));
    const seen: string[] = [];
    const client = s.client({
      defaultHeaders: { "X-Team": "sdk" },
      fetch: (url: string | URL | Request, init?: RequestInit) => {
        seen.push(String(url));
        return fetch(url, init);
      },
    });
    await client.generations.list({ limit: 5, status: "queued" }, { headers: { "X-Request-Id": "req_mine" } });
    expect(seen).toEqual([`${s.url}/api/v1/generations?limit=5&status=queued`]);
    expect(s.requests[0]!.headers["x-team"]).toBe("sdk");
    expect(s.requests[0]!.headers["x-request-id"]).toBe("req_mine");
  });

  it("package version matches the module's", async () => {
    const { default: manifest } = await import("../package.json", { with: { type: "json" } });
    expect(VERSION).toBe(manifest.version);
  });
});

describe("streams", () => {
  const sse = (body: string) => (_req: unknown, res: import("node:http").ServerResponse) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.end(body);
  };

  it("never sends a stream's POST again after its response started", async () => {
    const s = await stub((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write('id: 1\ndata: {"id":"msg_1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}\n\n');
      setTimeout(() => res.socket?.destroy(), 50);
    });
    const stream = await s.client().chat.completions.create({ model: "m", messages: [], stream: true });
    const seen: string[] = [];
    // No session id anywhere, so there is nothing to resume: the drop is an error.
    await expect(
      (async () => {
        for await (const chunk of stream) seen.push(chunk.choices[0]!.delta.content!);
      })(),
    ).rejects.toBeInstanceOf(APIConnectionError);
    expect(seen).toEqual(["Hi"]);
    expect(s.requests.map((r) => r.method)).toEqual(["POST"]);
  });

  it("retries a stream's POST before the response starts, with the same key", async () => {
    const s = await stub(apiError(503, "model_overloaded", fast), sse('data: {"choices":[],"usage":null}\n\ndata: [DONE]\n\n'));
    const stream = await s.client().chat.completions.create({ model: "m", messages: [], stream: true });
    for await (const _ of stream);
    expect(s.requests).toHaveLength(2);
    expect(s.requests[0]!.headers["idempotency-key"]).toBe(s.requests[1]!.headers["idempotency-key"]);
    expect(s.requests[1]!.headers.accept).toBe("text/event-stream");
  });

  it("throws an error event as an APIError", async () => {
    const s = await stub(
      sse('data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}\n\ndata: {"error":{"type":"api_error","code":"model_error","message":"The model failed.","param":null,"request_id":"req_9"}}\n\n'),
    );
    const stream = await s.client().chat.completions.create({ model: "m", messages: [], stream: true });
    const error = await stream.finalChatCompletion().catch((e) => e);
    expect(error).toMatchObject({ code: "model_error", requestId: "req_9", status: undefined });
  });

  it("decodes CRLF, comments, multi-line data and events split anywhere", async () => {
    const text = ': keep-alive\r\n\r\nid: 1\r\ndata: {"a":\r\ndata: 1}\r\n\r\nevent: note\nid: 2\ndata:plain\n\n: bye\n\ndata: [DONE]\n\n';
    const bytes = new TextEncoder().encode(text);
    for (const size of [1, 2, 3, 7, bytes.length]) {
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          for (let i = 0; i < bytes.length; i += size) controller.enqueue(bytes.slice(i, i + size));
          controller.close();
        },
      });
      const events = [];
      for await (const event of decodeEvents(body)) events.push(event);
      expect(events).toEqual([
        { id: "1", event: undefined, data: '{"a":\n1}' },
        { id: "2", event: "note", data: "plain" },
        { id: "2", event: undefined, data: "[DONE]" },
      ]);
    }
  });
});
