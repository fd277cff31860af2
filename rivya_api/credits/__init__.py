"""The credits resource: the account's wallet and its ledger over HTTP (``rivya_billing`` behind it)."""
