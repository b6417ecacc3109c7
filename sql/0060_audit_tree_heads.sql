-- The integrated tree head: how far the feed has been folded into the stored tree
-- (audit_tree_nodes, audit_tree_marks) between checkpoints, as a Certificate
-- Transparency log's sequencer integrates entries before its signer signs a head.
-- One row per audit key, moved forward every few seconds by the scheduler: a
-- checkpoint folds only the events after it. The row is signed with the audit key
-- (over a message no checkpoint note can be) and checked, and its tree checked
-- consistent with the newest signed checkpoint, before a checkpoint starts from it:
-- a row that fails is ignored and the checkpoint folds from its signed base.
CREATE TABLE audit_tree_heads (
    key_id        text PRIMARY KEY,
    tree_size     bigint NOT NULL CHECK (tree_size >= 0),
    txid          bigint NOT NULL,
    position      bigint NOT NULL,
    frontier      bytea NOT NULL CHECK (octet_length(frontier) % 32 = 0),
    signature     bytea NOT NULL,
    integrated_at timestamptz NOT NULL DEFAULT now()
);
