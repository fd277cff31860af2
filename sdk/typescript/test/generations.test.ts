/**
 * Generations, files and pagination against the real server.
 */
import { describe, expect, it } from "vitest";
import { type Generation, NotFoundError, Page, WaitTimeoutError } from "../src/index.js";
import { client, png } from "./support.js";

const small = { prompt: "a lighthouse at dawn", width: 64, height: 64 };

describe("generations", () => {
  it("creates a generation and waits for its outputs", async () => {
    const rivya = client();
    const task = await rivya.generations.create({ model: "rivya-image-1", input: small, metadata: { order: "42" } });
    expect(task.id).toMatch(/^task_/);
    expect(["queued", "running", "succeeded"]).toContain(task.status);
    expect(task.credits.reserved).toBeGreaterThan(0);

    const done = await rivya.generations.wait(task.id, { timeoutMs: 60_000 });
    expect(done.status).toBe("succeeded");
    expect(done.metadata).toEqual({ order: "42" });
    expect(done.credits.charged).toBe(task.credits.reserved);
    const output = done.outputs[0]!;
    expect(output.content_type).toBe("image/png");
    // The output URL is signed and absolute: it downloads without the API key.
    const download = await fetch(output.url!);
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer()).subarray(1, 4).toString()).toBe("PNG");

    const again = await rivya.generations.retrieve(task.id);
    expect(again.status).toBe("succeeded");
  });

  it("quotes a dry run without creating anything", async () => {
    const quote = await client().generations.create({ model: "rivya-image-1", input: small, dry_run: true });
    expect(quote.object).toBe("generation.quote");
    expect(quote.price).toBeGreaterThan(0);
  });

  it("gives up waiting with WaitTimeoutError carrying the last state", async () => {
    const rivya = client();
    const task = await rivya.generations.create({ model: "rivya-video-1", input: { prompt: "waves", duration: 10, width: 640, height: 360 } });
    const error = await rivya.generations.wait(task.id, { timeoutMs: 100 }).catch((e) => e);
    // The video takes seconds to render, far more than 100 ms.
    expect(error).toBeInstanceOf(WaitTimeoutError);
    expect((error.generation as Generation).id).toBe(task.id);
    const canceled = await rivya.generations.cancel(task.id);
    expect(canceled.cancel_requested || canceled.status === "canceled").toBe(true);
    const final = await rivya.generations.wait(task.id, { timeoutMs: 60_000 });
    expect(["canceled", "succeeded"]).toContain(final.status);
  });

  it("pages with limit/after and walks every page with for await", async () => {
    const rivya = client();
    const created: string[] = [];
    for (let i = 0; i < 3; i++) {
      const task = await rivya.generations.create({ model: "rivya-image-1", input: { ...small, seed: i } });
      created.push(task.id);
    }
    const first = await rivya.generations.list({ limit: 2 });
    expect(first).toBeInstanceOf(Page);
    expect(first.data).toHaveLength(2);
    expect(first.has_more).toBe(true);
    expect(first.hasNextPage()).toBe(true);
    // Newest first.
    expect(first.data.map((t) => t.id)).toEqual([created[2], created[1]]);
    const second = await first.getNextPage();
    expect(second.data[0]!.id).toBe(created[0]);

    const seen: string[] = [];
    for await (const task of rivya.generations.list({ limit: 2 })) seen.push(task.id);
    expect(seen.slice(0, 3)).toEqual(created.reverse());
    expect(new Set(seen).size).toBe(seen.length);
    const pages = [];
    for await (const page of first.iterPages()) pages.push(page.data.length);
    expect(pages.reduce((a, b) => a + b, 0)).toBe(seen.length);
    expect(pages.every((n) => n <= 2)).toBe(true);
    for (const id of created) await rivya.generations.wait(id, { timeoutMs: 60_000 });
  });
});

describe("files", () => {
  it("uploads a file and retrieves it", async () => {
    const rivya = client();
    const bytes = png(40, 30);
    const file = await rivya.files.upload({ file: bytes, purpose: "reference", filename: "gradient.png" });
    expect(file).toMatchObject({ object: "file", filename: "gradient.png", content_type: "image/png", width: 40, height: 30, bytes: bytes.length });
    const again = await rivya.files.retrieve(file.id);
    expect(again.sha256).toBe(file.sha256);
    const content = await fetch(again.url!);
    expect(Buffer.from(await content.arrayBuffer()).equals(bytes)).toBe(true);

    // A Blob/File upload, used as a generation's reference image.
    const blobFile = await rivya.files.upload({ file: new File([bytes], "ref.png"), purpose: "reference" });
    expect(blobFile.filename).toBe("ref.png");
    const task = await rivya.generations.create({ model: "rivya-image-1", input: { ...small, reference_image: blobFile.id } });
    expect((await rivya.generations.wait(task.id, { timeoutMs: 60_000 })).status).toBe("succeeded");

    const listed = [];
    for await (const f of rivya.files.list({ purpose: "reference", limit: 1 })) listed.push(f.id);
    expect(listed).toEqual(expect.arrayContaining([file.id, blobFile.id]));

    await rivya.files.delete(file.id);
    expect((await rivya.files.retrieve(file.id)).deleted).toBe(true);
  });

  it("lists and retrieves models", async () => {
    const rivya = client();
    const models = [];
    for await (const model of rivya.models.list()) models.push(model.id);
    expect(models).toContain("rivya-image-1");
    const model = await rivya.models.retrieve("rivya-image-1");
    expect(model.kind).toBe("image");
    await expect(rivya.models.retrieve("no-such-model")).rejects.toBeInstanceOf(NotFoundError);
  });
});
