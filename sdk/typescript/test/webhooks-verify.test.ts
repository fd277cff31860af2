/**
 * `webhooks.verify` on its own: the Standard Webhooks specification's published test
 * vector, tampering, tolerance, rotation and header forms. (A real delivery from the
 * server is verified in webhooks.test.ts.)
 */
import { describe, expect, it } from "vitest";
import { InvalidWebhookSignatureError, Rivya, verifyWebhook } from "../src/index.js";

// From the Standard Webhooks specification's reference implementations.
const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TIMESTAMP = 1614265330;
const BODY = '{"test": 2432232314}';
const SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
const AT = TIMESTAMP * 1000;

const headers = (signature = SIGNATURE, timestamp = String(TIMESTAMP)) => ({
  "webhook-id": ID,
  "webhook-timestamp": timestamp,
  "webhook-signature": signature,
});

describe("verifyWebhook", () => {
  it("accepts the specification's test vector and returns the parsed body", () => {
    expect(verifyWebhook(BODY, headers(), SECRET, { now: AT })).toEqual({ test: 2432232314 });
    expect(verifyWebhook(Buffer.from(BODY), new Headers(headers()), SECRET, { now: AT })).toEqual({ test: 2432232314 });
    // Node's IncomingHttpHeaders are lower-case; other records may not be.
    expect(verifyWebhook(BODY, { "Webhook-Id": ID, "Webhook-Timestamp": String(TIMESTAMP), "Webhook-Signature": SIGNATURE }, SECRET, { now: AT })).toBeTruthy();
  });

  it("is on the client as webhooks.verify", () => {
    const client = new Rivya({ apiKey: "rvya_sk_x" });
    expect(client.webhooks.verify(BODY, headers(), SECRET, { now: AT })).toEqual({ test: 2432232314 });
  });

  it("accepts any matching signature among several (secret rotation)", () => {
    const rotated = `v1,bm90IGl0 v2,abc ${SIGNATURE}`;
    expect(verifyWebhook(BODY, headers(rotated), SECRET, { now: AT })).toBeTruthy();
  });

  it.each([
    ["a changed body", '{"test": 2432232315}', headers(), SECRET],
    ["a re-serialised body", JSON.stringify(JSON.parse(BODY)), headers(), SECRET],
    ["another secret", BODY, headers(), "whsec_bm90IHRoZSBzZWNyZXQgYXQgYWxs"],
    ["a changed id", BODY, { ...headers(), "webhook-id": "msg_other" }, SECRET],
    ["a wrong signature version", BODY, headers(SIGNATURE.replace("v1,", "v2,")), SECRET],
    ["a truncated signature", BODY, headers(SIGNATURE.slice(0, -4)), SECRET],
    ["no signature header", BODY, { "webhook-id": ID, "webhook-timestamp": String(TIMESTAMP) }, SECRET],
    ["a non-numeric timestamp", BODY, headers(SIGNATURE, "yesterday"), SECRET],
  ])("rejects %s", (_name, body, h, secret) => {
    expect(() => verifyWebhook(body, h, secret, { now: AT })).toThrow(InvalidWebhookSignatureError);
  });

  it("rejects timestamps outside the tolerance, either way", () => {
    expect(verifyWebhook(BODY, headers(), SECRET, { now: AT + 299_000 })).toBeTruthy();
    expect(() => verifyWebhook(BODY, headers(), SECRET, { now: AT + 301_000 })).toThrow(/too old/);
    expect(() => verifyWebhook(BODY, headers(), SECRET, { now: AT - 301_000 })).toThrow(/future/);
    expect(verifyWebhook(BODY, headers(), SECRET, { now: AT + 3_000_000, toleranceSeconds: 3600 })).toBeTruthy();
    // Default clock: a 2021 timestamp is long past.
    expect(() => verifyWebhook(BODY, headers(), SECRET)).toThrow(/too old/);
  });
});
