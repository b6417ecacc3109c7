-- A tenant's settings (issue #15: fair shares and quotas) change only by events, and the append refuses a submission that would take the tenant's queued jobs past its `max_queued`, in the database, so no number of API processes can together pass it.
-- Like a queue's (sql/0059, sql/0065), a tenant's settings are one event stream,
-- `tenant.configured.v1` (its `job_id` column holds the stream id, uuid5 of the tenant
-- in a namespace of its own, ledger/tenants.py), appended in that tenant: hash-chained,
-- in its feed and covered by its checkpoints, with the actor that changed them. The
-- append projects them into `tenants`, one row per tenant that has settings.
--
-- `max_running` and `weight` are stored and shown only: the claim does not read them
-- yet. `max_queued` is enforced here: `events_append` first admits the statement's new
-- submissions (version-1 `job.submitted.v1` events). While the tenant has a
-- `max_queued`, it locks the tenant's row (so concurrent submitters of that tenant
-- take turns and each counts what the previous ones committed), counts the tenant's
-- queued jobs (pending, also those scheduled for later, and retrying) from its
-- counters (sql/0064: a few rows, never a count of jobs), and raises SQLSTATE LQ429
-- when the new ones would pass the limit: the statement stores nothing. A repeat of an
-- idempotency key already stored is not counted (the unique index answers it as the
-- repeat it is). A tenant without a row or without `max_queued` costs one index probe.

CREATE TABLE tenants (
    tenant text PRIMARY KEY CHECK (tenant ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'),
    stream_id uuid NOT NULL UNIQUE,
    version integer NOT NULL CHECK (version >= 1),
    max_queued integer CHECK (max_queued >= 0),
    max_running integer CHECK (max_running >= 0),
    weight integer NOT NULL DEFAULT 1 CHECK (weight >= 1),
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Written only by the append's projection (the trigger runs as the owner, under
-- events_append's SECURITY DEFINER); the app role reads its own tenant's row.
REVOKE ALL ON tenants FROM ledger_app;
GRANT SELECT ON tenants TO ledger_app;
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenants_in_tenant ON tenants TO ledger_app
    USING (tenant = ledger_tenant_named())
    WITH CHECK (tenant = ledger_tenant_named());

-- One fold step of a tenant's settings (the same rule as ledger.tenants.evolve); the
-- row is its events' tenant's.
CREATE FUNCTION tenant_view_step(s tenants, e events) RETURNS tenants
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n tenants;
BEGIN
    IF s.tenant IS NULL AND e.version <> 1 THEN
        RAISE EXCEPTION 'event % for tenant stream % before its first', e.type, e.job_id;
    END IF;
    IF e.type <> 'tenant.configured.v1' THEN
        RAISE EXCEPTION 'unknown event type % (tenant stream %)', e.type, e.job_id;
    END IF;
    n.tenant := e.tenant;
    n.stream_id := e.job_id;
    n.version := e.version;
    n.max_queued := (e.data->>'max_queued')::integer;
    n.max_running := (e.data->>'max_running')::integer;
    n.weight := (e.data->>'weight')::integer;
    n.updated_by := e.actor;
    n.updated_at := e.occurred_at;
    RETURN n;
END;
$$;

CREATE AGGREGATE tenant_view_fold(events) (
    SFUNC = tenant_view_step,
    STYPE = tenants
);

-- Projects the statement's tenant events into `tenants` (at most one per tenant in a
-- statement, as the store appends them).
CREATE FUNCTION tenants_project_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    e events;
    s tenants;
BEGIN
    FOR e IN SELECT * FROM appended WHERE type LIKE 'tenant.%' ORDER BY position LOOP
        SELECT * INTO s FROM tenants WHERE stream_id = e.job_id FOR UPDATE;
        IF NOT FOUND THEN
            s := NULL;
        END IF;
        s := tenant_view_step(s, e);
        INSERT INTO tenants (tenant, stream_id, version, max_queued, max_running, weight,
                             updated_by, updated_at)
        VALUES (s.tenant, s.stream_id, s.version, s.max_queued, s.max_running, s.weight,
                s.updated_by, s.updated_at)
        ON CONFLICT (tenant) DO UPDATE
        SET version = excluded.version, max_queued = excluded.max_queued,
            max_running = excluded.max_running, weight = excluded.weight,
            updated_by = excluded.updated_by, updated_at = excluded.updated_at;
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_project_tenants
AFTER INSERT ON events
REFERENCING NEW TABLE AS appended
FOR EACH STATEMENT
EXECUTE FUNCTION tenants_project_appended();

-- Every tenant's settings, for the operator's list (GET /api/v1/tenants, `ledger
-- tenants list`): the app role sees only its own tenant's row of `tenants`.
CREATE FUNCTION tenants_all() RETURNS SETOF tenants
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT * FROM tenants ORDER BY tenant
$$;

REVOKE ALL ON FUNCTION tenants_all() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenants_all() TO ledger_app;

-- Admits an append's new submissions in the tenant the transaction acts in, or raises
-- LQ429 (see the top of this file). Called by events_append only.
CREATE FUNCTION events_admit(versions integer[], types text[], actors text[], datas jsonb[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    t text := ledger_tenant();
    limit_ integer;
    submitted integer;
    queued bigint;
BEGIN
    IF NOT ('job.submitted.v1' = ANY(types)) THEN
        RETURN;
    END IF;
    SELECT max_queued INTO limit_ FROM tenants WHERE tenant = t;
    IF limit_ IS NULL THEN
        RETURN;
    END IF;
    -- Submitters of this tenant take turns from here to their commit; each statement
    -- below then sees what the ones before committed.
    SELECT max_queued INTO limit_ FROM tenants WHERE tenant = t FOR UPDATE;
    IF limit_ IS NULL THEN
        RETURN;
    END IF;
    SELECT count(*) INTO submitted
    FROM unnest(versions, types, actors, datas) AS u (version, type, actor, data)
    WHERE u.version = 1 AND u.type = 'job.submitted.v1'
      AND NOT EXISTS (
          SELECT FROM jobs AS j
          WHERE j.tenant = t AND j.submitted_by = u.actor
            AND j.idempotency_key = u.data->>'idempotency_key'
      );
    IF submitted = 0 THEN
        RETURN;
    END IF;
    SELECT coalesce(sum(c.n), 0) INTO queued
    FROM (
        SELECT n FROM job_counts WHERE tenant = t AND status IN ('pending', 'retrying')
        UNION ALL
        SELECT n FROM job_count_deltas WHERE tenant = t AND status IN ('pending', 'retrying')
    ) AS c;
    IF queued + submitted > limit_ THEN
        RAISE EXCEPTION 'tenant % has % queued jobs of at most %: % more would pass max_queued',
            t, queued, limit_, submitted
        USING ERRCODE = 'LQ429',
              DETAIL = json_build_object('tenant', t, 'max_queued', limit_,
                                         'queued', queued, 'submitted', submitted)::text;
    END IF;
END;
$$;

REVOKE ALL ON FUNCTION events_admit(integer[], text[], text[], jsonb[]) FROM PUBLIC;

-- sql/0063's append, its new submissions admitted first.
CREATE OR REPLACE FUNCTION events_append(
    job_ids uuid[], versions integer[], types text[], actors text[], datas jsonb[]
) RETURNS TABLE (
    "position" bigint, job_id uuid, version integer, txid bigint,
    occurred_at timestamptz, prev_hash bytea, hash bytea, tenant text
)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT events_admit(versions, types, actors, datas);
    INSERT INTO events (tenant, job_id, version, type, actor, occurred_at, data, prev_hash, hash)
    SELECT w.tenant, u.job_id, u.version, u.type, u.actor, t.at, u.data, p.prev_hash,
           sha256(p.prev_hash
                  || event_canonical(w.tenant, u.type, u.job_id, u.version, u.actor, t.at, u.data))
    FROM unnest(job_ids, versions, types, actors, datas)
        AS u (job_id, version, type, actor, data)
    LEFT JOIN LATERAL (
        SELECT e.hash, e.occurred_at, e.tenant
        FROM events AS e
        WHERE u.version > 1 AND e.job_id = u.job_id AND e.version = u.version - 1
          AND e.tenant = coalesce(ledger_tenant_named(), e.tenant)
        LIMIT 1
    ) AS prev ON true
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN u.version = 1 THEN '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
            ELSE prev.hash
        END AS prev_hash
    ) AS p
    CROSS JOIN LATERAL (
        SELECT CASE WHEN u.version = 1 THEN ledger_tenant() ELSE prev.tenant END AS tenant
    ) AS w
    CROSS JOIN LATERAL (
        SELECT greatest(statement_timestamp(), prev.occurred_at) AS at
    ) AS t
    RETURNING position, job_id, version, txid::text::bigint, occurred_at, prev_hash, hash, tenant
$$;
