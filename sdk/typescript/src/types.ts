/**
 * Public names for the API's objects, taken from the types generated from the
 * server's OpenAPI document (`src/generated/openapi.ts`), so they cannot drift
 * from the server.
 *
 * `Schema<"Name", Fallback>` is the generated schema when the document has it,
 * else the hand-written fallback: it keeps the client compiling against a
 * server whose document does not describe an endpoint yet, and switches to the
 * generated type by itself once `npm run generate` picks the endpoint up.
 */
import type { components, operations } from "./generated/openapi.js";

type Schemas = components["schemas"];
type Operations = operations;
export type Schema<K extends string, Fallback = never> = K extends keyof Schemas ? Schemas[K] : Fallback;
type QueryOf<Op extends string, Fallback> = Op extends keyof Operations
  ? NonNullable<Operations[Op] extends { parameters: { query?: infer Q } } ? Q : never>
  : Fallback;

/** `?limit=` (1–100, default 20) and `?after=<id of the last object of the previous page>`. */
export interface PageParams {
  limit?: number;
  after?: string;
}

export interface ListEnvelope<T> {
  object: "list";
  data: T[];
  has_more: boolean;
  next_cursor: string | null;
}

// --- catalog and files -----------------------------------------------------------------

export type Model = Schema<"Model">;
export type ModelListParams = QueryOf<"listModels", PageParams>;
export type FileObject = Schema<"File">;
export type FileListParams = QueryOf<"listFiles", PageParams>;
export type FilePurpose = Schema<"FileUploadPurposeEnum", "reference" | "chat_attachment">;

export interface FileUploadParams {
  /** The content: a `Blob`/`File` (e.g. from `fs.openAsBlob(path)`), bytes or an `ArrayBuffer`. */
  file: Blob | ArrayBuffer | ArrayBufferView;
  purpose: FilePurpose;
  /** Defaults to the `File`'s name, else `upload`. The server reads the type from the bytes, not the name. */
  filename?: string;
}

// --- generations -----------------------------------------------------------------------

export type Generation = Schema<"GenerationOutput">;
export type GenerationStatus = Generation["status"];
export type GenerationQuote = Schema<"GenerationQuote">;
export type GenerationCreateParams = Schema<"GenerationCreateInputRequest">;
export type GenerationListParams = QueryOf<"listGenerations", PageParams>;

// --- webhooks --------------------------------------------------------------------------

export type WebhookEndpoint = Schema<"WebhookEndpointOutput">;
export type WebhookEndpointWithSecret = Schema<"WebhookEndpointWithSecretOutput">;
export type WebhookEndpointCreateParams = Schema<"WebhookEndpointCreateInputRequest">;
export type WebhookEndpointUpdateParams = Schema<"PatchedWebhookEndpointUpdateInputRequest">;
export type WebhookEndpointDeleted = Schema<"WebhookEndpointDeletedOutput">;
export type WebhookEndpointListParams = QueryOf<"listWebhookEndpoints", PageParams>;
export type WebhookEvent = Schema<"WebhookEventOutput">;
export type WebhookEventListParams = QueryOf<"listWebhookEvents", PageParams>;
export type WebhookRedeliverParams = Schema<"WebhookRedeliverInputRequest", { endpoint_id?: string }>;
/** The signed body of a delivery. */
export type WebhookEnvelope = Schema<"WebhookEnvelope">;

// --- API keys --------------------------------------------------------------------------

export type ApiKey = Schema<"APIKeyOutput">;
export type ApiKeyWithSecret = Schema<"APIKeyWithSecretOutput">;
export type ApiKeyCreateParams = Schema<"APIKeyCreateInputRequest">;
export type ApiKeyUpdateParams = Schema<"PatchedAPIKeyUpdateInputRequest">;
export type ApiKeyListParams = QueryOf<"listKeys", PageParams>;
export type ApiKeyScope = Schema<"ApiKeyScopeEnum", string>;
export type CreditLimit = Schema<"CreditLimitOutput">;

// --- credits ---------------------------------------------------------------------------

export type Credits = Schema<
  "Credits",
  Schema<"CreditsOutput", { object: "credits"; balance: number; held: number; available: number; [key: string]: unknown }>
>;
export type LedgerEntry = Schema<
  "LedgerEntry",
  Schema<"LedgerEntryOutput", { id: string; object: string; type: string; amount: number; created_at: string; [key: string]: unknown }>
>;
export type CreditAlerts = Schema<
  "CreditsAlertsOutput",
  { object: "credits_alerts"; low_balance_threshold: number | null; low_balance_triggered: boolean; available: number }
>;
export type CreditAlertsUpdateParams = Schema<
  "PatchedCreditsAlertsUpdateInputRequest",
  { low_balance_threshold?: number | null }
>;
export type LedgerListParams = QueryOf<"listLedgerEntries", PageParams & Record<string, string | number | boolean | undefined>>;

// --- chat ------------------------------------------------------------------------------

export interface ChatUsageFallback {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Credits charged for the turn (Rivya extension). */
  credits: number;
}
export type ChatUsage = Schema<"ChatUsage", ChatUsageFallback>;

export type ChatContentPart =
  | { type: "text"; text: string }
  | { type: "image_url"; image_url: { url: string; detail?: "auto" | "low" | "high" } };

export type ChatMessageParam = Schema<
  "ChatMessageInputRequest",
  { role: "system" | "developer" | "user" | "assistant"; content: string | ChatContentPart[] }
>;

interface ChatCompletionCreateParamsFallback {
  model: string;
  messages: ChatMessageParam[];
  /** Rivya extension: continue this session (`chat_…`); absent starts a new one. */
  session_id?: string | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  stop?: string | string[] | null;
  seed?: number | null;
  metadata?: Record<string, string> | null;
  [key: string]: unknown;
}
type ChatCompletionCreateBase = Omit<Schema<"ChatCompletionInputRequest", ChatCompletionCreateParamsFallback>, "stream">;
export type ChatCompletionCreateParamsNonStreaming = ChatCompletionCreateBase & { stream?: false | null };
export type ChatCompletionCreateParamsStreaming = ChatCompletionCreateBase & { stream: true };
export type ChatCompletionCreateParams = ChatCompletionCreateParamsNonStreaming | ChatCompletionCreateParamsStreaming;

export type FinishReason = "stop" | "length" | "content_filter" | null;

interface ChatCompletionFallback {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: {
    index: number;
    message: { role: "assistant"; content: string | null; refusal?: string | null };
    logprobs: null;
    finish_reason: FinishReason;
  }[];
  usage: ChatUsage;
  system_fingerprint: string | null;
  /** The session the turn belongs to (Rivya extension). */
  session_id: string;
}
export type ChatCompletion = Schema<"ChatCompletion", ChatCompletionFallback>;
export type ChatCompletionMessage = ChatCompletion["choices"][number]["message"];

/** One `data:` event of a streamed turn (the server documents it inside the event-stream schema). */
export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  system_fingerprint?: string | null;
  /** One choice; empty in the last chunk, which carries `usage`. */
  choices: {
    index: number;
    delta: { role?: "assistant"; content?: string | null };
    logprobs?: null;
    finish_reason: FinishReason;
  }[];
  usage: ChatUsage | null;
  session_id: string;
}

export type ChatSession = Schema<
  "ChatSessionOutput",
  {
    id: string;
    object: "chat.session";
    title: string;
    model: string;
    message_count: number;
    credits_spent: number;
    created_at: string;
    updated_at: string;
  }
>;
export type ChatMessage = Schema<
  "ChatMessageOutput",
  {
    id: string;
    object: "chat.message";
    role: string;
    content: string;
    status: string;
    finish_reason: string | null;
    usage: ChatUsage | null;
    created_at: string;
    [key: string]: unknown;
  }
>;
export type ChatSessionDetail = Schema<"ChatSessionDetailOutput", ChatSession & { messages: ChatMessage[] }>;
export type ChatSessionListParams = PageParams;
