import type { Core, RequestOptions } from "../core.js";
import { PagePromise } from "../pagination.js";
import type { ApiKey, ApiKeyCreateParams, ApiKeyListParams, ApiKeyUpdateParams, ApiKeyWithSecret } from "../types.js";

const key = (id: string) => `/keys/${encodeURIComponent(id)}`;

/**
 * The account's API keys: `retrieveCurrent()` (any key), and with `keys:read`/`keys:write`
 * the provisioning API: keys for your customers with scopes, a model allow-list and a credit limit.
 */
export class Keys {
  constructor(private readonly client: Core) {}

  /** The key this client sends: its scopes, models and credit limit with what is used. */
  retrieveCurrent(options?: RequestOptions): Promise<ApiKey> {
    return this.client.get<ApiKey>("/key", undefined, options);
  }

  /** Newest first, revoked and expired keys included (needs `keys:read`). */
  list(query?: ApiKeyListParams, options?: RequestOptions): PagePromise<ApiKey> {
    return new PagePromise<ApiKey>(this.client, "/keys", { ...query }, options);
  }

  /** Needs `keys:write`. The response's `secret` (`rvya_sk_…`) is shown only here: store it. */
  create(params: ApiKeyCreateParams, options?: RequestOptions): Promise<ApiKeyWithSecret> {
    return this.client.post<ApiKeyWithSecret>("/keys", params, options);
  }

  retrieve(keyId: string, options?: RequestOptions): Promise<ApiKey> {
    return this.client.get<ApiKey>(key(keyId), undefined, options);
  }

  /** `name`, `models` (null: every model) and `credit_limit` (null removes it). */
  update(keyId: string, params: ApiKeyUpdateParams, options?: RequestOptions): Promise<ApiKey> {
    return this.client.patch<ApiKey>(key(keyId), params, options);
  }

  /** Revokes the key at once; returns it with `status: "revoked"`. */
  revoke(keyId: string, options?: RequestOptions): Promise<ApiKey> {
    return this.client.delete<ApiKey>(key(keyId), options);
  }
}
