import type { Core, RequestOptions } from "../core.js";
import { PagePromise } from "../pagination.js";
import type { Credits as CreditsObject, LedgerEntry, LedgerListParams } from "../types.js";

export class Ledger {
  constructor(private readonly client: Core) {}

  /** The ledger entries behind the balance, newest first (for reconciliation). */
  list(query?: LedgerListParams, options?: RequestOptions): PagePromise<LedgerEntry> {
    return new PagePromise<LedgerEntry>(this.client, "/credits/ledger", { ...query }, options);
  }
}

/** The account's wallet: `GET /credits` (balance, held, available). */
export class Credits {
  readonly ledger: Ledger;

  constructor(private readonly client: Core) {
    this.ledger = new Ledger(client);
  }

  retrieve(options?: RequestOptions): Promise<CreditsObject> {
    return this.client.get<CreditsObject>("/credits", undefined, options);
  }
}
