-- parking_platform: the legacy V4 application database (owner parking_user). Only its schema names
-- and the parking_spaces.spaces columns are documented (v5-schema.md §1, V5's
-- migrations/migrate_v4_spaces.sql); the other tables are small plausible stand-ins so that a
-- preflight can see what the database holds before anyone drops it.
-- Run inside an empty database, connected as its owner parking_user.

CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE SCHEMA ingest;
CREATE SCHEMA transform;
CREATE SCHEMA parking_config;
CREATE SCHEMA parking_spaces;
CREATE SCHEMA parking_operations;

-- Raw uplinks as received from ChirpStack v3/v4 webhooks.
CREATE TABLE ingest.raw_uplinks (
    uplink_id    bigserial PRIMARY KEY,
    deveui       text NOT NULL,
    received_at  timestamp NOT NULL DEFAULT now(),
    fport        integer,
    fcnt         integer,
    payload_hex  text,
    rssi         integer,
    snr          numeric(4, 1),
    gateway_eui  text,
    raw_json     jsonb
);
CREATE INDEX idx_raw_uplinks_deveui_time ON ingest.raw_uplinks (deveui, received_at DESC);

-- Decoded uplinks.
CREATE TABLE transform.processed_uplinks (
    id              bigserial PRIMARY KEY,
    uplink_id       bigint NOT NULL REFERENCES ingest.raw_uplinks (uplink_id),
    deveui          text NOT NULL,
    occupancy       text,
    battery_volts   numeric(4, 2),
    temperature_c   numeric(4, 1),
    processed_at    timestamp NOT NULL DEFAULT now()
);

-- Device registry of V4.
CREATE TABLE parking_config.devices (
    deveui        text PRIMARY KEY,
    device_type   text NOT NULL,
    description   text,
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamp NOT NULL DEFAULT now()
);

-- Source of V5's migrate_v4_spaces.sql (rows with archived = false and enabled = true were copied).
CREATE TABLE parking_spaces.spaces (
    space_id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    space_name               text NOT NULL,
    space_code               text NOT NULL UNIQUE,
    building                 text,
    floor                    text,
    zone                     text,
    gps_latitude             numeric(10, 8),
    gps_longitude            numeric(11, 8),
    occupancy_sensor_deveui  text,
    display_device_deveui    text,
    current_state            text NOT NULL DEFAULT 'FREE',
    space_metadata           jsonb DEFAULT '{}'::jsonb,
    notes                    text,
    location_description     text,
    maintenance_mode         boolean DEFAULT false,
    enabled                  boolean NOT NULL DEFAULT true,
    archived                 boolean NOT NULL DEFAULT false,
    created_at               timestamp NOT NULL DEFAULT now(),
    updated_at               timestamp NOT NULL DEFAULT now()
);

CREATE TABLE parking_operations.actuations (
    id              bigserial PRIMARY KEY,
    space_id        uuid NOT NULL REFERENCES parking_spaces.spaces (space_id),
    display_deveui  text NOT NULL,
    new_state       text NOT NULL,
    payload_hex     text,
    sent_at         timestamp,
    created_at      timestamp NOT NULL DEFAULT now()
);

CREATE TABLE parking_operations.reservations (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    space_id     uuid NOT NULL REFERENCES parking_spaces.spaces (space_id),
    reserved_by  text,
    starts_at    timestamp NOT NULL,
    ends_at      timestamp NOT NULL,
    status       text NOT NULL DEFAULT 'active',
    created_at   timestamp NOT NULL DEFAULT now()
);
