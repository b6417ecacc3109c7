-- The audit log is per tenant (issue #15): each tenant's events, in feed order, form a Merkle tree of their own, with their own checkpoints and integrated heads; tenant default's tree is the one kept before, so every checkpoint made before keeps verifying and the next ones extend it.
--
-- Every row of the audit tables so far is default's (every event stored before 0063 is,
-- and no other tenant had a tree): the column's default says so without rewriting a
-- table, and is dropped after, so every later row names its tenant. Keys are re-keyed
-- with the tenant first. No global tree is kept: it would show every tenant's event
-- count to whoever holds its checkpoints.
ALTER TABLE audit_tree_nodes ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE audit_tree_nodes ALTER COLUMN tenant DROP DEFAULT;
ALTER TABLE audit_tree_nodes DROP CONSTRAINT audit_tree_nodes_pkey;
ALTER TABLE audit_tree_nodes ADD CONSTRAINT audit_tree_nodes_pkey
    PRIMARY KEY (tenant, level, index);

ALTER TABLE audit_tree_marks ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE audit_tree_marks ALTER COLUMN tenant DROP DEFAULT;
ALTER TABLE audit_tree_marks DROP CONSTRAINT audit_tree_marks_pkey;
ALTER TABLE audit_tree_marks ADD CONSTRAINT audit_tree_marks_pkey PRIMARY KEY (tenant, leaf_index);
DROP INDEX audit_tree_marks_cursor_idx;
CREATE UNIQUE INDEX audit_tree_marks_cursor_idx ON audit_tree_marks (tenant, txid, position);

ALTER TABLE audit_checkpoints ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE audit_checkpoints ALTER COLUMN tenant DROP DEFAULT;
DROP INDEX audit_checkpoints_cursor_idx;
CREATE INDEX audit_checkpoints_cursor_idx ON audit_checkpoints (tenant, txid, position);

ALTER TABLE audit_tree_heads ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE audit_tree_heads ALTER COLUMN tenant DROP DEFAULT;
ALTER TABLE audit_tree_heads DROP CONSTRAINT audit_tree_heads_pkey;
ALTER TABLE audit_tree_heads ADD CONSTRAINT audit_tree_heads_pkey PRIMARY KEY (tenant, key_id);

-- One tenant's events in feed order: the scans that grow a tenant's tree, walk it and
-- prove from it read only that tenant's events, and the tenants with events are listed
-- by a skip scan (one probe a tenant). The feed's own index stays for the global feed.
-- Built inside the migration's transaction: writes to events wait while it builds.
CREATE INDEX events_tenant_txid_position_idx ON events (tenant, txid, position);
