"""Job Ledger: an event-sourced job processing service on PostgreSQL."""
