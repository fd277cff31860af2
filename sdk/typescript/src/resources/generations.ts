import { type Core, type RequestOptions, sleep } from "../core.js";
import { WaitTimeoutError } from "../errors.js";
import { PagePromise } from "../pagination.js";
import type { Generation, GenerationCreateParams, GenerationListParams, GenerationQuote } from "../types.js";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const MAX_WAIT_SECONDS = 60; // the server's `Prefer: wait` limit

export interface WaitOptions extends RequestOptions {
  /** Give up after this many milliseconds (default 600 000) with a `WaitTimeoutError`. */
  timeoutMs?: number;
}

/** Asynchronous image, video and audio jobs. */
export class Generations {
  constructor(private readonly client: Core) {}

  /** Validates, prices, reserves the credits and queues the job (202 `queued`); `dry_run: true` only quotes. */
  create(params: GenerationCreateParams & { dry_run: true }, options?: RequestOptions): Promise<GenerationQuote>;
  create(params: GenerationCreateParams, options?: RequestOptions): Promise<Generation>;
  create(params: GenerationCreateParams, options?: RequestOptions): Promise<Generation | GenerationQuote> {
    return this.client.post("/generations", params, options);
  }

  retrieve(taskId: string, options?: RequestOptions): Promise<Generation> {
    return this.client.get<Generation>(`/generations/${encodeURIComponent(taskId)}`, undefined, options);
  }

  /** The account's tasks, newest first; `for await` walks every page. */
  list(query?: GenerationListParams, options?: RequestOptions): PagePromise<Generation> {
    return new PagePromise<Generation>(this.client, "/generations", { ...query }, options);
  }

  /** Asks the task to stop; a queued task is canceled at once and its credits released. */
  cancel(taskId: string, options?: RequestOptions): Promise<Generation> {
    return this.client.post<Generation>(`/generations/${encodeURIComponent(taskId)}/cancel`, undefined, options);
  }

  /**
   * Resolves with the task once it is `succeeded`, `failed` or `canceled`. Long-polls with
   * `Prefer: wait=N` (one request per minute at most), so it is neither chatty nor late.
   */
  async wait(taskId: string, { timeoutMs = 600_000, ...options }: WaitOptions = {}): Promise<Generation> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const remaining = deadline - Date.now();
      const seconds = Math.max(0, Math.min(MAX_WAIT_SECONDS, Math.floor(remaining / 1000)));
      const task = await this.retrieve(taskId, {
        ...options,
        headers: { ...options.headers, prefer: seconds ? `wait=${seconds}` : null },
        timeout: Math.max(options.timeout ?? this.client.timeout, seconds * 1000 + 30_000),
      });
      if (TERMINAL.has(task.status)) return task;
      if (Date.now() >= deadline) {
        throw new WaitTimeoutError(`${taskId} is still ${task.status} after ${timeoutMs} ms.`, task);
      }
      if (!seconds) await sleep(Math.min(250, deadline - Date.now()), options.signal);
    }
  }
}
