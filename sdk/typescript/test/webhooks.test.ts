/**
 * Webhooks against the real server: an endpoint pointing at a receiver in this test gets a
 * real signed delivery, which `webhooks.verify` accepts (and rejects once tampered with).
 */
import { afterAll, describe, expect, it } from "vitest";
import { InvalidWebhookSignatureError, NotFoundError } from "../src/index.js";
import { client, webhookReceiver } from "./support.js";

const receiver = await webhookReceiver();
afterAll(() => receiver.close());

describe("webhooks", () => {
  it("verifies a real delivery of generation.succeeded", async () => {
    const rivya = client();
    const endpoint = await rivya.webhooks.create({
      url: `${receiver.url}/hooks/rivya`,
      event_types: ["generation.succeeded"],
      description: "sdk test",
    });
    expect(endpoint.id).toMatch(/^we_/);
    expect(endpoint.secret).toMatch(/^whsec_/);

    const task = await rivya.generations.create({ model: "rivya-image-1", input: { prompt: "signed", width: 64, height: 64 } });
    await rivya.generations.wait(task.id, { timeoutMs: 60_000 });
    const delivery = await receiver.next();
    expect(delivery.url).toBe("/hooks/rivya");

    const event = rivya.webhooks.verify(delivery.body, delivery.headers, endpoint.secret);
    expect(event.type).toBe("generation.succeeded");
    expect(event.id).toBe(delivery.headers["webhook-id"]);
    expect((event.data as { id: string }).id).toBe(task.id);

    const tampered = Buffer.from(delivery.body.toString().replace(task.id, "task_forged0000000000000000"));
    expect(() => rivya.webhooks.verify(tampered, delivery.headers, endpoint.secret)).toThrow(InvalidWebhookSignatureError);
    const rotated = await rivya.webhooks.rotateSecret(endpoint.id);
    expect(rotated.secret).not.toBe(endpoint.secret);
    expect(() => rivya.webhooks.verify(delivery.body, delivery.headers, rotated.secret)).toThrow(InvalidWebhookSignatureError);

    // The event log shows the event with its successful delivery.
    const logged = await rivya.webhookEvents.retrieve(event.id);
    expect(logged.type).toBe("generation.succeeded");
    const found = [];
    for await (const e of rivya.webhookEvents.list({ type: "generation.succeeded", limit: 1 })) found.push(e.id);
    expect(found).toContain(event.id);
    await rivya.webhooks.delete(endpoint.id);
  });

  it("manages endpoints: list, retrieve, update, test, delete", async () => {
    const rivya = client();
    const endpoint = await rivya.webhooks.create({ url: `${receiver.url}/hooks/other`, event_types: ["*"] });
    const listed = [];
    for await (const e of rivya.webhooks.list()) listed.push(e.id);
    expect(listed).toContain(endpoint.id);
    expect((await rivya.webhooks.retrieve(endpoint.id)).url).toBe(`${receiver.url}/hooks/other`);
    const updated = await rivya.webhooks.update(endpoint.id, { description: "renamed" });
    expect(updated.description).toBe("renamed");

    const test = await rivya.webhooks.test(endpoint.id);
    const delivery = await receiver.next();
    expect(delivery.url).toBe("/hooks/other");
    expect(rivya.webhooks.verify(delivery.body, delivery.headers, endpoint.secret).id).toBe(test.id);

    await rivya.webhooks.delete(endpoint.id);
    await expect(rivya.webhooks.retrieve(endpoint.id)).rejects.toBeInstanceOf(NotFoundError);
  });
});
