"""Read models folded from the ledger's events."""
