/**
 * The provisioning API against the real server: a key with `keys:write` issues a restricted,
 * credit-limited key for a customer; the customer key is refused outside its scopes and models
 * and past its limit, with the error classes the SDK maps those codes to.
 */
import { describe, expect, it } from "vitest";
import {
  InsufficientScopeError,
  KeyCreditLimitReachedError,
  ModelNotAllowedError,
  NotFoundError,
  Rivya,
} from "../src/index.js";
import { client, server } from "./support.js";

describe("keys", () => {
  it("provisions a restricted, limited customer key and enforces it", async () => {
    const admin = client({ apiKey: server().adminApiKey });
    const created = await admin.keys.create({
      name: "customer-42",
      scopes: ["models:read", "generations:write"],
      models: ["rivya-image-1"],
      credit_limit: { credits: 3, window: "day" },
    });
    expect(created.id).toMatch(/^key_/);
    expect(created.secret).toMatch(/^rvya_sk_/);
    expect(created.credit_limit).toMatchObject({ credits: 3, window: "day", used: 0 });

    const customer = new Rivya({ baseURL: server().baseURL, apiKey: created.secret, maxRetries: 0 });
    expect((await customer.keys.retrieveCurrent()).id).toBe(created.id);
    const models = [];
    for await (const m of customer.models.list()) models.push(m.id);
    expect(models).toEqual(["rivya-image-1"]);
    await expect(customer.credits.retrieve()).rejects.toBeInstanceOf(InsufficientScopeError);
    await expect(
      customer.generations.create({ model: "rivya-audio-1", input: { prompt: "x" } }),
    ).rejects.toBeInstanceOf(ModelNotAllowedError);
    const input = { prompt: "a lighthouse", width: 64, height: 64 };
    await customer.generations.create({ model: "rivya-image-1", input });
    await expect(customer.generations.create({ model: "rivya-image-1", input })).rejects.toBeInstanceOf(
      KeyCreditLimitReachedError,
    );

    const raised = await admin.keys.update(created.id, { credit_limit: { credits: 100, window: "day" } });
    expect(raised.credit_limit?.credits).toBe(100);
    const listed = [];
    for await (const k of admin.keys.list({ limit: 5 })) listed.push(k.id);
    expect(listed).toContain(created.id);
    expect((await admin.keys.revoke(created.id)).status).toBe("revoked");
    await expect(client().keys.list()).rejects.toBeInstanceOf(InsufficientScopeError);
    await expect(admin.keys.retrieve("key_doesnotexist")).rejects.toBeInstanceOf(NotFoundError);
  });
});
