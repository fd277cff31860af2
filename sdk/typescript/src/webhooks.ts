/**
 * Standard Webhooks verification (https://www.standardwebhooks.com/), as Rivya signs:
 *
 *   webhook-id:        evt_…
 *   webhook-timestamp: Unix seconds
 *   webhook-signature: "v1,<base64 HMAC-SHA256(key, `${id}.${timestamp}.${body}`)>", space-separated
 *                      (two during a secret rotation; any one matching is enough)
 *
 * The key is the base64 part of the endpoint's `whsec_…` secret. Signatures are compared
 * in constant time, and the timestamp must be within `toleranceSeconds` (default 300) of now.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { InvalidWebhookSignatureError } from "./errors.js";
import type { WebhookEnvelope } from "./types.js";

/** A `Headers`, or Node's `req.headers` (`IncomingHttpHeaders`), or any name → value record. */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

export interface VerifyOptions {
  /** Accepted clock difference in seconds, either way (default 300). */
  toleranceSeconds?: number;
  /** The current time in milliseconds (default `Date.now()`). */
  now?: number;
}

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as Headers).get === "function") return (headers as Headers).get(name) ?? undefined;
  const record = headers as Record<string, string | string[] | undefined>;
  const key = Object.keys(record).find((k) => k.toLowerCase() === name);
  const value = key === undefined ? undefined : record[key];
  return Array.isArray(value) ? value.join(" ") : value;
}

/**
 * Checks a delivery and returns its parsed body. Pass the body exactly as received
 * (the raw bytes or string, not re-serialised JSON). Throws `InvalidWebhookSignatureError`.
 */
export function verifyWebhook(
  rawBody: string | Uint8Array,
  headers: WebhookHeaders,
  secret: string,
  options: VerifyOptions = {},
): WebhookEnvelope {
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !timestamp || !signatures) {
    throw new InvalidWebhookSignatureError("Missing webhook-id, webhook-timestamp or webhook-signature header.");
  }
  if (!/^\d+$/.test(timestamp)) throw new InvalidWebhookSignatureError("webhook-timestamp is not Unix seconds.");
  const tolerance = options.toleranceSeconds ?? 300;
  const now = Math.floor((options.now ?? Date.now()) / 1000);
  const sent = Number(timestamp);
  if (sent < now - tolerance) throw new InvalidWebhookSignatureError("The webhook timestamp is too old.");
  if (sent > now + tolerance) throw new InvalidWebhookSignatureError("The webhook timestamp is in the future.");

  const key = Buffer.from(secret.startsWith("whsec_") ? secret.slice(6) : secret, "base64");
  if (key.length === 0) throw new InvalidWebhookSignatureError("The secret is empty or not base64 (expected whsec_…).");
  const body = typeof rawBody === "string" ? Buffer.from(rawBody, "utf8") : Buffer.from(rawBody);
  const expected = createHmac("sha256", key)
    .update(`${id}.${timestamp}.`)
    .update(body)
    .digest();

  let matched = false;
  for (const token of signatures.split(" ")) {
    const [version, signature] = token.split(",", 2);
    if (version !== "v1" || !signature) continue;
    const given = Buffer.from(signature, "base64");
    // Checks every token (no early exit) so timing says nothing about which one matched.
    if (given.length === expected.length && timingSafeEqual(given, expected)) matched = true;
  }
  if (!matched) throw new InvalidWebhookSignatureError("No webhook-signature matches the body and secret.");
  try {
    return JSON.parse(body.toString("utf8")) as WebhookEnvelope;
  } catch {
    throw new InvalidWebhookSignatureError("The webhook body is not JSON.");
  }
}
