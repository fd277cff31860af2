"""Rivya's credit ledger: wallets, holds, settle, release, refund and grants."""
