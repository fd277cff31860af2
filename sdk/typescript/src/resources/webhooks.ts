import type { Core, RequestOptions } from "../core.js";
import { PagePromise } from "../pagination.js";
import type {
  WebhookEndpoint,
  WebhookEndpointCreateParams,
  WebhookEndpointDeleted,
  WebhookEndpointListParams,
  WebhookEndpointUpdateParams,
  WebhookEndpointWithSecret,
  WebhookEnvelope,
  WebhookEvent,
  WebhookEventListParams,
  WebhookRedeliverParams,
} from "../types.js";
import { type VerifyOptions, type WebhookHeaders, verifyWebhook } from "../webhooks.js";

const endpoint = (id: string) => `/webhooks/${encodeURIComponent(id)}`;

/** Webhook endpoints, and `verify()` for the deliveries they receive. */
export class Webhooks {
  constructor(private readonly client: Core) {}

  list(query?: WebhookEndpointListParams, options?: RequestOptions): PagePromise<WebhookEndpoint> {
    return new PagePromise<WebhookEndpoint>(this.client, "/webhooks", { ...query }, options);
  }

  /** The response's `secret` (`whsec_…`) is shown only here: store it. */
  create(params: WebhookEndpointCreateParams, options?: RequestOptions): Promise<WebhookEndpointWithSecret> {
    return this.client.post<WebhookEndpointWithSecret>("/webhooks", params, options);
  }

  retrieve(endpointId: string, options?: RequestOptions): Promise<WebhookEndpoint> {
    return this.client.get<WebhookEndpoint>(endpoint(endpointId), undefined, options);
  }

  update(endpointId: string, params: WebhookEndpointUpdateParams, options?: RequestOptions): Promise<WebhookEndpoint> {
    return this.client.patch<WebhookEndpoint>(endpoint(endpointId), params, options);
  }

  delete(endpointId: string, options?: RequestOptions): Promise<WebhookEndpointDeleted> {
    return this.client.delete<WebhookEndpointDeleted>(endpoint(endpointId), options);
  }

  /** A new secret; the old one keeps signing alongside for a grace period. */
  rotateSecret(endpointId: string, options?: RequestOptions): Promise<WebhookEndpointWithSecret> {
    return this.client.post<WebhookEndpointWithSecret>(`${endpoint(endpointId)}/rotate-secret`, undefined, options);
  }

  /** Sends a signed test event to the endpoint. */
  test(endpointId: string, options?: RequestOptions): Promise<WebhookEvent> {
    return this.client.post<WebhookEvent>(`${endpoint(endpointId)}/test`, undefined, options);
  }

  /**
   * Checks a delivery's Standard Webhooks signature and timestamp and returns the parsed
   * event; throws `InvalidWebhookSignatureError`. `rawBody` must be the bytes as received.
   */
  verify(rawBody: string | Uint8Array, headers: WebhookHeaders, secret: string, options?: VerifyOptions): WebhookEnvelope {
    return verifyWebhook(rawBody, headers, secret, options);
  }
}

/** The event log: every event with its deliveries and attempts. */
export class WebhookEvents {
  constructor(private readonly client: Core) {}

  list(query?: WebhookEventListParams, options?: RequestOptions): PagePromise<WebhookEvent> {
    return new PagePromise<WebhookEvent>(this.client, "/webhook-events", { ...query }, options);
  }

  retrieve(eventId: string, options?: RequestOptions): Promise<WebhookEvent> {
    return this.client.get<WebhookEvent>(`/webhook-events/${encodeURIComponent(eventId)}`, undefined, options);
  }

  redeliver(eventId: string, params?: WebhookRedeliverParams, options?: RequestOptions): Promise<WebhookEvent> {
    return this.client.post<WebhookEvent>(`/webhook-events/${encodeURIComponent(eventId)}/redeliver`, params ?? {}, options);
  }
}
