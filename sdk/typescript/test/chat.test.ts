/**
 * Chat against the real server: a streamed turn and its session continued, the final
 * message helper, aborting a stream, and resuming a stream whose connection dropped.
 * Each test needs its endpoint on the server and says which one when it is missing.
 */
import { afterAll, describe, expect, it } from "vitest";
import { APIUserAbortError, InsufficientCreditsError, NotFoundError, Rivya } from "../src/index.js";
import { client, faultyProxy, requireOperation, server } from "./support.js";

const MODEL = "rivya-chat-1";
const COMPLETIONS = "POST /api/v1/chat/completions";
const RESUME = "GET /api/v1/chat/sessions/{session_id}/stream";
const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const close of closers) await close();
});

describe("chat", () => {
  it("streams a turn, then continues its session", async (ctx) => {
    requireOperation(ctx, COMPLETIONS);
    requireOperation(ctx, "GET /api/v1/chat/sessions/{session_id}");
    const rivya = client();
    const stream = await rivya.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Hello from the SDK" }],
      stream: true,
    });
    let text = "";
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.delta.content ?? "";
      expect(chunk.object).toBe("chat.completion.chunk");
    }
    expect(chunks).toBeGreaterThan(2); // token by token, then the usage chunk
    expect(text).toContain("Hello from the SDK");
    const completion = await stream.finalChatCompletion();
    expect(completion.choices[0]!.message.content).toBe(text);
    expect(completion.choices[0]!.finish_reason).toBe("stop");
    expect(completion.usage.completion_tokens).toBeGreaterThan(0);
    expect(completion.usage.credits).toBeGreaterThanOrEqual(1);
    const sessionId = stream.sessionId!;
    expect(sessionId).toMatch(/^chat_/);
    expect(completion.session_id).toBe(sessionId);

    // The next turn sends only the new message; the server prepends the history.
    const next = await rivya.chat.completions.create({
      model: MODEL,
      session_id: sessionId,
      messages: [{ role: "user", content: "And a second question" }],
    });
    expect(next.object).toBe("chat.completion");
    expect(next.session_id).toBe(sessionId);
    expect(next.choices[0]!.message.content).toContain("You sent 3 messages");

    const session = await rivya.chat.sessions.retrieve(sessionId);
    expect(session.messages.map((m) => m.role)).toEqual(["user", "assistant", "user", "assistant"]);
    expect(session.messages[1]!.content).toBe(text);
    const ids = [];
    for await (const s of rivya.chat.sessions.list({ limit: 1 })) ids.push(s.id);
    expect(ids).toContain(sessionId);
  });

  it("collects the final message without iterating", async (ctx) => {
    requireOperation(ctx, COMPLETIONS);
    const stream = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Just the result" }],
      stream: true,
    });
    const message = await stream.finalMessage();
    expect(message.role).toBe("assistant");
    expect(message.content).toContain("Just the result");
    expect(() => stream[Symbol.asyncIterator]()).toThrow(/only once/);
  });

  it("aborts a stream: the loop ends quietly and no more chunks arrive", async (ctx) => {
    requireOperation(ctx, COMPLETIONS);
    const rivya = client();
    const stream = await rivya.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "a long question ".repeat(50) }],
      stream: true,
    });
    const seen = [];
    for await (const chunk of stream) {
      seen.push(chunk);
      stream.controller.abort();
    }
    expect(seen).toHaveLength(1);
    expect(stream.aborted).toBe(true);
    await expect(stream.finalChatCompletion()).rejects.toBeInstanceOf(APIUserAbortError);

    // The caller's AbortSignal does the same, and `break` closes the connection too.
    const controller = new AbortController();
    const second = await rivya.chat.completions.create(
      { model: MODEL, messages: [{ role: "user", content: "again" }], stream: true },
      { signal: controller.signal },
    );
    let count = 0;
    for await (const _ of second) {
      if (++count === 2) controller.abort();
    }
    expect(count).toBe(2);
    const third = await rivya.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "x" }], stream: true });
    for await (const _ of third) break;
    expect(third.aborted).toBe(true);
  });

  it("resumes a dropped stream with Last-Event-ID and delivers every chunk once", async (ctx) => {
    requireOperation(ctx, COMPLETIONS);
    requireOperation(ctx, RESUME);
    const { baseURL, apiKey } = server();
    const origin = new URL(baseURL).origin;
    // The first response is cut after two events; the resume request goes through untouched.
    const proxy = await faultyProxy(origin, (req) =>
      req.method === "POST" && req.url.endsWith("/chat/completions") ? { dropAfterEvents: 2 } : "pass",
    );
    closers.push(proxy.close);
    const rivya = new Rivya({ baseURL: `${proxy.url}/api/v1`, apiKey });
    const stream = await rivya.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Please survive a dropped connection" }],
      stream: true,
    });
    const ids: string[] = [];
    let text = "";
    for await (const chunk of stream) {
      ids.push(stream.lastEventId!);
      text += chunk.choices[0]?.delta.content ?? "";
    }
    expect(stream.resumes).toBe(1);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.map(Number)).toEqual(ids.map((_, i) => i + 1));
    expect(proxy.requests.map((r) => `${r.method} ${r.url.replace(/chat_[\w-]+/, "{id}")}`)).toEqual([
      "POST /api/v1/chat/completions",
      "GET /api/v1/chat/sessions/{id}/stream",
    ]);
    expect(proxy.requests[1]!.headers["last-event-id"]).toBe("2");
    // Nothing lost, nothing doubled: the text is the saved assistant message.
    const session = await client().chat.sessions.retrieve(stream.sessionId!);
    expect(session.messages.at(-1)!.content).toBe(text);
    expect((await stream.finalChatCompletion()).choices[0]!.message.content).toBe(text);
  });

  it("re-attaches to a session's latest turn with chat.sessions.stream", async (ctx) => {
    requireOperation(ctx, COMPLETIONS);
    requireOperation(ctx, RESUME);
    const rivya = client();
    const done = await rivya.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "replay me" }] });
    const replay = await rivya.chat.sessions.stream(done.session_id, { lastEventId: "1" });
    const completion = await replay.finalChatCompletion();
    // Event 1 carried the first token; the replay starts after it.
    expect(done.choices[0]!.message.content!.endsWith(completion.choices[0]!.message.content!)).toBe(true);
    expect(completion.choices[0]!.message.content!.length).toBeLessThan(done.choices[0]!.message.content!.length);
  });

  it("chat errors are typed: unknown session 404, empty wallet 402", async (ctx) => {
    requireOperation(ctx, COMPLETIONS);
    const missing = await client()
      .chat.completions.create({ model: MODEL, session_id: "chat_doesnotexist00000000", messages: [{ role: "user", content: "hi" }] })
      .catch((e) => e);
    expect(missing).toBeInstanceOf(NotFoundError);
    expect(missing).toMatchObject({ code: "session_not_found", param: "session_id" });
    const { baseURL, brokeApiKey } = server();
    const broke = new Rivya({ baseURL, apiKey: brokeApiKey });
    const error = await broke.chat.completions
      .create({ model: MODEL, messages: [{ role: "user", content: "hi" }], stream: true })
      .catch((e) => e);
    expect(error).toBeInstanceOf(InsufficientCreditsError);
    expect(error.requestId).toMatch(/^req_/);
  });
});
