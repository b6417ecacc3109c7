-- name: events_chain_scan
-- Every event of the tenant the transaction acts in, in chain order, for recomputing
-- its hash chains (every tenant's when it names none: the owner's checks).
SELECT job_id, version, type, data, actor, occurred_at, prev_hash, hash, tenant
FROM events
WHERE tenant = coalesce(ledger_tenant_named(), tenant)
ORDER BY job_id, version;

-- name: events_chain_scan_job
-- One job's chain, if it is a job of the tenant the transaction acts in (any tenant's
-- when it names none).
SELECT job_id, version, type, data, actor, occurred_at, prev_hash, hash, tenant
FROM events
WHERE job_id = $1
  AND tenant = coalesce(ledger_tenant_named(), tenant)
ORDER BY version;

-- name: events_feed_scan
-- Every event of the tenant the transaction acts in after a cursor and below the
-- snapshot's xmin, in feed order, with the exact jsonb text its hash covers: for the
-- audit walk of the tenant's tree. (Ordered by the table's columns, e.txid: a bare txid
-- is the bigint output column, which no index has, so each call would sort every event
-- after the key.) The key is compared with the tenant first, as the tenant's index
-- orders: only that index bounds the scan, so no plan walks other tenants' events (the
-- feed's own index, without the tenant, would filter them out one by one); every scan of
-- one tenant's events below says so the same way.
SELECT e.txid::text::bigint AS txid, e.position, e.job_id, e.version, e.type, e.actor,
       e.occurred_at, e.data::text AS data, e.prev_hash, e.hash, e.tenant
FROM events e
WHERE e.tenant = ledger_tenant()
  AND (e.tenant, e.txid, e.position) > (ledger_tenant(), $1::text::xid8, $2::bigint)
  AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.tenant, e.txid, e.position;

-- name: events_feed_scan_range
-- The tenant's events in (after, upto] in feed order, with the exact jsonb text: bundle
-- export.
SELECT e.txid::text::bigint AS txid, e.position, e.job_id, e.version, e.type, e.actor,
       e.occurred_at, e.data::text AS data, e.prev_hash, e.hash, e.tenant
FROM events e
WHERE e.tenant = ledger_tenant()
  AND (e.tenant, e.txid, e.position) > (ledger_tenant(), $1::text::xid8, $2::bigint)
  AND (e.tenant, e.txid, e.position) <= (ledger_tenant(), $3::text::xid8, $4::bigint)
ORDER BY e.tenant, e.txid, e.position;

-- name: checkpoints_lock
-- One checkpoint writer at a time across processes (session lock, taken before the snapshot).
SELECT pg_advisory_lock(7164857341);

-- name: checkpoints_unlock
SELECT pg_advisory_unlock(7164857341);

-- name: checkpoints_latest
-- The tenant's newest checkpoint made with a key: the base the next one extends.
SELECT *
FROM audit_checkpoints
WHERE tenant = ledger_tenant()
  AND key_id = $1
ORDER BY txid DESC, position DESC, event_count DESC
LIMIT 1;

-- name: checkpoints_insert
-- A Merkle checkpoint: digest is the tree's root, event_count its size (witness empty).
INSERT INTO audit_checkpoints (
    tenant, txid, position, event_count, digest, base_txid, base_position, base_count,
    base_digest, frontier, signature, key_id
)
VALUES (ledger_tenant(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING *;

-- name: checkpoints_list
-- Every checkpoint of the tenant with its witness, in feed order.
SELECT *
FROM audit_checkpoints
WHERE tenant = ledger_tenant()
ORDER BY txid, position, event_count, checkpoint_id;

-- name: checkpoints_list_bare
-- Every checkpoint of the tenant without its witness, in feed order (witnesses are read
-- only when needed).
SELECT checkpoint_id, txid, position, event_count, digest, base_txid, base_position,
       base_count, base_digest, signature, key_id, created_at, frontier, tenant
FROM audit_checkpoints
WHERE tenant = ledger_tenant()
ORDER BY txid, position, event_count, checkpoint_id;

-- name: checkpoints_witnesses
SELECT checkpoint_id, witness
FROM audit_checkpoints
WHERE tenant = ledger_tenant()
  AND checkpoint_id = ANY($1::bigint[]);

-- name: checkpoints_list_summary
-- The tenant's checkpoints without their witnesses, newest first, for listing.
SELECT checkpoint_id, txid, position, event_count, digest, base_txid, base_position,
       base_count, signature, key_id, created_at, frontier, tenant
FROM audit_checkpoints
WHERE tenant = ledger_tenant()
ORDER BY txid DESC, position DESC, checkpoint_id DESC
LIMIT $1;

-- name: checkpoints_covering
-- The checkpoints made with a key whose cursor lies in [from, upto], in feed order.
SELECT *
FROM audit_checkpoints
WHERE tenant = ledger_tenant()
  AND key_id = $1
  AND (txid, position) >= ($2::bigint, $3::bigint)
  AND (txid, position) <= ($4::bigint, $5::bigint)
ORDER BY txid, position, event_count, checkpoint_id;

-- name: checkpoints_before
-- The newest checkpoint made with a key strictly before a feed key (a bundle's anchor).
SELECT *
FROM audit_checkpoints
WHERE tenant = ledger_tenant()
  AND key_id = $1
  AND (txid, position) < ($2::bigint, $3::bigint)
ORDER BY txid DESC, position DESC, event_count DESC
LIMIT 1;

-- name: checkpoints_at_or_after
-- The oldest checkpoint made with a key at or after a feed key (a bundle's end).
SELECT *
FROM audit_checkpoints
WHERE tenant = ledger_tenant()
  AND key_id = $1
  AND (txid, position) >= ($2::bigint, $3::bigint)
ORDER BY txid, position, event_count
LIMIT 1;

-- name: events_feed_first_since
-- The feed key of the first event at or after an instant (bundle ranges given as times).
SELECT txid::text::bigint AS txid, position
FROM events
WHERE tenant = ledger_tenant()
  AND occurred_at >= $1
  AND txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY txid, position
LIMIT 1;

-- name: events_feed_last_until
-- The feed key of the last event at or before an instant.
SELECT txid::text::bigint AS txid, position
FROM events
WHERE tenant = ledger_tenant()
  AND occurred_at <= $1
  AND txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY txid DESC, position DESC
LIMIT 1;

-- name: tree_nodes_insert
-- Complete subtrees a checkpoint closed; one already there (another key's checkpoint
-- wrote it) is kept: proofs from a wrong one fail against the signed roots.
INSERT INTO audit_tree_nodes (tenant, level, index, hash)
SELECT ledger_tenant(), *
FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])
ON CONFLICT (tenant, level, index) DO NOTHING;

-- name: tree_nodes_get
SELECT n.level, n.index, n.hash
FROM audit_tree_nodes n
JOIN unnest($1::smallint[], $2::bigint[]) AS w (level, index)
  ON n.tenant = ledger_tenant() AND n.level = w.level AND n.index = w.index;

-- name: tree_mark_at
-- The feed key of a leaf that starts a chunk (of 64 leaves; of 16 in older trees).
SELECT txid, position
FROM audit_tree_marks
WHERE tenant = ledger_tenant()
  AND leaf_index = $1;

-- name: tree_mark_before
-- The nearest chunk start at or before a feed key.
SELECT leaf_index, txid, position
FROM audit_tree_marks
WHERE tenant = ledger_tenant()
  AND (txid, position) <= ($1::bigint, $2::bigint)
ORDER BY tenant DESC, txid DESC, position DESC
LIMIT 1;

-- name: events_feed_hashes_from
-- Up to $3 of the tenant's events from a feed key on, in feed order: one chunk's leaves
-- (read from the tenant's feed index: ordered by e.txid, not by the bigint output column).
SELECT e.txid::text::bigint AS txid, e.position, e.hash
FROM events e
WHERE e.tenant = ledger_tenant()
  AND (e.tenant, e.txid, e.position) >= (ledger_tenant(), $1::text::xid8, $2::bigint)
ORDER BY e.tenant, e.txid, e.position
LIMIT $3;

-- name: checkpoints_tree_size
-- The largest tree a key signed: proofs are served up to it.
SELECT coalesce(max(event_count), 0) AS tree_size
FROM audit_checkpoints
WHERE tenant = ledger_tenant()
  AND key_id = $1
  AND frontier IS NOT NULL;

-- name: checkpoints_by_id
SELECT *
FROM audit_checkpoints
WHERE tenant = ledger_tenant()
  AND checkpoint_id = $1;

-- name: checkpoints_list_merkle_bare
-- A key's Merkle checkpoints without witnesses, by tree size: consecutive pairs get
-- consistency proofs.
SELECT checkpoint_id, txid, position, event_count, digest, base_txid, base_position,
       base_count, base_digest, signature, key_id, created_at, frontier, tenant
FROM audit_checkpoints
WHERE tenant = ledger_tenant()
  AND key_id = $1
  AND frontier IS NOT NULL
ORDER BY event_count, checkpoint_id;

-- name: tree_leaves_batch
-- The tenant's next $4 events after a feed key (below the xmin, in feed order), the first of
-- them leaf $3: their hashes concatenated in feed order (each aggregate says its order:
-- an ordered subquery's order is not promised to reach an aggregate), the last one's
-- key, and the key of every $11-th leaf
-- (the tree's marks): one row a batch rather than one an event. The same statement
-- writes the nodes and marks of earlier batches ($5…$10), so the server writes them
-- while the caller hashes.
WITH nodes AS (
    INSERT INTO audit_tree_nodes (tenant, level, index, hash)
    SELECT ledger_tenant(), * FROM unnest($5::smallint[], $6::bigint[], $7::bytea[])
    ON CONFLICT (tenant, level, index) DO NOTHING
), marks AS (
    INSERT INTO audit_tree_marks (tenant, leaf_index, txid, position)
    SELECT ledger_tenant(), * FROM unnest($8::bigint[], $9::bigint[], $10::bigint[])
    ON CONFLICT DO NOTHING
)
SELECT count(*) AS leaves,
       coalesce(string_agg(hash, ''::bytea ORDER BY leaf), ''::bytea) AS hashes,
       max(leaf) AS last_leaf,
       max(ARRAY[xid, position]) AS last_key,
       coalesce(array_agg(leaf ORDER BY leaf) FILTER (WHERE leaf % $11 = 0), '{}') AS mark_leaves,
       coalesce(array_agg(xid ORDER BY leaf) FILTER (WHERE leaf % $11 = 0), '{}') AS mark_txids,
       coalesce(array_agg(position ORDER BY leaf) FILTER (WHERE leaf % $11 = 0), '{}') AS mark_positions
FROM (
    SELECT $3::bigint + row_number() OVER (ORDER BY e.tenant, e.txid, e.position) - 1 AS leaf,
           e.txid::text::bigint AS xid, e.position, e.hash
    FROM events e
    WHERE e.tenant = ledger_tenant()
      AND (e.tenant, e.txid, e.position) > (ledger_tenant(), $1::text::xid8, $2::bigint)
      AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY e.tenant, e.txid, e.position
    LIMIT $4
) batch;

-- name: tree_scan_in_order
-- Batches read the feed index in order: without this the planner, misjudging how
-- many events follow a key, may sort every remaining event for each batch.
SET LOCAL enable_sort = off;

-- name: tree_scan_default
SET LOCAL enable_sort TO DEFAULT;

-- name: tree_head_get
-- The tenant's integrated tree head of a key (the stored tree's edge between checkpoints).
SELECT tenant, key_id, tree_size, txid, position, frontier, signature
FROM audit_tree_heads
WHERE tenant = ledger_tenant()
  AND key_id = $1;

-- name: tree_head_put
INSERT INTO audit_tree_heads (tenant, key_id, tree_size, txid, position, frontier, signature)
VALUES (ledger_tenant(), $1, $2, $3, $4, $5, $6)
ON CONFLICT (tenant, key_id) DO UPDATE
SET tree_size = excluded.tree_size,
    txid = excluded.txid,
    position = excluded.position,
    frontier = excluded.frontier,
    signature = excluded.signature,
    integrated_at = now();

-- name: tenant_current
-- The tenant the transaction (or statement) acts in.
SELECT ledger_tenant();

-- name: events_tenants
-- The tenants that have events, by a skip scan of the tenant-first feed index: one probe
-- a tenant, whatever the number of events.
-- Through ledger_tenants (sql/0068): the application sees one tenant's events at a time.
SELECT tenant
FROM ledger_tenants() AS tenant;

-- name: tree_has_new_events
-- Whether the tenant has events below the xmin after where its tree ends for a key: its
-- newest checkpoint ($2 false) or, when further, its integrated head ($2 true). One
-- probe of the tenant's feed index: what a tenant with nothing new costs the scheduler.
WITH edge AS (
    SELECT k.txid, k.position
    FROM (
        SELECT h.txid, h.position
        FROM audit_tree_heads h
        WHERE $2 AND h.tenant = ledger_tenant() AND h.key_id = $1
        UNION ALL
        (SELECT c.txid, c.position
         FROM audit_checkpoints c
         WHERE c.tenant = ledger_tenant() AND c.key_id = $1
         ORDER BY c.tenant DESC, c.txid DESC, c.position DESC
         LIMIT 1)
        UNION ALL
        SELECT 0, 0
    ) k
    ORDER BY k.txid DESC, k.position DESC
    LIMIT 1
)
SELECT EXISTS (
    SELECT 1
    FROM events e, edge
    WHERE e.tenant = ledger_tenant()
      AND (e.tenant, e.txid, e.position) > (ledger_tenant(), edge.txid::text::xid8, edge.position)
      AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
);
