-- rivya_billing_reserve: the one-statement reservation on PostgreSQL (services/pg_reserve.py);
-- migrations 0004 and 0007 explain the order of its parts. Loaded by migration 0009 (CREATE OR
-- REPLACE): a change here needs a new migration that loads the file again and names its SHA-256
-- (a new signature also a DROP of the old one). The INSERTs name every column of their tables;
-- tests/rivya_billing/test_pg_reserve.py checks all of this.

CREATE OR REPLACE FUNCTION rivya_billing_window_start(kind text, at timestamptz) RETURNS timestamptz AS $$
    SELECT CASE kind
        WHEN 'day' THEN date_trunc('day', at, 'UTC')
        WHEN 'month' THEN date_trunc('month', at, 'UTC')
        ELSE '1970-01-01T00:00:00Z'::timestamptz
    END
$$ LANGUAGE sql STABLE;

CREATE OR REPLACE FUNCTION rivya_billing_reserve(
    account bigint, amount bigint, reference text, hold_public_id text, entry_public_id text,
    actor text, now timestamptz, lease_expires_at timestamptz, commit_early boolean, spend_limit bigint,
    OUT reserved_hold_id bigint, OUT reserved_wallet_id bigint,
    OUT limit_used bigint, OUT limit_credits bigint, OUT limit_window_start timestamptz, OUT limit_refused boolean
) AS $$
BEGIN
    IF commit_early THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    IF spend_limit IS NULL THEN
        WITH h AS (
            INSERT INTO rivya_billing_hold (public_id, wallet_id, reference, amount, state, usage, captured, overrun,
                                            waived, refunded, lease_expires_at, lease_token, actor, created_at,
                                            resolved_at, spend_limit_id, spend_window_start)
            SELECT hold_public_id, wallet.id, reference, amount, 'pending', NULL, 0, 0,
                   0, 0, lease_expires_at, 0, actor, now, NULL, NULL, NULL
              FROM rivya_billing_wallet AS wallet
             WHERE wallet.account_id = account
         RETURNING id, wallet_id
        ), w AS (
            UPDATE rivya_billing_wallet AS wallet
               SET held = wallet.held + amount, last_sequence = wallet.last_sequence + 1, updated_at = now
             WHERE wallet.id = (SELECT h.wallet_id FROM h) AND wallet.balance - wallet.held >= amount
         RETURNING wallet.id, wallet.balance, wallet.held, wallet.last_sequence
        )
        INSERT INTO rivya_billing_ledgerentry AS entry (
            public_id, wallet_id, sequence, type, amount, balance_delta, held_delta,
            balance_after, held_after, reference, hold_id, actor, description, created_at
        )
        SELECT entry_public_id, h.wallet_id, w.last_sequence, 'reserve', amount, 0, amount,
               w.balance, w.held, reference, h.id, actor, '', now
          FROM h LEFT JOIN w ON w.id = h.wallet_id
        RETURNING entry.hold_id, entry.wallet_id INTO reserved_hold_id, reserved_wallet_id;
        RETURN;
    END IF;
    WITH l AS (
        UPDATE rivya_billing_spendlimit AS lim
           SET used = CASE WHEN lim.window_start >= rivya_billing_window_start(lim."window", now)
                           THEN lim.used ELSE 0 END + amount,
               window_start = GREATEST(lim.window_start, rivya_billing_window_start(lim."window", now)),
               updated_at = now
         WHERE lim.id = spend_limit
           AND CASE WHEN lim.window_start >= rivya_billing_window_start(lim."window", now)
                    THEN lim.used ELSE 0 END + amount <= lim.credits
     RETURNING lim.id, lim.used, lim.credits, lim.window_start
    ), h AS (
        INSERT INTO rivya_billing_hold (public_id, wallet_id, reference, amount, state, usage, captured, overrun,
                                        waived, refunded, lease_expires_at, lease_token, actor, created_at,
                                        resolved_at, spend_limit_id, spend_window_start)
        SELECT hold_public_id, wallet.id, reference, amount, 'pending', NULL, 0, 0,
               0, 0, lease_expires_at, 0, actor, now, NULL, spend_limit, l.window_start
          FROM rivya_billing_wallet AS wallet JOIN l ON true
         WHERE wallet.account_id = account
     RETURNING id, wallet_id
    ), w AS (
        UPDATE rivya_billing_wallet AS wallet
           SET held = wallet.held + amount, last_sequence = wallet.last_sequence + 1, updated_at = now
         WHERE wallet.id = (SELECT h.wallet_id FROM h) AND wallet.balance - wallet.held >= amount
     RETURNING wallet.id, wallet.balance, wallet.held, wallet.last_sequence
    ), e AS (
        INSERT INTO rivya_billing_ledgerentry AS entry (
            public_id, wallet_id, sequence, type, amount, balance_delta, held_delta,
            balance_after, held_after, reference, hold_id, actor, description, created_at
        )
        SELECT entry_public_id, h.wallet_id, w.last_sequence, 'reserve', amount, 0, amount,
               w.balance, w.held, reference, h.id, actor, '', now
          FROM h LEFT JOIN w ON w.id = h.wallet_id
        RETURNING entry.hold_id, entry.wallet_id
    )
    SELECT (SELECT e.hold_id FROM e), (SELECT e.wallet_id FROM e), (SELECT l.used FROM l),
           (SELECT l.credits FROM l), (SELECT l.window_start FROM l), NOT EXISTS (SELECT 1 FROM l)
      INTO reserved_hold_id, reserved_wallet_id, limit_used, limit_credits, limit_window_start, limit_refused;
    IF reserved_hold_id IS NULL AND NOT limit_refused THEN
        -- The limit counted the amount, but no hold was made (the account has no wallet). Fail as a
        -- want of credits does (not_null_violation), so the statement writes nothing: outside a
        -- transaction the count would otherwise commit without its hold.
        RAISE EXCEPTION 'rivya_billing_reserve: account % has no wallet', account USING ERRCODE = 'not_null_violation';
    END IF;
END;
$$ LANGUAGE plpgsql;
