"""The worker pool that runs jobs and records their outcomes in the ledger."""
