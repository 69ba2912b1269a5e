-- Cluster-level roles of the lab PostgreSQL server (run once, as the bootstrap superuser `parking`).
-- Idempotent: creates a role when missing and (re)asserts its attributes when present.
-- Passwords are deliberately absent: lab/seed.py sets them from its command line.
--
-- parking_user  owner of every lab database. SUPERUSER as in production, where V5's deployment doc
--               labels its URL "superuser - RLS bypassed" (v5-schema.md §1, v6-schema.md §0).
-- parking_app   V5's application role from migration 009: LOGIN, NOSUPERUSER, NOCREATEDB,
--               NOCREATEROLE, so that V5's forced RLS applies to it (v5-schema.md §1, §8).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'parking_user') THEN
        CREATE ROLE parking_user LOGIN SUPERUSER;
    ELSE
        ALTER ROLE parking_user LOGIN SUPERUSER;
    END IF;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'parking_app') THEN
        CREATE ROLE parking_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    ELSE
        ALTER ROLE parking_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
END
$$;
