-- Checkpoints sign the root of a Merkle tree over the feed (RFC 6962/9162) instead of a running digest with a 68-byte-an-event witness: a frontier per checkpoint, and the tree's complete subtrees of 16 leaves and up for inclusion and consistency proofs.
-- A Merkle checkpoint has a frontier (the right-edge subtree roots, 32 bytes each,
-- largest first); its digest is the tree's root, its event_count the tree size, its
-- signature covers the C2SP tlog-checkpoint note body, and its witness is empty.
-- Rows without a frontier are the older kind and keep verifying as before.
ALTER TABLE audit_checkpoints
    ADD COLUMN frontier bytea CHECK (octet_length(frontier) % 32 = 0),
    ALTER COLUMN witness SET DEFAULT '';

-- Complete subtrees of the feed's tree: leaves [index * 2^level, (index + 1) * 2^level).
-- Levels below 4 are recomputed from the events when a proof needs them.
CREATE TABLE audit_tree_nodes (
    level smallint NOT NULL CHECK (level >= 4 AND level < 64),
    index bigint NOT NULL CHECK (index >= 0),
    hash  bytea NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, index)
);

-- The feed key of every 16th leaf: a cursor's leaf index is the nearest mark at or
-- before it plus the events between (at most 15).
CREATE TABLE audit_tree_marks (
    leaf_index bigint PRIMARY KEY CHECK (leaf_index >= 0 AND leaf_index % 16 = 0),
    txid       bigint NOT NULL,
    position   bigint NOT NULL
);

CREATE UNIQUE INDEX audit_tree_marks_cursor_idx ON audit_tree_marks (txid, position);

-- Written with the checkpoints by the application; never rewritten. Proofs from them
-- are checked against signed roots, so a forged row gives a proof that fails.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_tree_nodes, audit_tree_marks FROM ledger_app;
