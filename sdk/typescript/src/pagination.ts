/**
 * Cursor pages (`{"object": "list", "data", "has_more", "next_cursor"}`).
 *
 *   const page = await client.generations.list({ limit: 10 });   // one page
 *   for await (const task of client.generations.list()) { … }     // every item, page by page
 */
import type { Core, Query, RequestOptions } from "./core.js";
import type { ListEnvelope } from "./types.js";

export class Page<T> implements ListEnvelope<T>, AsyncIterable<T> {
  readonly object = "list" as const;
  readonly data: T[];
  readonly has_more: boolean;
  readonly next_cursor: string | null;

  constructor(
    private readonly client: Core,
    private readonly path: string,
    private readonly query: Query,
    body: ListEnvelope<T>,
    private readonly options?: RequestOptions,
  ) {
    this.data = body.data;
    this.has_more = body.has_more;
    this.next_cursor = body.next_cursor;
  }

  hasNextPage(): boolean {
    return this.has_more && !!this.next_cursor;
  }

  /** The page after this one (check `hasNextPage()` first). */
  getNextPage(): Promise<Page<T>> {
    return fetchPage<T>(this.client, this.path, { ...this.query, after: this.next_cursor }, this.options);
  }

  /** This page and every page after it. */
  async *iterPages(): AsyncGenerator<Page<T>> {
    let page: Page<T> = this;
    yield page;
    while (page.hasNextPage()) {
      page = await page.getNextPage();
      yield page;
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for await (const page of this.iterPages()) yield* page.data;
  }
}

async function fetchPage<T>(client: Core, path: string, query: Query, options?: RequestOptions): Promise<Page<T>> {
  const body = await client.get<ListEnvelope<T>>(path, query, options);
  return new Page<T>(client, path, query, body, options);
}

/** What a `list()` returns: await it for the first page, or `for await` over every item. */
export class PagePromise<T> implements Promise<Page<T>>, AsyncIterable<T> {
  private readonly promise: Promise<Page<T>>;
  readonly [Symbol.toStringTag] = "PagePromise";

  constructor(client: Core, path: string, query: Query = {}, options?: RequestOptions) {
    this.promise = fetchPage<T>(client, path, query, options);
    this.promise.catch(() => undefined); // rejections surface where the caller awaits or iterates
  }

  then<R1 = Page<T>, R2 = never>(
    onfulfilled?: ((value: Page<T>) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.promise.then(onfulfilled, onrejected);
  }

  catch<R = never>(onrejected?: ((reason: unknown) => R | PromiseLike<R>) | null): Promise<Page<T> | R> {
    return this.promise.catch(onrejected);
  }

  finally(onfinally?: (() => void) | null): Promise<Page<T>> {
    return this.promise.finally(onfinally);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    yield* await this.promise;
  }
}
