"""V5 history: sensor_readings and state_changes, generated lazily for COPY.

Sizes grow linearly with the scale: READINGS_PER_SCALE and STATE_CHANGES_PER_SCALE rows per unit
(scale 10000 -> 1,050,000 rows). Rows are spread evenly over the WINDOW_DAYS before the anchor,
so a small scale gives sparse history and a large one gives uplinks every few seconds.

Built-in edge cases (present at every scale >= 1):
* every 97th reading (index 50 mod 97) has a NULL fcnt;
* sensor "live2" resets its frame counter half-way: its older readings carry higher fcnts;
* one slot in ten is an EUI that has no registry row (UNKNOWN_READING_EUI);
* state changes also land on soft-deleted spaces (before their deletion).
"""
from . import fleet

READINGS_PER_SCALE = 80
STATE_CHANGES_PER_SCALE = 25
WINDOW_DAYS = 30.0
NULL_FCNT_EVERY = 97
RESET_SENSOR = "live2"
RESET_BASE = 5_000_000

# Round-robin slots: (sensor key or None for the unknown EUI, space code or None).
READING_SLOTS = (
    ("live1", "P1-01"), ("live2", "P1-02"), ("live3", "P1-03"),
    ("live1", "P1-01"), ("live2", "P1-02"), ("live3", "P1-03"),
    ("fk-a001", "A001"), ("two-spaces", "AC-01"), ("orphan-assigned", "CP1-01"),
    (None, None),
)

STATE_SPACES = ("P1-01", "P1-02", "P1-03", "CP1-01", "AC-01", "A001", "B001", "MPL-01",
                "AC-02", "P1-04")

READING_COLUMNS = ("id", "device_eui", "space_id", "occupancy_state", "battery", "temperature",
                   "rssi", "snr", "timestamp", "tenant_id", "fcnt")
STATE_CHANGE_COLUMNS = ("id", "space_id", "previous_state", "new_state", "source", "request_id",
                        "metadata", "timestamp", "tenant_id")


def reading_count(world):
    return READINGS_PER_SCALE * world.scale


def state_change_count(world):
    return STATE_CHANGES_PER_SCALE * world.scale


def _space_maps(world):
    """Return ({space code: id}, {space code: tenant id}), computed once per stream."""
    space_ids = {code: fleet.space_id(world, code) for code in fleet.SPACES}
    tenant_of = {code: fleet.tenant_id(world, fleet.space_tenant_key(code))
                 for code in fleet.SPACES}
    return space_ids, tenant_of


def _moment(world, index, total):
    """The time of row ``index`` of ``total`` rows spread evenly over the window."""
    step_seconds = WINDOW_DAYS * 86400.0 / total
    return world.at(days=-WINDOW_DAYS, seconds=round((index + 1) * step_seconds, 3))


def reading_plan(world):
    """Yield (index, sensor key, space code, fcnt) for every bulk reading, in id order."""
    total = reading_count(world)
    counters = {}
    for index in range(total):
        sensor, space = READING_SLOTS[index % len(READING_SLOTS)]
        counter_key = sensor
        if sensor == RESET_SENSOR and index >= total // 2:
            counter_key = RESET_SENSOR + ":after-reset"
        counters[counter_key] = counters.get(counter_key, 0) + 1
        fcnt = counters[counter_key]
        if counter_key == RESET_SENSOR:
            fcnt += RESET_BASE
        if index % NULL_FCNT_EVERY == 50:
            fcnt = None
        yield index, sensor, space, fcnt


def last_fcnt(world):
    """Return {sensor key: fcnt of its newest bulk reading} (what ChirpStack's f_cnt_up shows)."""
    newest = {}
    for _, sensor, _, fcnt in reading_plan(world):
        if sensor is not None and fcnt is not None:
            newest[sensor] = fcnt
    return newest


def readings(world, first_id):
    """Yield sensor_readings tuples (READING_COLUMNS order), ids from ``first_id``."""
    rng = world.rng("v5.readings")
    total = reading_count(world)
    space_ids, tenant_of = _space_maps(world)
    for index, sensor, space, fcnt in reading_plan(world):
        eui = fleet.SENSORS[sensor][0] if sensor else fleet.UNKNOWN_READING_EUI
        occupied = rng.random() < 0.45
        yield (
            first_id + index,
            eui,
            space_ids.get(space),
            "OCCUPIED" if occupied else "FREE",
            f"{rng.uniform(3.0, 3.6):.2f}",
            f"{rng.uniform(4.0, 28.0):.1f}",
            rng.randint(-118, -62),
            f"{rng.uniform(-8.0, 11.0):.1f}",
            _moment(world, index, total),
            tenant_of.get(space, fleet.DEFAULT_TENANT),
            fcnt,
        )


def _state_step(index, previous):
    """Return (source, new_state) of state change ``index`` after ``previous``."""
    if index % 31 == 30:
        return "system", "FREE"
    if index % 23 == 22:
        return "manual", "MAINTENANCE"
    if index % 10 == 9:
        return "reservation", "RESERVED"
    return "sensor", "OCCUPIED" if previous == "FREE" else "FREE"


def state_changes(world, first_id):
    """Yield state_changes tuples (STATE_CHANGE_COLUMNS order), ids from ``first_id``."""
    total = state_change_count(world)
    space_ids, tenant_of = _space_maps(world)
    last_state = {code: "FREE" for code in STATE_SPACES}
    for index in range(total):
        moment = _moment(world, index, total)
        code = STATE_SPACES[index % len(STATE_SPACES)]
        deleted = fleet.SPACES[code].get("deleted")
        if deleted is not None and moment >= world.at(days=-deleted):
            code = "P1-01"
        previous = last_state[code]
        source, new_state = _state_step(index, previous)
        last_state[code] = new_state
        request_id = None if source == "sensor" else str(world.id(f"v5.state-change.{index}"))
        metadata = '{"trigger": "uplink"}' if source == "sensor" else None
        yield (
            first_id + index,
            space_ids[code],
            previous,
            new_state,
            source,
            request_id,
            metadata,
            moment,
            tenant_of[code],
        )
