"""The audit subsystem: what makes the ledger's history proof.

`chains` recomputes each job's hash chain; `merkle` is the tree over the feed (RFC
6962/9162) and its proofs, `note` the C2SP signed notes a checkpoint is published as,
`tree` the stored subtrees proofs are served from; `proof` checks events against
checkpoints (Merkle ones, and the older running digest with its witness); `signing`
holds the Ed25519 key; `checkpoints` takes and checks signed checkpoints of the feed;
`resume` records where a verification ended; `bundle` exports and verifies offline
bundles. It reads the ledger core and the feed (projections) and writes only
checkpoints and the tree.
"""
