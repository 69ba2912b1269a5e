"""Unit tests of how phase 1 loads history (plain Python, no database): the bulk-or-live rule
and what a bulk load drops and builds again (migrate/bulk.py)."""
import pytest

from parking.migrate import bulk

# --- bulk or live ---------------------------------------------------------------------------


def choose(**kw):
    args = dict(mode="full", cutover=set(), others=0, rows_to_load=1_000_000, rows_present=0,
                min_rows=bulk.BULK_MIN_ROWS, table_ok=True)
    args.update(kw)
    return bulk.choose(**args)


def test_a_full_run_on_a_v6_nobody_uses_loads_in_bulk():
    path, reason = choose()
    assert path == bulk.BULK and "not serving" in reason


@pytest.mark.parametrize("kw, words", [
    ({"mode": "delta"}, "delta run"),
    ({"cutover": {"started"}}, "cutover is recorded (started)"),
    ({"cutover": {"switched", "started"}}, "started, switched"),
    ({"others": 1}, "1 other session(s) connected"),
    ({"min_rows": None}, "turned off"),
    ({"rows_to_load": 99_999}, "fewer than 100,000"),
    ({"rows_present": 1_000_001}, "already holds more rows"),
    ({"table_ok": "the login is not the table's owner"}, "not the table's owner"),
])
def test_anything_that_says_v6_may_serve_or_the_load_is_small_keeps_it_live(kw, words):
    path, reason = choose(**kw)
    assert path == bulk.LIVE and words in reason, reason


def test_serving_wins_over_size_and_the_threshold_is_inclusive():
    assert choose(mode="delta", rows_to_load=10**8)[0] == bulk.LIVE
    assert choose(others=3, min_rows=0)[0] == bulk.LIVE
    assert choose(rows_to_load=100_000)[0] == bulk.BULK
    assert choose(rows_to_load=5, rows_present=5, min_rows=0)[0] == bulk.BULK


# flags of bulk.INDEX_SQL after name, schema, definition and the constraint's name, type, definition
PLAIN = [False] * len(bulk.INDEX_FLAGS)


def flags(name):
    out = list(PLAIN)
    out[bulk.INDEX_FLAGS.index(name)] = True
    return out


def test_plain_indexes_and_keys_are_dropped_anything_else_stays_live():
    assert bulk.index_kept_because(PLAIN) is None
    assert bulk.index_kept_because(PLAIN, "p") is None and bulk.index_kept_because(PLAIN, "u") is None
    for name in bulk.INDEX_FLAGS:
        assert bulk.index_kept_because(flags(name)) == name
        assert bulk.index_kept_because(flags(name), "p") == name


def test_keys_the_load_needs_stay_live_plain_indexes_still_go():
    assert "ON CONFLICT" in bulk.index_kept_because(PLAIN, "p", keep_constraints=True)
    assert "ON CONFLICT" in bulk.index_kept_because(PLAIN, "u", keep_constraints=True)
    assert bulk.index_kept_because(PLAIN, None, keep_constraints=True) is None


def test_partitioned_inherited_or_foreign_owned_tables_stay_live():
    assert bulk.table_kept_because("r", True, False) is True
    assert "partitioned" in bulk.table_kept_because("p", True, False)
    assert "inheritance" in bulk.table_kept_because("r", True, True)
    assert "owner" in bulk.table_kept_because("r", False, False)


def test_a_plan_builds_again_exactly_what_it_dropped_by_name_keys_first_keys_last():
    p = bulk.Plan("sensor_readings",
                  [("public", "idx_dev", "CREATE INDEX idx_dev ON public.sensor_readings USING btree (device_id)"),
                   ("public", "Odd Name", 'CREATE INDEX "Odd Name" ON public.sensor_readings USING btree (fcnt)')],
                  [("fk_t", "FOREIGN KEY (tenant_id) REFERENCES tenants(id)"),
                   ("fk_d", "FOREIGN KEY (device_id) REFERENCES sensor_devices(id) NOT VALID")],
                  [("idx_x", "exclusion")],
                  [("sensor_readings_pkey", "p", "PRIMARY KEY (id)"), ("uq_fcnt", "u", "UNIQUE (device_id, fcnt)")])

    def ident(*names):
        return ".".join('"' + n.replace('"', '""') + '"' for n in names)
    assert p.drop_sql(ident) == [
        'DROP INDEX "public"."idx_dev"', 'DROP INDEX "public"."Odd Name"',
        'ALTER TABLE sensor_readings DROP CONSTRAINT "fk_t", DROP CONSTRAINT "fk_d", '
        'DROP CONSTRAINT "sensor_readings_pkey", DROP CONSTRAINT "uq_fcnt"']
    assert p.build_sql(ident) == [
        ("primary key sensor_readings_pkey", 'ALTER TABLE sensor_readings ADD CONSTRAINT "sensor_readings_pkey" '
                                             'PRIMARY KEY (id)'),
        ("unique constraint uq_fcnt", 'ALTER TABLE sensor_readings ADD CONSTRAINT "uq_fcnt" UNIQUE (device_id, fcnt)'),
        ("index idx_dev", "CREATE INDEX idx_dev ON public.sensor_readings USING btree (device_id)"),
        ("index Odd Name", 'CREATE INDEX "Odd Name" ON public.sensor_readings USING btree (fcnt)'),
        ("foreign key fk_t (validates every row)",
         'ALTER TABLE sensor_readings ADD CONSTRAINT "fk_t" FOREIGN KEY (tenant_id) REFERENCES tenants(id)'),
        ("foreign key fk_d (validates every row)",
         'ALTER TABLE sensor_readings ADD CONSTRAINT "fk_d" FOREIGN KEY (device_id) REFERENCES sensor_devices(id) '
         'NOT VALID')]


def test_a_plan_with_nothing_to_drop_issues_nothing():
    p = bulk.Plan("state_changes", [], [], [])
    assert p.drop_sql(str) == [] and p.build_sql(str) == []
