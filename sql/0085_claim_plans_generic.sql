-- The claim's functions plan their statements once per session, not at every call.
--
-- sql/0059 (and the claim functions after it: 0062, 0065, 0070, 0079) set
-- `plan_cache_mode = force_custom_plan` on every function of the claim, so that a plan
-- made without the call's values could not walk the due index past a backlog. The
-- same functions also turn sorts, bitmap scans and (some) sequential scans off, and
-- every statement in them reads its rows in the order of the index that holds them
-- (jobs_queue_due_idx, jobs_key_due_idx): with those, a plan made once for any values
-- walks the same index in the same order as a plan made for the call's own values.
-- Planning was what the claim's small statements cost: on the 2-core machine of
-- 2026-12-01, one tenant's quiet claim (`jobs_claim_quiet_in`) took 3.5 ms idle with
-- plans made per call and 0.58 ms with plans made once; the fair claim of 250 jobs
-- 8.7 -> 2.4 ms; `jobs_tenant_due` 1.3 -> 0.18 ms (BENCHMARKS.md, "Plans made once").
-- A plan is made again when the tables' statistics change (ANALYZE invalidates it),
-- as for any prepared statement. The tests that read a claim's buffers from EXPLAIN
-- (a paused queue's or another tenant's backlog is not walked) hold the plans to it.

ALTER FUNCTION jobs_claim_fair(integer, text[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION jobs_claim_from_queue(queues, integer, text[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION jobs_claim_next(integer, text[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION jobs_claim_next_in(text, integer, text[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION jobs_claim_quiet_tenants(integer, text[], integer) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION jobs_due_in_group(text, text, text, text[], uuid[], integer, boolean) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION jobs_groups_of(text, text) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION jobs_queue_has_due(text, text, text[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION jobs_tenant_due(text, integer, text[]) SET plan_cache_mode = force_generic_plan;
