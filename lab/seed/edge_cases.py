"""The seeded edge cases, for humans: written to parking_v5's lab_meta.edge_cases.

Each entry is (name, databases, description). tests/lab/test_seed_edge_cases.py has one test per
entry, named test_<name>, that checks the condition in the databases themselves (it never reads
this table). The gotcha numbers refer to v5-to-v6-mapping.md §5.
"""

EDGE_CASES = (
    ("tenant_slug_collision", "parking_v5,parking_v6",
     "V5 tenant 'acme-parking' has a new id but a slug V6 already uses (gotcha 10)."),
    ("shared_tenant_ids", "parking_v5,parking_v6",
     "Tenants …0000 (platform) and …0001 (default) exist in both; …0000 has another name and "
     "slug in V5 (platform-admin) than in V6 (platform)."),
    ("inactive_tenant", "parking_v5",
     "V5 tenant 'city-parking' is inactive; V6 has the same id active."),
    ("user_email_case_collision", "parking_v5,parking_v6",
     "V5 'Admin@verdegris.eu' vs V6 'admin@verdegris.eu' (V6 unique key is case-sensitive)."),
    ("user_id_collision_other_email", "parking_v5,parking_v6",
     "V5 user ops@verdegris.eu has the id of V6 user demo@demo-parking.com."),
    ("platform_admin_membership", "parking_v5",
     "A V5 membership with role platform_admin in tenant …0000 (V6's CHECK rejects the role)."),
    ("site_same_id", "parking_v5,parking_v6", "Site …0001 'Default Site' exists in both."),
    ("site_same_tenant_name_other_id", "parking_v5,parking_v6",
     "'Main Parking Lot' in tenant city-parking exists in both with different ids."),
    ("site_names_same_slug", "parking_v5",
     "V5 sites 'Car Park #1' and 'Car-Park 1' in one tenant both normalise to slug car-park-1."),
    ("seed_spaces_collision", "parking_v5,parking_v6",
     "A001/A002/B001 in site/tenant …0001 in both databases with different ids (gotcha 9)."),
    ("soft_deleted_spaces", "parking_v5", "V5 spaces P1-04 and AC-02 have deleted_at set."),
    ("device_only_deleted_space", "parking_v5",
     "Sensor 58A0CB0000104C33 is linked only from soft-deleted space AC-02 (gotcha 24)."),
    ("orphan_device_without_space", "parking_v5",
     "Sensor 58A0CB0000105D44 has status orphan and no space."),
    ("active_device_without_space", "parking_v5",
     "Sensor 58A0CB0000106E55 is 'active' but in no space (ACTIVE_BUT_UNASSIGNED, gotcha 21)."),
    ("display_in_live_and_deleted_space", "parking_v5",
     "Display 202020390C0E0F10 is display_eui of live CP1-01 and of deleted P1-04 (gotcha 23)."),
    ("sensor_linked_by_fk_and_by_eui", "parking_v5",
     "Sensor 58A0CB0000103B22: A002.sensor_device_id (stale FK, EUI cleared) and "
     "AC-01.sensor_eui."),
    ("space_fk_link", "parking_v5",
     "Space A001 has sensor_device_id set (FK form written by the old router) and sensor_eui."),
    ("orphan_but_assigned", "parking_v5",
     "Sensor 58A0CB0000107F66 has status orphan yet CP1-01.sensor_eui links it."),
    ("decommissioned_still_linked", "parking_v5",
     "Sensor 58A0CB0000108A77 is decommissioned (enabled false) and still MPL-01's sensor."),
    ("live_sensors_linked_by_eui_only", "parking_v5",
     "The three live sensors are linked to Verdegris spaces by EUI, sensor_device_id NULL."),
    ("lowercase_registry_eui", "parking_v5",
     "Registry row '58a0cb0000109b88' is lowercase (CHECK is NOT VALID); B001 holds it uppercase."),
    ("lowercase_euis_in_history", "parking_v5",
     "Lowercase EUIs in sensor_readings (legacy) and orphan_devices (no CHECK there)."),
    ("null_euis", "parking_v5", "Spaces with NULL sensor_eui and NULL display_eui."),
    ("malformed_eui", "parking_v5",
     "Registry sensor 'A8404100018E4D' (14 hex digits) and the same in orphan_devices."),
    ("display_without_eui", "parking_v5",
     "Display with dev_eui '' (NOT NULL column) linked only through CP1B-01.display_device_id."),
    ("dual_role_kuando", "parking_v5",
     "Kuando 2020203705250102 is in sensor_devices and display_devices."),
    ("reservations_every_status", "parking_v5",
     "Reservations in each status (pending, confirmed, cancelled, expired, active, completed, "
     "no_show), each once in the past and once in the future."),
    ("reservation_on_deleted_space", "parking_v5", "A reservation of soft-deleted space AC-02."),
    ("future_reservation_on_deleted_space", "parking_v5",
     "A confirmed future reservation of soft-deleted space AC-02 (would become a live booking, "
     "gotcha 30)."),
    ("display_on_live_spaces_of_two_tenants", "parking_v5",
     "Display 202020390C0E0F10 is display_eui of live CP1-01 (Verdegris) and display_device_id of "
     "live AC-03 (Acme): linked from live spaces of two tenants (gotcha 23, §4.4)."),
    ("readings_null_fcnt", "parking_v5", "Readings with NULL fcnt (V6 requires NOT NULL)."),
    ("readings_fcnt_reset", "parking_v5",
     "58A0CB0000115B4E reset its frame counter: older readings carry higher fcnts (gotcha 40)."),
    ("readings_unknown_eui", "parking_v5",
     "Readings for 0004A30B001C0F3E, which has no registry row (and is no longer in ChirpStack)."),
    ("history_on_deleted_space", "parking_v5",
     "state_changes rows of soft-deleted spaces (gotcha 30)."),
    ("api_key_hash_collision", "parking_v5,parking_v6",
     "V5's placeholder 'Development Key' is in both with the same key_hash and different ids."),
    ("api_key_without_tenant", "parking_v5", "A V5 API key with tenant_id NULL."),
    ("v6_orphans_are_v5_devices", "parking_v5,parking_v6",
     "V6 orphan_devices holds the live sensors, which are V5 registry devices."),
    ("gateways_under_several_tenants", "chirpstack", "Gateways belong to 4 ChirpStack tenants."),
    ("gateway_zero_position", "chirpstack", "A gateway with latitude = longitude = 0."),
    ("gateway_never_seen", "chirpstack", "A gateway with last_seen_at NULL."),
    ("gateway_site_tags", "chirpstack",
     "A gateway whose tags carry site_id/site_name of a V5 site, description = site name."),
    ("chirpstack_devices_unknown_to_v5", "chirpstack,parking_v5",
     "Two ChirpStack devices whose EUI is in no V5 registry (orphans on first uplink)."),
    ("v4_space_reused_id", "parking_platform,parking_v5",
     "V4 parking_spaces.spaces rows share their id with the V5 spaces copied from them."),
)

DDL = """
CREATE TABLE lab_meta.edge_cases (
    name         text PRIMARY KEY,
    db           text NOT NULL,
    description  text NOT NULL
)
"""


def rows():
    """Rows for lab_meta.edge_cases."""
    return [dict(name=name, db=db, description=description)
            for name, db, description in EDGE_CASES]
