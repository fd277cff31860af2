"""rivya_bootstrap (accounts and keys for operations scripts) and rivya_demo (make run)."""
