import type { Core, RequestOptions } from "../core.js";
import { PagePromise } from "../pagination.js";
import type {
  CreditAlerts,
  CreditAlertsUpdateParams,
  Credits as CreditsObject,
  LedgerEntry,
  LedgerListParams,
} from "../types.js";

export class Ledger {
  constructor(private readonly client: Core) {}

  /** The ledger entries behind the balance, newest first (for reconciliation). */
  list(query?: LedgerListParams, options?: RequestOptions): PagePromise<LedgerEntry> {
    return new PagePromise<LedgerEntry>(this.client, "/credits/ledger", { ...query }, options);
  }
}

/** The low-balance alert: `GET`/`PATCH /credits/alerts` (a `credits.low` webhook event once per crossing). */
export class Alerts {
  constructor(private readonly client: Core) {}

  retrieve(options?: RequestOptions): Promise<CreditAlerts> {
    return this.client.get<CreditAlerts>("/credits/alerts", undefined, options);
  }

  /** Set `low_balance_threshold` (credits), or `null` to turn the alert off. */
  update(params: CreditAlertsUpdateParams, options?: RequestOptions): Promise<CreditAlerts> {
    return this.client.patch<CreditAlerts>("/credits/alerts", params, options);
  }
}

/** The account's wallet: `GET /credits` (balance, held, available). */
export class Credits {
  readonly ledger: Ledger;
  readonly alerts: Alerts;

  constructor(private readonly client: Core) {
    this.ledger = new Ledger(client);
    this.alerts = new Alerts(client);
  }

  retrieve(options?: RequestOptions): Promise<CreditsObject> {
    return this.client.get<CreditsObject>("/credits", undefined, options);
  }
}
