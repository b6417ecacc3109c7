-- Result webhooks (issue #19): endpoints changed by events, deliveries created by the append in the same transaction as the job event they report (the outbox), claimed across tenants by the senders with a lease, every attempt an event.
--
-- An endpoint is a stream of `webhook.endpoint_*.v1` events (its `job_id` column holds
-- the endpoint's id), projected by the append into `webhook_endpoints`. Its signing
-- secrets are not in any event (events leave in audit bundles): the application keeps
-- them in `webhook_secrets` and the events name only a secret's id (a fingerprint).
--
-- A delivery is a stream of its own: `webhook_deliveries` holds its row, created by the
-- trigger below from the appended job event (and its job's row, projected just before
-- by events_project_jobs: triggers of one event run in name order), with its body
-- serialised once. Each attempt is a `webhook.delivery_attempted.v1` event on that
-- stream, appended by the sender acting in the delivery's tenant, which the same trigger
-- folds into the row. A job may also name its own webhook at submission
-- (`job.submitted.v1`'s `webhook`): kept in `job_webhooks`, told of the job's end.
--
-- When no endpoint is active and no job named a webhook, the trigger costs a probe of
-- two empty tables per append statement that reports a job event.

CREATE TABLE webhook_endpoints (
    endpoint_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    version integer NOT NULL CHECK (version >= 1),
    url text NOT NULL,
    events text[] NOT NULL,
    queues text[],
    types text[],
    description text,
    secret_id text NOT NULL,
    disabled boolean NOT NULL DEFAULT false,
    disabled_reason text,
    deleted boolean NOT NULL DEFAULT false,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX webhook_endpoints_active ON webhook_endpoints (tenant)
    WHERE NOT disabled AND NOT deleted;

CREATE TABLE webhook_secrets (
    endpoint_id uuid NOT NULL,
    tenant text NOT NULL,
    secret_id text NOT NULL,
    secret text NOT NULL CHECK (secret LIKE 'whsec\_%'),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    PRIMARY KEY (endpoint_id, secret_id)
);

CREATE TABLE job_webhooks (
    job_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    url text NOT NULL
);

CREATE TABLE webhook_deliveries (
    delivery_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    endpoint_id uuid,
    url text,
    job_id uuid,
    event_type text NOT NULL,
    event_position bigint,
    body text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'exhausted', 'disabled')),
    version integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    tries integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_status_code integer,
    last_error text,
    last_attempt_at timestamptz,
    created_at timestamptz NOT NULL,
    leased_by text,
    lease_until timestamptz,
    CHECK ((endpoint_id IS NULL) <> (url IS NULL))
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_of_endpoint
    ON webhook_deliveries (tenant, endpoint_id, created_at DESC);
CREATE INDEX webhook_deliveries_of_job ON webhook_deliveries (job_id);

-- Row security, as sql/0068: the application sees its transaction's tenant.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'webhook_endpoints', 'webhook_secrets', 'job_webhooks', 'webhook_deliveries'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY %I ON %I TO ledger_app'
            ' USING (tenant = ledger_tenant_named())'
            ' WITH CHECK (tenant = ledger_tenant_named())',
            t || '_in_tenant', t);
    END LOOP;
END
$$;

-- The projections are written by the append only; the secrets by the application.
REVOKE INSERT, UPDATE, DELETE ON webhook_endpoints, job_webhooks, webhook_deliveries
    FROM ledger_app;
REVOKE DELETE ON webhook_secrets FROM ledger_app;

-- The senders (ledger_dispatch functions) read every tenant's due deliveries, their
-- endpoints and secrets, and lease a delivery; they change nothing else.
GRANT SELECT ON webhook_endpoints, webhook_secrets TO ledger_dispatch;
CREATE POLICY webhook_endpoints_dispatched ON webhook_endpoints FOR SELECT
    TO ledger_dispatch USING (true);
CREATE POLICY webhook_secrets_dispatched ON webhook_secrets FOR SELECT
    TO ledger_dispatch USING (true);
GRANT SELECT, UPDATE (leased_by, lease_until) ON webhook_deliveries TO ledger_dispatch;
CREATE POLICY webhook_deliveries_dispatched ON webhook_deliveries FOR SELECT
    TO ledger_dispatch USING (true);
CREATE POLICY webhook_deliveries_leased ON webhook_deliveries FOR UPDATE
    TO ledger_dispatch USING (true) WITH CHECK (true);

-- A time as a webhook body shows it (UTC, microseconds, whatever the session's zone).
CREATE FUNCTION webhook_time(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- What a job event tells a webhook: job.completed, job.failed, job.cancelled,
-- job.retrying; NULL for the events it does not report.
CREATE FUNCTION webhook_kind(e events) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE
        WHEN e.type = 'job.completed.v1' THEN 'job.completed'
        WHEN e.type = 'job.cancelled.v1' THEN 'job.cancelled'
        WHEN e.type IN ('job.failed.v1', 'job.retry_scheduled.v1', 'job.lease_expired.v1')
            THEN CASE WHEN e.data->>'next_attempt_at' IS NULL THEN 'job.failed'
                      ELSE 'job.retrying' END
    END
$$;

-- The body of a delivery reporting `e` about job `j`, serialised once.
CREATE FUNCTION webhook_job_body(kind text, e events, j jobs) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT jsonb_build_object(
        'type', kind,
        'timestamp', webhook_time(e.occurred_at),
        'data', jsonb_build_object(
            'job_id', j.job_id,
            'type', j.type,
            'queue', j.queue,
            'status', j.status,
            'attempt', j.attempt,
            'max_attempts', j.max_attempts,
            'result', j.result,
            'error', j.error,
            'created_at', webhook_time(j.created_at),
            'completed_at', webhook_time(j.completed_at),
            'tenant', j.tenant,
            'event', jsonb_build_object(
                'type', e.type,
                'version', e.version,
                'cursor', e.txid::text || '.' || e.position::text,
                'hash', encode(e.hash, 'hex')
            )
        )
    )::text
$$;

-- One fold step of an endpoint (the rule of ledger.webhooks.evolve).
CREATE FUNCTION webhook_endpoint_step(s webhook_endpoints, e events)
RETURNS webhook_endpoints
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n webhook_endpoints := s;
BEGIN
    IF (s.endpoint_id IS NULL) <> (e.type = 'webhook.endpoint_created.v1') THEN
        RAISE EXCEPTION 'event % for webhook endpoint % out of order', e.type, e.job_id;
    END IF;
    n.version := e.version;
    n.updated_by := e.actor;
    n.updated_at := e.occurred_at;
    CASE e.type
        WHEN 'webhook.endpoint_created.v1', 'webhook.endpoint_updated.v1' THEN
            IF e.type = 'webhook.endpoint_created.v1' THEN
                n.endpoint_id := e.job_id;
                n.tenant := e.tenant;
                n.secret_id := e.data->>'secret_id';
                n.created_by := e.actor;
                n.created_at := e.occurred_at;
                n.deleted := false;
            END IF;
            n.url := e.data->>'url';
            n.events := ARRAY(SELECT jsonb_array_elements_text(e.data->'events'));
            n.queues := CASE WHEN jsonb_typeof(e.data->'queues') = 'array'
                THEN ARRAY(SELECT jsonb_array_elements_text(e.data->'queues')) END;
            n.types := CASE WHEN jsonb_typeof(e.data->'types') = 'array'
                THEN ARRAY(SELECT jsonb_array_elements_text(e.data->'types')) END;
            n.description := e.data->>'description';
            n.disabled := coalesce((e.data->>'disabled')::boolean, false);
            n.disabled_reason := NULL;
        WHEN 'webhook.endpoint_secret_rotated.v1' THEN
            n.secret_id := e.data->>'secret_id';
        WHEN 'webhook.endpoint_disabled.v1' THEN
            n.disabled := true;
            n.disabled_reason := e.data->>'reason';
        WHEN 'webhook.endpoint_deleted.v1' THEN
            n.deleted := true;
        WHEN 'webhook.endpoint_tested.v1' THEN
            NULL;
        ELSE
            RAISE EXCEPTION 'unknown event type % (webhook endpoint %)', e.type, e.job_id;
    END CASE;
    RETURN n;
END;
$$;

-- Folds an endpoint's event into its row.
CREATE FUNCTION webhook_endpoint_apply(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s webhook_endpoints;
BEGIN
    SELECT * INTO s FROM webhook_endpoints WHERE endpoint_id = e.job_id FOR UPDATE;
    IF NOT FOUND THEN
        s := NULL;
    END IF;
    s := webhook_endpoint_step(s, e);
    INSERT INTO webhook_endpoints SELECT s.*
    ON CONFLICT (endpoint_id) DO UPDATE
    SET version = excluded.version, url = excluded.url, events = excluded.events,
        queues = excluded.queues, types = excluded.types,
        description = excluded.description, secret_id = excluded.secret_id,
        disabled = excluded.disabled, disabled_reason = excluded.disabled_reason,
        deleted = excluded.deleted, updated_by = excluded.updated_by,
        updated_at = excluded.updated_at;
END;
$$;

-- Folds a delivery's event into its row: an attempt (its outcome decides the status
-- and when the next one is due) or a request to send it again.
CREATE FUNCTION webhook_delivery_apply(e events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF e.type = 'webhook.delivery_attempted.v1' THEN
        UPDATE webhook_deliveries
        SET version = e.version,
            attempts = attempts + 1,
            tries = tries + 1,
            status = CASE e.data->>'outcome'
                WHEN 'retrying' THEN 'pending' ELSE e.data->>'outcome' END,
            next_attempt_at = coalesce((e.data->>'next_attempt_at')::timestamptz,
                                       next_attempt_at),
            last_status_code = (e.data->>'status_code')::integer,
            last_error = e.data->>'error',
            last_attempt_at = e.occurred_at,
            leased_by = NULL,
            lease_until = NULL
        WHERE delivery_id = e.job_id AND version = e.version - 1;
    ELSIF e.type = 'webhook.delivery_redelivered.v1' THEN
        UPDATE webhook_deliveries
        SET version = e.version, status = 'pending', tries = 0,
            next_attempt_at = e.occurred_at, leased_by = NULL, lease_until = NULL
        WHERE delivery_id = e.job_id AND version = e.version - 1;
    ELSE
        RAISE EXCEPTION 'unknown event type % (webhook delivery %)', e.type, e.job_id;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % for webhook delivery % at version % out of order',
            e.type, e.job_id, e.version;
    END IF;
END;
$$;

-- The append's webhook work: the jobs' own webhooks kept, endpoint and delivery events
-- folded, and a delivery created for every reported event and every endpoint of its
-- tenant that subscribes to it (and for a job's own webhook at its end).
CREATE FUNCTION webhooks_project_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    e events;
    created bigint := 0;
    more bigint;
BEGIN
    INSERT INTO job_webhooks (job_id, tenant, url)
    SELECT a.job_id, a.tenant, a.data->'webhook'->>'url'
    FROM appended AS a
    WHERE a.type = 'job.submitted.v1' AND a.version = 1 AND a.data ? 'webhook'
    ON CONFLICT (job_id) DO NOTHING;

    FOR e IN SELECT * FROM appended WHERE type LIKE 'webhook.%' ORDER BY position LOOP
        IF e.type LIKE 'webhook.endpoint\_%' THEN
            PERFORM webhook_endpoint_apply(e);
            IF e.type = 'webhook.endpoint_tested.v1' THEN
                INSERT INTO webhook_deliveries (delivery_id, tenant, endpoint_id, event_type,
                                                event_position, body, next_attempt_at,
                                                created_at)
                VALUES (gen_random_uuid(), e.tenant, e.job_id, 'webhook.test', e.position,
                        jsonb_build_object(
                            'type', 'webhook.test',
                            'timestamp', webhook_time(e.occurred_at),
                            'data', jsonb_build_object('endpoint_id', e.job_id,
                                                       'requested_by', e.actor))::text,
                        e.occurred_at, e.occurred_at);
                created := created + 1;
            END IF;
        ELSE
            PERFORM webhook_delivery_apply(e);
        END IF;
    END LOOP;

    IF EXISTS (SELECT FROM webhook_endpoints AS w WHERE NOT w.disabled AND NOT w.deleted)
    THEN
        INSERT INTO webhook_deliveries (delivery_id, tenant, endpoint_id, job_id, event_type,
                                        event_position, body, next_attempt_at, created_at)
        SELECT gen_random_uuid(), a.tenant, w.endpoint_id, a.job_id, k.kind, a.position,
               webhook_job_body(k.kind, a::events, j), a.occurred_at, a.occurred_at
        FROM appended AS a
        CROSS JOIN LATERAL (SELECT webhook_kind(a::events) AS kind) AS k
        JOIN jobs AS j ON j.job_id = a.job_id
        JOIN webhook_endpoints AS w
            ON w.tenant = a.tenant
           AND NOT w.disabled AND NOT w.deleted
           AND k.kind = ANY(w.events)
           AND (w.queues IS NULL OR j.queue = ANY(w.queues))
           AND (w.types IS NULL OR j.type = ANY(w.types))
        WHERE k.kind IS NOT NULL;
        GET DIAGNOSTICS more = ROW_COUNT;
        created := created + more;
    END IF;

    IF EXISTS (SELECT FROM job_webhooks) THEN
        INSERT INTO webhook_deliveries (delivery_id, tenant, url, job_id, event_type,
                                        event_position, body, next_attempt_at, created_at)
        SELECT gen_random_uuid(), a.tenant, h.url, a.job_id, k.kind, a.position,
               webhook_job_body(k.kind, a::events, j), a.occurred_at, a.occurred_at
        FROM appended AS a
        CROSS JOIN LATERAL (SELECT webhook_kind(a::events) AS kind) AS k
        JOIN job_webhooks AS h ON h.job_id = a.job_id
        JOIN jobs AS j ON j.job_id = a.job_id
        WHERE k.kind IN ('job.completed', 'job.failed', 'job.cancelled');
        GET DIAGNOSTICS more = ROW_COUNT;
        created := created + more;
    END IF;

    IF created > 0 THEN
        PERFORM pg_notify('ledger_webhooks', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_project_webhooks
AFTER INSERT ON events
REFERENCING NEW TABLE AS appended
FOR EACH STATEMENT
EXECUTE FUNCTION webhooks_project_appended();

-- Due deliveries of every tenant, leased to `worker` for `seconds` (SKIP LOCKED: senders
-- in other processes take others), with what signing them needs: the URL, and the
-- endpoint's secrets now valid, newest first (none for a job's own webhook).
CREATE FUNCTION webhook_deliveries_claim(worker text, max_n integer, seconds double precision)
RETURNS TABLE (delivery_id uuid, tenant text, endpoint_id uuid, url text, job_id uuid,
               event_type text, body text, version integer, attempts integer,
               tries integer, created_at timestamptz, secrets text[])
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    WITH due AS (
        SELECT d.delivery_id
        FROM webhook_deliveries AS d
        WHERE d.status = 'pending'
          AND d.next_attempt_at <= now()
          AND (d.lease_until IS NULL OR d.lease_until < now())
          AND (d.endpoint_id IS NULL OR EXISTS (
              SELECT FROM webhook_endpoints AS w
              WHERE w.endpoint_id = d.endpoint_id AND NOT w.disabled AND NOT w.deleted))
        ORDER BY d.next_attempt_at
        LIMIT max_n
        FOR UPDATE SKIP LOCKED
    ), leased AS (
        UPDATE webhook_deliveries AS d
        SET leased_by = worker, lease_until = now() + make_interval(secs => seconds)
        FROM due
        WHERE d.delivery_id = due.delivery_id
        RETURNING d.*
    )
    SELECT l.delivery_id, l.tenant, l.endpoint_id, coalesce(w.url, l.url), l.job_id,
           l.event_type, l.body, l.version, l.attempts, l.tries, l.created_at,
           ARRAY(SELECT s.secret FROM webhook_secrets AS s
                 WHERE s.endpoint_id = l.endpoint_id
                   AND (s.expires_at IS NULL OR s.expires_at > now())
                 ORDER BY s.created_at DESC)
    FROM leased AS l
    LEFT JOIN webhook_endpoints AS w ON w.endpoint_id = l.endpoint_id
$$;

-- Seconds until the next delivery of any tenant is due (NULL: none pending).
CREATE FUNCTION webhook_deliveries_next_due() RETURNS double precision
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT greatest(extract(epoch FROM min(d.next_attempt_at) - now()), 0)::double precision
    FROM webhook_deliveries AS d
    WHERE d.status = 'pending'
      AND (d.endpoint_id IS NULL OR EXISTS (
          SELECT FROM webhook_endpoints AS w
          WHERE w.endpoint_id = d.endpoint_id AND NOT w.disabled AND NOT w.deleted))
$$;

-- Every tenant's deliveries by status and endpoints disabled (the /metrics scrape).
CREATE FUNCTION webhook_counts_all()
RETURNS TABLE (pending bigint, endpoints_disabled bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'),
           (SELECT count(*) FROM webhook_endpoints WHERE disabled AND NOT deleted)
$$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'webhook_deliveries_claim(text, integer, double precision)',
        'webhook_deliveries_next_due()',
        'webhook_counts_all()'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO ledger_dispatch', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO ledger_app', f);
    END LOOP;
END
$$;
