/**
 * One logical POST, one Idempotency-Key: when the answer to the first attempt is lost on the
 * way back, the retry carries the same key, and a server that honours it runs the work once.
 */
import { afterAll, describe, expect, it } from "vitest";
import { Rivya } from "../src/index.js";
import { client, faultyProxy, server } from "./support.js";

const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const close of closers) await close();
});

async function lossyClient() {
  const { baseURL, apiKey } = server();
  // The server handles the first POST completely; its answer never reaches the client.
  const proxy = await faultyProxy(new URL(baseURL).origin, (req, index) =>
    req.method === "POST" && index === 0 ? "lose-response" : "pass",
  );
  closers.push(proxy.close);
  return { proxy, rivya: new Rivya({ baseURL: `${proxy.url}/api/v1`, apiKey }) };
}

describe("idempotent retries", () => {
  it("retries a POST whose answer was lost with the same Idempotency-Key", async () => {
    const { proxy, rivya } = await lossyClient();
    const task = await rivya.generations.create({ model: "rivya-image-1", input: { prompt: "once", width: 64, height: 64 } });
    expect(task.id).toMatch(/^task_/);
    const posts = proxy.requests.filter((r) => r.method === "POST");
    expect(posts).toHaveLength(2);
    expect(posts[0]!.headers["idempotency-key"]).toBeTruthy();
    expect(posts[1]!.headers["idempotency-key"]).toBe(posts[0]!.headers["idempotency-key"]);
    expect(posts[1]!.body.equals(posts[0]!.body)).toBe(true);
    await rivya.generations.wait(task.id, { timeoutMs: 60_000 });
  });

  it("creates one task, not two, when the server honours the key", async (ctx) => {
    ctx.skip(!server().idempotency, "Idempotency-Key on POST /api/v1/generations is not on this server yet");
    const { rivya } = await lossyClient();
    const prompt = `exactly once ${Date.now()}`;
    const task = await rivya.generations.create({ model: "rivya-image-1", input: { prompt, width: 64, height: 64 } });
    await rivya.generations.wait(task.id, { timeoutMs: 60_000 });
    const matching = [];
    for await (const t of client().generations.list({ limit: 100 })) {
      if ((t.input as { prompt?: string }).prompt === prompt) matching.push(t.id);
    }
    expect(matching).toEqual([task.id]);
  });
});
