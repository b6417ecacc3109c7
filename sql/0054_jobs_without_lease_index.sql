-- Every claim wrote an entry into jobs_lease_idx, which only the lease recovery read, every few seconds, over a handful of running jobs: the status index serves it as well.
-- Recovery filters on greatest(jobs.lease_until, job_leases.lease_until), which no
-- index can answer; it reads the running jobs through jobs_status_created_idx
-- (status = 'processing': at most the live workers' slots) and sorts those few.
DROP INDEX jobs_lease_idx;
