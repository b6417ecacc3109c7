"""The audit subsystem: what makes the ledger's history proof.

`chains` recomputes each job's hash chain; `digest` is the checkpoint arithmetic
(the running digest of the feed, its witnesses, what a checkpoint signs);
`signing` holds the Ed25519 key; `checkpoints` takes and checks signed checkpoints
of the feed; `bundle` exports and verifies offline bundles. It reads the ledger
core and the feed (projections) and writes only checkpoints.
"""
