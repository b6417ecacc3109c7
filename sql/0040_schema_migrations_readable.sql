-- The application's role may read which migrations are applied: readiness (/ready) answers 503 while any is pending, and api/worker processes without MIGRATE_DATABASE_URL skip migrating when nothing is.
GRANT SELECT ON schema_migrations TO ledger_app;
