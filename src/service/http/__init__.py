"""The HTTP API's routes: part of the HTTP composition root (may import ledger, projections, workers)."""
