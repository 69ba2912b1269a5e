-- chirpstack: the six ChirpStack v4 tables the migration reads or the lab simulator uses, in the
-- shape of release v4.15 (the last release before V5's snapshot date, 2025-10-22; chirpstack-v4.md
-- §2.7). Run inside an empty database, connected as its owner parking_user.
--
-- ChirpStack declares no column defaults (its migrations drop them), so every INSERT must supply
-- every NOT NULL column. EUIs are raw 8-byte bytea; their text form is lowercase hex.
-- Tables ChirpStack has but the lab does not need (user, api_key, device_keys, queues, multicast,
-- FUOTA ...) are left out.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Diesel's migration ledger (ChirpStack runs its embedded migrations at start-up).
CREATE TABLE __diesel_schema_migrations (
    version  varchar(50) PRIMARY KEY NOT NULL,
    run_on   timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE tenant (
    id                     uuid PRIMARY KEY,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL,
    name                   varchar(100) NOT NULL,
    description            text NOT NULL,
    can_have_gateways      boolean NOT NULL,
    max_device_count       integer NOT NULL,
    max_gateway_count      integer NOT NULL,
    private_gateways_up    boolean NOT NULL,
    private_gateways_down  boolean NOT NULL,
    tags                   jsonb NOT NULL
);
CREATE INDEX idx_tenant_name_trgm ON tenant USING gin (name gin_trgm_ops);

CREATE TABLE gateway (
    gateway_id           bytea PRIMARY KEY,
    tenant_id            uuid NOT NULL REFERENCES tenant ON DELETE CASCADE,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    last_seen_at         timestamptz,
    name                 varchar(100) NOT NULL,
    description          text NOT NULL,
    latitude             double precision NOT NULL,
    longitude            double precision NOT NULL,
    altitude             real NOT NULL,
    stats_interval_secs  integer NOT NULL,
    tls_certificate      bytea,
    tags                 jsonb NOT NULL,
    properties           jsonb NOT NULL
);
CREATE INDEX idx_gateway_tenant_id ON gateway (tenant_id);
CREATE INDEX idx_gateway_name_trgm ON gateway USING gin (name gin_trgm_ops);
CREATE INDEX idx_gateway_id_trgm ON gateway USING gin (encode(gateway_id, 'hex') gin_trgm_ops);
CREATE INDEX idx_gateway_tags ON gateway USING gin (tags);

CREATE TABLE application (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenant ON DELETE CASCADE,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    name           varchar(100) NOT NULL,
    description    text NOT NULL,
    mqtt_tls_cert  bytea,
    tags           jsonb NOT NULL
);
CREATE INDEX idx_application_tenant_id ON application (tenant_id);
CREATE INDEX idx_application_name_trgm ON application USING gin (name gin_trgm_ops);
CREATE INDEX idx_application_tags ON application USING gin (tags);

-- One row per (application, kind); configuration is a serde externally tagged enum,
-- e.g. {"Http": {"headers": {}, "json": true, "event_endpoint_url": "http://..."}}.
CREATE TABLE application_integration (
    application_id  uuid NOT NULL REFERENCES application ON DELETE CASCADE,
    kind            varchar(20) NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    configuration   jsonb NOT NULL,
    PRIMARY KEY (application_id, kind)
);

-- v4.15 shape: tenant_id still NOT NULL (nullable from 4.16), flat class/ABP columns already
-- folded into the JSON params (4.12), no vendor-catalogue columns (4.16).
CREATE TABLE device_profile (
    id                          uuid PRIMARY KEY,
    tenant_id                   uuid NOT NULL REFERENCES tenant ON DELETE CASCADE,
    created_at                  timestamptz NOT NULL,
    updated_at                  timestamptz NOT NULL,
    name                        varchar(100) NOT NULL,
    region                      varchar(10) NOT NULL,
    mac_version                 varchar(10) NOT NULL,
    reg_params_revision         varchar(20) NOT NULL,
    adr_algorithm_id            varchar(100) NOT NULL,
    payload_codec_runtime       varchar(20) NOT NULL,
    uplink_interval             integer NOT NULL,
    device_status_req_interval  integer NOT NULL,
    supports_otaa               boolean NOT NULL,
    supports_class_b            boolean NOT NULL,
    supports_class_c            boolean NOT NULL,
    tags                        jsonb NOT NULL,
    payload_codec_script        text NOT NULL,
    flush_queue_on_activate     boolean NOT NULL,
    description                 text NOT NULL,
    measurements                jsonb NOT NULL,
    auto_detect_measurements    boolean NOT NULL,
    region_config_id            varchar(100),
    allow_roaming               boolean NOT NULL,
    rx1_delay                   smallint NOT NULL,
    abp_params                  jsonb,
    class_b_params              jsonb,
    class_c_params              jsonb,
    relay_params                jsonb,
    app_layer_params            jsonb NOT NULL
);
CREATE INDEX idx_device_profile_tenant_id ON device_profile (tenant_id);
CREATE INDEX idx_device_profile_name_trgm ON device_profile USING gin (name gin_trgm_ops);
CREATE INDEX idx_device_profile_tags ON device_profile USING gin (tags);

CREATE TABLE device (
    dev_eui                bytea PRIMARY KEY,
    application_id         uuid NOT NULL REFERENCES application ON DELETE CASCADE,
    device_profile_id      uuid NOT NULL REFERENCES device_profile ON DELETE CASCADE,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL,
    last_seen_at           timestamptz,
    scheduler_run_after    timestamptz,
    name                   varchar(100) NOT NULL,
    description            text NOT NULL,
    external_power_source  boolean NOT NULL,
    battery_level          numeric(5, 2),
    margin                 integer,
    dr                     smallint,
    latitude               double precision,
    longitude              double precision,
    altitude               real,
    dev_addr               bytea,
    enabled_class          char(1) NOT NULL,
    skip_fcnt_check        boolean NOT NULL,
    is_disabled            boolean NOT NULL,
    tags                   jsonb NOT NULL,
    variables              jsonb NOT NULL,
    join_eui               bytea NOT NULL,
    secondary_dev_addr     bytea,
    device_session         bytea,
    app_layer_params       jsonb NOT NULL,
    f_cnt_up               bigint NOT NULL
);
CREATE INDEX idx_device_application_id ON device (application_id);
CREATE INDEX idx_device_device_profile_id ON device (device_profile_id);
CREATE INDEX idx_device_name_trgm ON device USING gin (name gin_trgm_ops);
CREATE INDEX idx_device_dev_eui_trgm ON device USING gin (encode(dev_eui, 'hex') gin_trgm_ops);
CREATE INDEX idx_device_dev_addr_trgm ON device USING gin (encode(dev_addr, 'hex') gin_trgm_ops);
CREATE INDEX idx_device_tags ON device USING gin (tags);
CREATE INDEX idx_device_secondary_dev_addr_trgm ON device
    USING gin (encode(secondary_dev_addr, 'hex') gin_trgm_ops);
