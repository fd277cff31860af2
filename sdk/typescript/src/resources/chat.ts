import type { Core, RequestOptions } from "../core.js";
import { PagePromise } from "../pagination.js";
import { ChatCompletionStream, reconnector } from "../streaming.js";
import type {
  ChatCompletion,
  ChatCompletionCreateParams,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionCreateParamsStreaming,
  ChatMessage,
  ChatSession,
  ChatSessionDetail,
  ChatSessionListParams,
} from "../types.js";

export class Completions {
  constructor(private readonly client: Core) {}

  /**
   * One turn of a session (OpenAI Chat Completions shape; `session_id` continues a session).
   * With `stream: true` resolves, once the response has started, to a `ChatCompletionStream`.
   */
  create(params: ChatCompletionCreateParamsStreaming, options?: RequestOptions): Promise<ChatCompletionStream>;
  create(params: ChatCompletionCreateParamsNonStreaming, options?: RequestOptions): Promise<ChatCompletion>;
  create(params: ChatCompletionCreateParams, options?: RequestOptions): Promise<ChatCompletion | ChatCompletionStream>;
  async create(
    params: ChatCompletionCreateParams,
    options?: RequestOptions,
  ): Promise<ChatCompletion | ChatCompletionStream> {
    if (!params.stream) return this.client.post<ChatCompletion>("/chat/completions", params, options);
    const open = await this.client.open({ method: "POST", path: "/chat/completions", body: params, options, stream: true });
    const maxResumes = options?.maxRetries ?? this.client.maxRetries;
    return new ChatCompletionStream(open, reconnector(this.client, options), maxResumes, options?.signal);
  }
}

export class Sessions {
  constructor(private readonly client: Core) {}

  list(query?: ChatSessionListParams, options?: RequestOptions): PagePromise<ChatSession> {
    return new PagePromise<ChatSession>(this.client, "/chat/sessions", { ...query }, options);
  }

  /** The session with every message, its usage and credits. */
  retrieve(sessionId: string, options?: RequestOptions): Promise<ChatSessionDetail> {
    return this.client.get<ChatSessionDetail>(`/chat/sessions/${encodeURIComponent(sessionId)}`, undefined, options);
  }

  /** Stops the session's running turn; returns its (incomplete) assistant message. */
  cancel(sessionId: string, options?: RequestOptions): Promise<ChatMessage> {
    return this.client.post<ChatMessage>(`/chat/sessions/${encodeURIComponent(sessionId)}/cancel`, undefined, options);
  }

  /** Re-attaches to the session's latest turn after event `lastEventId` (whole turn when absent). */
  async stream(
    sessionId: string,
    { lastEventId, ...options }: RequestOptions & { lastEventId?: string } = {},
  ): Promise<ChatCompletionStream> {
    const reconnect = reconnector(this.client, options);
    const open = await reconnect(sessionId, lastEventId, options.signal);
    const maxResumes = options.maxRetries ?? this.client.maxRetries;
    const stream = new ChatCompletionStream(open, reconnect, maxResumes, options.signal);
    stream.sessionId ??= sessionId;
    stream.lastEventId = lastEventId;
    return stream;
  }
}

export class Chat {
  readonly completions: Completions;
  readonly sessions: Sessions;

  constructor(client: Core) {
    this.completions = new Completions(client);
    this.sessions = new Sessions(client);
  }
}
