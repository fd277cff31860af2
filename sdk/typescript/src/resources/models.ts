import type { Core, RequestOptions } from "../core.js";
import { PagePromise } from "../pagination.js";
import type { Model, ModelListParams } from "../types.js";

/** The model catalog: `GET /models`, `GET /models/{id}`. */
export class Models {
  constructor(private readonly client: Core) {}

  list(query?: ModelListParams, options?: RequestOptions): PagePromise<Model> {
    return new PagePromise<Model>(this.client, "/models", { ...query }, options);
  }

  retrieve(modelId: string, options?: RequestOptions): Promise<Model> {
    return this.client.get<Model>(`/models/${encodeURIComponent(modelId)}`, undefined, options);
  }
}
