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
});
