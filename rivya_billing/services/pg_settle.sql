-- rivya_billing_settle: the settle of a hold as one call on PostgreSQL (services/pg_settle.py), the
-- same steps as holds._settle_locked in the same order: lock the hold, decide, lock the hold's spend
-- limit, lock the wallet, split the usage (OVERRUN_POLICY), give back to / count more in the limit,
-- move the wallet, append the lines, draw expiring grants, resolve the hold. Loaded by migration
-- 0010 (CREATE OR REPLACE): a change here needs a new migration that loads the file again and names
-- its SHA-256 (a new signature also a DROP of the old one). The INSERT names every column of the
-- ledger; the hold comes back whole (its table's row type). tests/rivya_billing/test_pg_settle.py
-- checks all of this.
--
-- Outcomes: 'missing' (no such hold for the account; hold_row NULL), 'refused' (nothing written:
-- the hold is not pending, or its lease lapsed or was superseded; hold_row is the hold as locked,
-- and Python raises the plain path's error from it, or returns it for a repeat), 'settled'
-- (hold_row is the hold after the settle). No outcome raises, but the function can still fail
-- (lock or statement timeout, deadlock): inside a caller's transaction Python calls it in a
-- savepoint, and raises a refusal there so that the savepoint's rollback releases the hold's lock.

CREATE OR REPLACE FUNCTION rivya_billing_settle(
    account bigint, hold_reference text, usage_amount bigint, line_actor text, token bigint,
    now timestamptz, commit_early boolean, overrun_policy text, entry_public_ids text[],
    OUT outcome text, OUT hold_row rivya_billing_hold
) AS $$
DECLARE
    locked rivya_billing_hold;
    wallet rivya_billing_wallet;
    capture_amount bigint;
    release_amount bigint;
    overrun_amount bigint := 0;
    waive_amount bigint;
    spent bigint;
BEGIN
    SELECT h.* INTO locked
      FROM rivya_billing_hold AS h JOIN rivya_billing_wallet AS w ON w.id = h.wallet_id
     WHERE w.account_id = account AND h.reference = hold_reference
     ORDER BY h.id LIMIT 1
       FOR NO KEY UPDATE OF h;
    IF NOT FOUND THEN
        outcome := 'missing';
        RETURN;
    END IF;
    IF locked.state <> 'pending' OR (token IS NOT NULL AND token <> locked.lease_token)
       OR locked.lease_expires_at <= now THEN
        outcome := 'refused';
        hold_row := locked;
        RETURN;
    END IF;
    IF commit_early THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    IF locked.spend_limit_id IS NOT NULL THEN  -- hold, limit, wallet: the order of every service
        PERFORM 1 FROM rivya_billing_spendlimit AS lim WHERE lim.id = locked.spend_limit_id FOR NO KEY UPDATE;
    END IF;
    SELECT w.* INTO wallet FROM rivya_billing_wallet AS w WHERE w.id = locked.wallet_id FOR NO KEY UPDATE;

    capture_amount := LEAST(usage_amount, locked.amount);
    release_amount := locked.amount - capture_amount;
    IF usage_amount > capture_amount AND overrun_policy = 'available' THEN
        -- What will be available once this hold is settled: the remainder comes back.
        overrun_amount := LEAST(usage_amount - capture_amount, wallet.balance - wallet.held + release_amount);
    END IF;
    spent := capture_amount + overrun_amount;
    waive_amount := usage_amount - spent;

    IF locked.spend_limit_id IS NOT NULL AND release_amount > 0 THEN
        UPDATE rivya_billing_spendlimit AS lim SET used = lim.used - release_amount
         WHERE lim.id = locked.spend_limit_id AND lim.window_start = locked.spend_window_start;
    END IF;
    IF locked.spend_limit_id IS NOT NULL AND overrun_amount > 0 THEN
        UPDATE rivya_billing_spendlimit AS lim SET used = lim.used + overrun_amount
         WHERE lim.id = locked.spend_limit_id AND lim.window_start = locked.spend_window_start;
    END IF;

    UPDATE rivya_billing_wallet AS w
       SET balance = w.balance - spent, held = w.held - locked.amount,
           last_sequence = w.last_sequence + (capture_amount > 0)::int + (release_amount > 0)::int
                           + (overrun_amount > 0)::int + (waive_amount > 0)::int,
           updated_at = now
     WHERE w.id = wallet.id;

    -- The lines of holds._settle_lines, numbered and balanced from the wallet as locked.
    INSERT INTO rivya_billing_ledgerentry (
        public_id, wallet_id, sequence, type, amount, balance_delta, held_delta,
        balance_after, held_after, reference, hold_id, actor, description, created_at
    )
    SELECT entry_public_ids[row_number() OVER lines], wallet.id, wallet.last_sequence + row_number() OVER lines,
           line.type, line.amount, line.balance_delta, line.held_delta,
           wallet.balance + sum(line.balance_delta) OVER lines, wallet.held + sum(line.held_delta) OVER lines,
           locked.reference, locked.id, COALESCE(line_actor, locked.actor), '', now
      FROM (VALUES (1, 'settle', capture_amount, -capture_amount, -capture_amount),
                   (2, 'release', release_amount, 0, -release_amount),
                   (3, 'overrun', overrun_amount, -overrun_amount, 0),
                   (4, 'waive', waive_amount, 0, 0)) AS line(n, type, amount, balance_delta, held_delta)
     WHERE line.amount > 0
    WINDOW lines AS (ORDER BY line.n)
     ORDER BY line.n;

    IF spent > 0 THEN
        -- ledger._draw_grants: the wallet's expiring grants, soonest expiry first, until spent is drawn.
        UPDATE rivya_billing_creditgrant AS g
           SET remaining = g.remaining - bucket.take, drawn = g.drawn + bucket.take
          FROM (SELECT b.id, LEAST(b.remaining, spent - b.before) AS take
                  FROM (SELECT c.id, c.remaining,
                               sum(c.remaining) OVER (ORDER BY c.expires_at, c.id) - c.remaining AS before
                          FROM rivya_billing_creditgrant AS c
                         WHERE c.wallet_id = wallet.id AND c.remaining > 0) AS b
                 WHERE b.before < spent) AS bucket
         WHERE g.id = bucket.id;
    END IF;

    UPDATE rivya_billing_hold AS h
       SET state = 'settled', resolved_at = now, usage = usage_amount, captured = capture_amount,
           overrun = overrun_amount, waived = waive_amount
     WHERE h.id = locked.id AND h.state = 'pending'
    RETURNING h.* INTO hold_row;
    IF NOT FOUND THEN  -- cannot happen under the row lock (ledger._resolve_hold's check)
        RAISE EXCEPTION 'Hold % changed under its row lock.', locked.public_id;
    END IF;
    outcome := 'settled';
END;
$$ LANGUAGE plpgsql;
