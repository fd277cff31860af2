/**
 * Typed errors from the real server: 401, 402 (both codes, each its own class), 404, 422
 * and 429, each with the server's `code`, `param` and request id.
 */
import { describe, expect, it } from "vitest";
import {
  APIError,
  AuthenticationError,
  BadRequestError,
  InsufficientCreditsError,
  MaxCreditsExceededError,
  NotFoundError,
  PaymentRequiredError,
  RateLimitError,
  Rivya,
  UnprocessableEntityError,
} from "../src/index.js";
import { client, server } from "./support.js";

async function failure(promise: Promise<unknown>): Promise<APIError> {
  const error = await promise.then(
    () => undefined,
    (e) => e,
  );
  expect(error).toBeInstanceOf(APIError);
  expect(error.requestId).toMatch(/^req_/);
  return error as APIError;
}

describe("typed errors", () => {
  it("401 AuthenticationError for a bad key", async () => {
    const rivya = new Rivya({ baseURL: server().baseURL, apiKey: "rvya_sk_not_a_real_key_at_all_000000000" });
    const error = await failure(rivya.models.list());
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error.status).toBe(401);
    expect(error.type).toBe("authentication_error");
    expect(error.code).toBeTruthy();
    expect(error.headers?.get("www-authenticate")).toMatch(/^Bearer/);
  });

  it("402 InsufficientCreditsError when the wallet cannot cover the price, without retrying", async () => {
    const { baseURL, brokeApiKey } = server();
    const seen: string[] = [];
    const rivya = new Rivya({
      baseURL,
      apiKey: brokeApiKey,
      fetch: (url, init) => {
        seen.push(String(url));
        return fetch(url, init);
      },
    });
    const error = await failure(rivya.generations.create({ model: "rivya-image-1", input: { prompt: "unpaid" } }));
    expect(error).toBeInstanceOf(InsufficientCreditsError);
    expect(error).toBeInstanceOf(PaymentRequiredError);
    expect(error).not.toBeInstanceOf(MaxCreditsExceededError);
    expect(error).toMatchObject({ status: 402, code: "insufficient_credits", type: "billing_error" });
    expect(seen).toHaveLength(1);
  });

  it("402 MaxCreditsExceededError (not InsufficientCreditsError) when the price is above max_credits", async () => {
    const rivya = client();
    const before = await rivya.credits.retrieve();
    const error = await failure(
      rivya.generations.create({ model: "rivya-image-1", input: { prompt: "capped" }, max_credits: 1 }),
    );
    expect(error).toBeInstanceOf(MaxCreditsExceededError);
    expect(error).toBeInstanceOf(PaymentRequiredError);
    expect(error).not.toBeInstanceOf(InsufficientCreditsError);
    expect(error).toMatchObject({ status: 402, code: "max_credits_exceeded", param: "max_credits" });
    expect(error.message).toMatch(/costs \d+ credits?, more than max_credits \(1\)/);
    // Nothing was held: the wallet could pay, the request's own limit refused it.
    expect((await rivya.credits.retrieve()).available).toBe(before.available);
  });

  it("404 NotFoundError naming the parameter", async () => {
    const error = await failure(client().generations.retrieve("task_doesnotexist0000000000"));
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error).toMatchObject({ status: 404, code: "generation_not_found", param: "task_id" });
  });

  it("400 BadRequestError naming the invalid input", async () => {
    const error = await failure(client().generations.create({ model: "rivya-image-1", input: { prompt: "x", width: 1 } }));
    expect(error).toBeInstanceOf(BadRequestError);
    expect(error.param).toBe("input.width");
  });

  it("422 UnprocessableEntityError when an Idempotency-Key is reused for another request", async (ctx) => {
    ctx.skip(!server().idempotency, "Idempotency-Key on POST /api/v1/generations is not on this server yet");
    const rivya = client();
    const key = `sdk-test-${Date.now()}`;
    await rivya.generations.create({ model: "rivya-image-1", input: { prompt: "first", width: 64, height: 64 } }, { idempotencyKey: key });
    const error = await failure(
      rivya.generations.create({ model: "rivya-image-1", input: { prompt: "second", width: 64, height: 64 } }, { idempotencyKey: key }),
    );
    expect(error).toBeInstanceOf(UnprocessableEntityError);
    expect(error.status).toBe(422);
    expect(error.code).toBeTruthy();
  });

  it("429 RateLimitError with Retry-After once the key's rate limit (3/min) is spent", async () => {
    const { limitedBaseURL, limitedApiKey } = server();
    const rivya = new Rivya({ baseURL: limitedBaseURL, apiKey: limitedApiKey, maxRetries: 0 });
    const outcomes: unknown[] = [];
    for (let i = 0; i < 4; i++) outcomes.push(await rivya.models.list().then(() => "ok", (e) => e));
    expect(outcomes.slice(0, 3)).toEqual(["ok", "ok", "ok"]);
    const error = outcomes[3] as APIError;
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error).toMatchObject({ status: 429, type: "rate_limit_error" });
    expect(error.requestId).toMatch(/^req_/);
    expect(Number(error.headers?.get("retry-after"))).toBeGreaterThan(0);
    expect(Number(error.headers?.get("retry-after-ms"))).toBeGreaterThan(0);
  });
});
