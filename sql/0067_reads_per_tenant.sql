-- The API's reads act in the request's tenant (issue #15): a page of jobs, of one
-- status or not, and a page of the feed read one tenant's rows through indexes with
-- the tenant first, so a small tenant's page costs the same whatever the other
-- tenants hold (DESIGN invariant 11). The job indexes are rebuilt with the tenant in
-- front (same names); the feed reads events_tenant_txid_position_idx (sql/0066).

DROP INDEX jobs_created_idx;
CREATE INDEX jobs_created_idx ON jobs (tenant, created_at DESC, job_id DESC);
DROP INDEX jobs_status_created_idx;
CREATE INDEX jobs_status_created_idx ON jobs (tenant, status, created_at DESC, job_id DESC);
