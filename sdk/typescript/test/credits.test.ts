/**
 * The wallet: balance, held and available, and the ledger behind them.
 */
import { describe, expect, it } from "vitest";
import { client, requireOperation } from "./support.js";

describe("credits", () => {
  it("retrieves the balance and walks the ledger", async (ctx) => {
    requireOperation(ctx, "GET /api/v1/credits");
    const rivya = client();
    const before = await rivya.credits.retrieve();
    expect(typeof before.balance).toBe("number");
    expect(typeof before.available).toBe("number");
    expect(before.available).toBeLessThanOrEqual(before.balance);

    const task = await rivya.generations.create({ model: "rivya-image-1", input: { prompt: "paid", width: 64, height: 64 } });
    const done = await rivya.generations.wait(task.id, { timeoutMs: 60_000 });
    const after = await rivya.credits.retrieve();
    expect(before.balance - after.balance).toBeGreaterThanOrEqual(done.credits.charged);

    requireOperation(ctx, "GET /api/v1/credits/ledger");
    const types = new Set<string>();
    let entries = 0;
    for await (const entry of rivya.credits.ledger.list({ limit: 5 })) {
      entries++;
      types.add(entry.type);
    }
    expect(entries).toBeGreaterThan(2);
    expect(types).toContain("grant");
  });

  it("sets, reads and turns off the low-balance alert", async (ctx) => {
    requireOperation(ctx, "PATCH /api/v1/credits/alerts");
    const rivya = client();
    const { available } = await rivya.credits.retrieve();
    const set = await rivya.credits.alerts.update({ low_balance_threshold: available + 1 });
    expect(set.object).toBe("credits_alerts");
    expect(set.low_balance_threshold).toBe(available + 1);
    expect(set.low_balance_triggered).toBe(true); // already below: credits.low is published at once
    expect((await rivya.credits.alerts.retrieve()).low_balance_threshold).toBe(available + 1);
    const off = await rivya.credits.alerts.update({ low_balance_threshold: null });
    expect(off.low_balance_threshold).toBeNull();
    expect(off.low_balance_triggered).toBe(false);
  });
});
