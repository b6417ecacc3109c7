"""Row-level security on one test's database, as issue #15 turns it on for every tenant table.

`isolate` gives every table with a `tenant` column a FORCEd policy that shows the
application's role only the rows of the tenant its transaction acts in
(`ledger_tenant_named()`), and none when it acts in none. The owner (the tests'
superuser, and so the SECURITY DEFINER append and claim) is not bound by it. Tests
use it to prove a code path reads tenant data only inside a transaction acting in
a tenant, so it keeps working once the migration that isolates tenants lands.
"""

from __future__ import annotations

import asyncpg

_TABLES = """
SELECT c.relname
FROM pg_class AS c
JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attname = 'tenant' AND NOT a.attisdropped
WHERE c.relnamespace = 'public'::regnamespace
  AND c.relkind IN ('r', 'p')
ORDER BY c.relname
"""


async def isolate(admin_dsn: str) -> list[str]:
    """Turn on the policy on every tenant table of the database at `admin_dsn`; the tables."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        tables = [r["relname"] for r in await conn.fetch(_TABLES)]
        async with conn.transaction():
            for table in tables:
                await conn.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
                await conn.execute(f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY')
                await conn.execute(
                    f'CREATE POLICY test_tenant_only ON "{table}" '
                    "USING (tenant = ledger_tenant_named()) "
                    "WITH CHECK (tenant = ledger_tenant_named())"
                )
    finally:
        await conn.close()
    return tables
