-- Bookkeeping of lab/seed.py, in every lab database (schema lab_meta, not part of the product).
CREATE SCHEMA lab_meta;

CREATE TABLE lab_meta.seed_state (
    db             text PRIMARY KEY,
    seed           bigint NOT NULL,
    scale          integer NOT NULL,
    anchor         date NOT NULL,
    schema_sha256  text NOT NULL,
    seeded_at      timestamptz NOT NULL DEFAULT now()
);
