/**
 * Server-sent events and the chat stream.
 *
 * `ChatCompletionStream` is an async iterable of `chat.completion.chunk`s. It ends at
 * `data: [DONE]`; an error event mid-stream throws an `APIError`; `break` or `abort()`
 * close the connection and end the iteration quietly. When the connection drops before
 * `[DONE]`, the stream reconnects with `GET /chat/sessions/{id}/stream` and
 * `Last-Event-ID: <last id seen>`, so the caller sees every chunk exactly once. The
 * original POST is never sent again once its response has started.
 */
import { APIConnectionError, APIError, APIUserAbortError, RivyaError } from "./errors.js";
import { type Core, type OpenResponse, type RequestOptions, retryDelay, sleep } from "./core.js";
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionMessage, ChatUsage, FinishReason } from "./types.js";

export interface ServerSentEvent {
  id: string | undefined;
  event: string | undefined;
  data: string;
}

/** Decodes a `text/event-stream` body (CR, LF or CRLF lines; comments skipped; multi-line data joined). */
export async function* decodeEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  let buffer = "";
  let data: string[] = [];
  let id: string | undefined;
  let event: string | undefined;
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      for (;;) {
        const end = buffer.search(/\r\n|\r|\n/);
        // A lone CR at the end may be the first half of a CRLF: wait for more bytes.
        if (end < 0 || (!done && end === buffer.length - 1 && buffer[end] === "\r")) break;
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
        if (line === "") {
          if (data.length) yield { id, event, data: data.join("\n") };
          data = [];
          event = undefined;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") data.push(value);
        else if (field === "id") id = value;
        else if (field === "event") event = value;
      }
      if (done) return;
    }
  } finally {
    reader.releaseLock();
  }
}

/** The resume request: `GET /chat/sessions/{id}/stream` after `lastEventId`. */
export type Reconnect = (sessionId: string, lastEventId: string | undefined, signal?: AbortSignal) => Promise<OpenResponse>;

export class ChatCompletionStream implements AsyncIterable<ChatCompletionChunk> {
  /** Aborts the HTTP request; the iteration then ends without an error. */
  readonly controller: AbortController;
  /** The session of this turn (from `Rivya-Session-Id`, then from the chunks). */
  sessionId: string | undefined;
  /** The `id:` of the last event received; where a resume starts. */
  lastEventId: string | undefined;
  /** How many times the stream reconnected after a dropped connection. */
  resumes = 0;

  private iterated = false;
  private finished = false;
  private readonly chunks: ChatCompletionChunk[] = [];
  private iterator: AsyncGenerator<ChatCompletionChunk> | undefined;

  constructor(
    private open: OpenResponse,
    private readonly reconnect: Reconnect | undefined,
    private readonly maxResumes: number,
    signal?: AbortSignal,
  ) {
    this.controller = open.controller;
    this.sessionId = open.response.headers.get("rivya-session-id") ?? undefined;
    // The caller's signal stops the stream for good, resumed connections included.
    signal?.addEventListener("abort", () => this.controller.abort(), { once: true });
  }

  get aborted(): boolean {
    return this.controller.signal.aborted;
  }

  /** Stops reading and closes the connection. The turn itself may go on server-side; `chat.sessions.cancel()` stops it. */
  abort(): void {
    this.controller.abort();
  }

  [Symbol.asyncIterator](): AsyncGenerator<ChatCompletionChunk> {
    if (this.iterated) throw new RivyaError("A stream can be iterated only once; use finalChatCompletion() for the result.");
    this.iterated = true;
    this.iterator = this.iterate();
    return this.iterator;
  }

  private async *iterate(): AsyncGenerator<ChatCompletionChunk> {
    let body = this.open.response.body;
    let failures = 0;
    try {
      for (;;) {
        let dropped: unknown = new APIConnectionError("The stream ended before [DONE].");
        if (body) {
          const events = decodeEvents(body);
          for (;;) {
            let next: IteratorResult<ServerSentEvent>;
            try {
              next = await events.next();
            } catch (err) {
              if (this.aborted) return;
              dropped = err;
              break;
            }
            if (this.aborted) return;
            if (next.done) break;
            const event = next.value;
            if (event.id !== undefined) this.lastEventId = event.id;
            if (event.data === "[DONE]") {
              this.finished = true;
              return;
            }
            const chunk = JSON.parse(event.data);
            if (chunk?.error) throw APIError.generate(undefined, chunk, event.data);
            if (chunk.session_id) this.sessionId = chunk.session_id;
            failures = 0;
            this.chunks.push(chunk);
            yield chunk as ChatCompletionChunk;
          }
        }
        if (this.aborted) return;
        if (!this.reconnect || !this.sessionId || failures >= this.maxResumes) {
          if (dropped instanceof APIConnectionError) throw dropped;
          throw new APIConnectionError("The stream broke off and could not be resumed.", { cause: dropped });
        }
        await sleep(retryDelay(undefined, failures++), this.controller.signal).catch(() => undefined);
        if (this.aborted) return;
        this.resumes++;
        this.open.done();
        try {
          this.open = await this.reconnect(this.sessionId, this.lastEventId, this.controller.signal);
        } catch (err) {
          if (this.aborted) return;
          throw err;
        }
        body = this.open.response.body;
      }
    } finally {
      this.open.done();
      if (!this.finished && !this.aborted) this.controller.abort(); // `break` closes the connection
    }
  }

  /** Reads the rest of the stream and returns the turn as a non-streaming `chat.completion`. */
  async finalChatCompletion(): Promise<ChatCompletion> {
    const iterator = this.iterator ?? this[Symbol.asyncIterator]();
    while (!(await iterator.next()).done);
    if (!this.finished) throw this.aborted ? new APIUserAbortError() : new APIConnectionError("The stream did not finish.");
    return this.assemble();
  }

  /** The assistant's whole message (after reading the rest of the stream). */
  async finalMessage(): Promise<ChatCompletionMessage> {
    return (await this.finalChatCompletion()).choices[0]!.message;
  }

  private assemble(): ChatCompletion {
    const first = this.chunks[0];
    let content = "";
    let finish: FinishReason = null;
    let usage: ChatUsage | null = null;
    for (const chunk of this.chunks) {
      for (const choice of chunk.choices) {
        if (choice.index !== 0) continue;
        content += choice.delta.content ?? "";
        finish = choice.finish_reason ?? finish;
      }
      usage = chunk.usage ?? usage;
    }
    return {
      id: first?.id ?? "",
      object: "chat.completion",
      created: first?.created ?? 0,
      model: first?.model ?? "",
      choices: [
        { index: 0, message: { role: "assistant", content, refusal: null }, logprobs: null, finish_reason: finish },
      ],
      usage,
      system_fingerprint: first?.system_fingerprint ?? null,
      session_id: this.sessionId ?? first?.session_id ?? "",
    } as unknown as ChatCompletion;
  }
}

/** Builds the resume callback for a client. */
export function reconnector(client: Core, options?: RequestOptions): Reconnect {
  return (sessionId, lastEventId, signal) =>
    client.open({
      method: "GET",
      path: `/chat/sessions/${encodeURIComponent(sessionId)}/stream`,
      stream: true,
      options: {
        ...options,
        signal,
        headers: { ...options?.headers, "last-event-id": lastEventId ?? null },
      },
    });
}
