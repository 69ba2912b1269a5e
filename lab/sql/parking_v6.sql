-- parking_v6: the V6 target database as it most likely stood on 2025-10-24, before the data
-- migration: L0 (the pg_dump) + L1 migrations 001-004 as they apply on top of it + L2
-- (database/fix-v6-schema.sql) + L3 (the hand-made downlink_queue). See v6-schema.md §0, §9.
-- Run inside an empty database, connected as its owner parking_user. No application role:
-- V6 has none. Production faults are kept on purpose (RLS policies TO parking_user only, no
-- FORCE, RLS enabled on sites with no policy, gateways without a unique key, reservations CHECK
-- without 'expired', timestamps mixed with/without time zone).
-- Choices are listed one per bullet in lab/SCHEMA_CHOICES.md.

CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";

-- [L0] V5's M001 function.
CREATE FUNCTION update_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$;

-- [L0] V5's original M002 function: copies the site's tenant, no validation.
CREATE FUNCTION sync_space_tenant_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.site_id IS NOT NULL THEN
        SELECT tenant_id INTO NEW.tenant_id FROM sites WHERE id = NEW.site_id;
    ELSE
        NEW.tenant_id = NULL;
    END IF;
    RETURN NEW;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Tenancy (timestamptz: columns inherited from V5)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE tenants (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name               varchar(255) NOT NULL,
    slug               varchar(100) NOT NULL,
    metadata           jsonb DEFAULT '{}'::jsonb,
    settings           jsonb DEFAULT '{}'::jsonb,
    is_active          boolean DEFAULT true,
    created_at         timestamptz DEFAULT now(),
    updated_at         timestamptz DEFAULT now(),
    type               varchar(50) DEFAULT 'customer',
    subscription_tier  varchar(50) DEFAULT 'basic',
    CONSTRAINT tenants_slug_key UNIQUE (slug),
    CONSTRAINT valid_slug CHECK (slug ~ '^[a-z0-9-]+$')
);
CREATE INDEX idx_tenants_slug ON tenants (slug) WHERE is_active = true;
CREATE INDEX idx_tenants_active ON tenants (is_active) WHERE is_active = true;
CREATE TRIGGER update_tenants_updated_at BEFORE UPDATE ON tenants
    FOR EACH ROW EXECUTE FUNCTION update_updated_at();

-- [L0 + L2] password_hash renamed to hashed_password; first_name/last_name/role added.
CREATE TABLE users (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email            varchar(255) NOT NULL,
    name             varchar(255) NOT NULL,
    hashed_password  varchar(255) NOT NULL,
    metadata         jsonb DEFAULT '{}'::jsonb,
    is_active        boolean DEFAULT true,
    email_verified   boolean DEFAULT false,
    created_at       timestamptz DEFAULT now(),
    updated_at       timestamptz DEFAULT now(),
    last_login_at    timestamptz,
    first_name       varchar(255),
    last_name        varchar(255),
    role             varchar(50),
    -- Case-sensitive (V5 has a lower(email) unique index instead).
    CONSTRAINT users_email_key UNIQUE (email)
);
CREATE INDEX idx_users_email ON users (email) WHERE is_active = true;
CREATE INDEX idx_users_active ON users (is_active);
CREATE TRIGGER update_users_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION update_updated_at();

CREATE TABLE user_memberships (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL,
    tenant_id   uuid NOT NULL,
    role        varchar(20) NOT NULL,
    metadata    jsonb DEFAULT '{}'::jsonb,
    is_active   boolean DEFAULT true,
    created_at  timestamptz DEFAULT now(),
    updated_at  timestamptz DEFAULT now(),
    CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT fk_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT unique_user_tenant UNIQUE (user_id, tenant_id),
    -- No platform_admin in V6.
    CONSTRAINT valid_role CHECK (role IN ('owner', 'admin', 'operator', 'viewer'))
);
CREATE INDEX idx_user_memberships_user ON user_memberships (user_id) WHERE is_active = true;
CREATE INDEX idx_user_memberships_tenant ON user_memberships (tenant_id) WHERE is_active = true;
CREATE INDEX idx_user_memberships_role ON user_memberships (tenant_id, role) WHERE is_active = true;
CREATE TRIGGER update_user_memberships_updated_at BEFORE UPDATE ON user_memberships
    FOR EACH ROW EXECUTE FUNCTION update_updated_at();

-- [L0 + L2] slug nullable, unique per tenant.
CREATE TABLE sites (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL,
    name        varchar(255) NOT NULL,
    timezone    varchar(50) DEFAULT 'UTC',
    location    jsonb,
    metadata    jsonb DEFAULT '{}'::jsonb,
    is_active   boolean DEFAULT true,
    created_at  timestamptz DEFAULT now(),
    updated_at  timestamptz DEFAULT now(),
    slug        varchar(100),
    CONSTRAINT fk_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT unique_tenant_site_name UNIQUE (tenant_id, name),
    CONSTRAINT sites_tenant_id_slug_key UNIQUE (tenant_id, slug)
);
CREATE INDEX idx_sites_tenant ON sites (tenant_id) WHERE is_active = true;
CREATE INDEX idx_sites_tenant_active ON sites (tenant_id, is_active);
CREATE TRIGGER update_sites_updated_at BEFORE UPDATE ON sites
    FOR EACH ROW EXECUTE FUNCTION update_updated_at();

-- ---------------------------------------------------------------------------------------------
-- Devices (timestamp WITHOUT time zone: V6 columns) [L0 + L1 001 + L2]
-- ---------------------------------------------------------------------------------------------

CREATE TABLE sensor_devices (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    dev_eui                 varchar(16) NOT NULL,
    name                    varchar(255),
    status                  varchar(50) NOT NULL DEFAULT 'unassigned',
    lifecycle_state         varchar(50) NOT NULL DEFAULT 'provisioned',
    assigned_space_id       uuid,
    assigned_at             timestamp,
    last_seen_at            timestamp,
    enabled                 boolean DEFAULT true,
    config                  jsonb DEFAULT '{}'::jsonb,
    created_at              timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at              timestamp DEFAULT CURRENT_TIMESTAMP,
    chirpstack_device_id    uuid,
    chirpstack_sync_status  varchar(50) DEFAULT 'pending',
    device_type             varchar(50),
    manufacturer            varchar(100),
    model                   varchar(100),
    CONSTRAINT sensor_devices_dev_eui_key UNIQUE (dev_eui)
);
CREATE INDEX idx_sensor_devices_tenant ON sensor_devices (tenant_id, status);

CREATE TABLE display_devices (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    dev_eui                 varchar(16) NOT NULL,
    name                    varchar(255),
    status                  varchar(50) NOT NULL DEFAULT 'unassigned',
    lifecycle_state         varchar(50) NOT NULL DEFAULT 'provisioned',
    assigned_space_id       uuid,
    assigned_at             timestamp,
    last_seen_at            timestamp,
    enabled                 boolean DEFAULT true,
    config                  jsonb DEFAULT '{}'::jsonb,
    created_at              timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at              timestamp DEFAULT CURRENT_TIMESTAMP,
    chirpstack_device_id    uuid,
    chirpstack_sync_status  varchar(50) DEFAULT 'pending',
    device_type             varchar(50),
    manufacturer            varchar(100),
    model                   varchar(100),
    CONSTRAINT display_devices_dev_eui_key UNIQUE (dev_eui)
);
CREATE INDEX idx_display_devices_tenant ON display_devices (tenant_id, status);

-- ---------------------------------------------------------------------------------------------
-- Spaces [L0]: V5's table plus V6 columns; two state columns coexist.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE spaces (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                  varchar(100) NOT NULL,
    code                  varchar(20) NOT NULL,
    building              varchar(100),
    floor                 varchar(20),
    zone                  varchar(50),
    gps_latitude          numeric(10, 8),
    gps_longitude         numeric(11, 8),
    sensor_eui            varchar(16),
    display_eui           varchar(16),
    state                 varchar(20) NOT NULL DEFAULT 'FREE',
    metadata              jsonb,
    created_at            timestamptz DEFAULT now(),
    updated_at            timestamptz DEFAULT now(),
    deleted_at            timestamptz,
    site_id               uuid,
    tenant_id             uuid,
    sensor_device_id      uuid REFERENCES sensor_devices (id),
    display_device_id     uuid REFERENCES display_devices (id),
    current_state         varchar(50) DEFAULT 'unknown',
    sensor_state          varchar(50),
    display_state         varchar(50),
    state_changed_at      timestamp,
    enabled               boolean DEFAULT true,
    auto_release_minutes  integer,
    config                jsonb DEFAULT '{}'::jsonb,
    display_name          varchar(255),
    CONSTRAINT unique_sensor_eui UNIQUE (sensor_eui),
    CONSTRAINT valid_state CHECK (state IN ('FREE', 'OCCUPIED', 'RESERVED', 'MAINTENANCE')),
    CONSTRAINT valid_gps CHECK (
        (gps_latitude IS NULL AND gps_longitude IS NULL)
        OR (gps_latitude BETWEEN -90 AND 90 AND gps_longitude BETWEEN -180 AND 180)),
    CONSTRAINT fk_site FOREIGN KEY (site_id) REFERENCES sites (id) ON DELETE RESTRICT
);
CREATE UNIQUE INDEX unique_tenant_site_space_code ON spaces (tenant_id, site_id, code)
    WHERE deleted_at IS NULL;
CREATE INDEX idx_spaces_building ON spaces (building) WHERE deleted_at IS NULL;
CREATE INDEX idx_spaces_location ON spaces (building, floor, zone) WHERE deleted_at IS NULL;
CREATE INDEX idx_spaces_sensor ON spaces (sensor_eui) WHERE deleted_at IS NULL;
CREATE INDEX idx_spaces_site ON spaces (site_id) WHERE deleted_at IS NULL;
CREATE INDEX idx_spaces_state ON spaces (state) WHERE deleted_at IS NULL;
CREATE INDEX idx_spaces_tenant ON spaces (tenant_id) WHERE deleted_at IS NULL;
CREATE TRIGGER spaces_sync_tenant_id BEFORE INSERT OR UPDATE OF site_id ON spaces
    FOR EACH ROW EXECUTE FUNCTION sync_space_tenant_id();
CREATE TRIGGER update_spaces_updated_at BEFORE UPDATE ON spaces
    FOR EACH ROW EXECUTE FUNCTION update_updated_at();

-- Bidirectional links: devices point back at spaces.
ALTER TABLE sensor_devices ADD CONSTRAINT sensor_devices_assigned_space_id_fkey
    FOREIGN KEY (assigned_space_id) REFERENCES spaces (id) ON DELETE SET NULL;
ALTER TABLE display_devices ADD CONSTRAINT display_devices_assigned_space_id_fkey
    FOREIGN KEY (assigned_space_id) REFERENCES spaces (id) ON DELETE SET NULL;

-- [L0] shape: no description/model/location/last_seen_at columns and NO unique key
-- (L1 003's CREATE TABLE IF NOT EXISTS was skipped; only its index applied).
CREATE TABLE gateways (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    gateway_id  varchar(16) NOT NULL,
    name        varchar(255) NOT NULL,
    site_id     uuid REFERENCES sites (id),
    status      varchar(50) DEFAULT 'offline',
    config      jsonb DEFAULT '{}'::jsonb,
    enabled     boolean DEFAULT true,
    created_at  timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at  timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX idx_gateways_tenant ON gateways (tenant_id, status);

-- [L0] assignment history; indexes from L1 003.
CREATE TABLE device_assignments (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL REFERENCES tenants (id),
    device_type          varchar(50) NOT NULL,
    device_id            uuid NOT NULL,
    dev_eui              varchar(16) NOT NULL,
    space_id             uuid REFERENCES spaces (id),
    assigned_at          timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    unassigned_at        timestamp,
    assigned_by          uuid REFERENCES users (id),
    unassigned_by        uuid REFERENCES users (id),
    assignment_reason    text,
    unassignment_reason  text
);
CREATE INDEX idx_device_assignments_tenant ON device_assignments (tenant_id);
CREATE INDEX idx_device_assignments_device ON device_assignments (device_id, device_type);

-- [L0] reservations; L0 CHECK without 'expired'; no request_id column, no overlap exclusion.
CREATE TABLE reservations (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    space_id             uuid NOT NULL,
    start_time           timestamptz NOT NULL,
    end_time             timestamptz NOT NULL,
    user_email           varchar(255),
    user_phone           varchar(20),
    status               varchar(20) NOT NULL DEFAULT 'active',
    metadata             jsonb,
    created_at           timestamptz DEFAULT now(),
    updated_at           timestamptz DEFAULT now(),
    tenant_id            uuid REFERENCES tenants (id),
    user_id              uuid REFERENCES users (id),
    user_name            varchar(255),
    checked_in           boolean DEFAULT false,
    checked_in_at        timestamp,
    checked_out_at       timestamp,
    rate                 double precision,
    total_cost           double precision,
    payment_status       varchar(50) DEFAULT 'pending',
    cancelled_at         timestamp,
    cancelled_by         uuid REFERENCES users (id),
    cancellation_reason  text,
    notes                text,
    CONSTRAINT fk_space FOREIGN KEY (space_id) REFERENCES spaces (id),
    CONSTRAINT valid_times CHECK (end_time > start_time),
    CONSTRAINT valid_duration CHECK (end_time - start_time <= interval '24 hours'),
    CONSTRAINT valid_status CHECK (status IN ('active', 'completed', 'cancelled', 'no_show'))
);
CREATE INDEX idx_reservations_space ON reservations (space_id);
CREATE INDEX idx_reservations_status ON reservations (status) WHERE status = 'active';
CREATE INDEX idx_reservations_time ON reservations (start_time, end_time) WHERE status = 'active';
CREATE INDEX idx_reservations_tenant ON reservations (tenant_id, status);
CREATE INDEX idx_reservations_user ON reservations (user_id, status);
CREATE INDEX idx_reservations_metadata ON reservations USING gin (metadata);
CREATE TRIGGER update_reservations_updated_at BEFORE UPDATE ON reservations
    FOR EACH ROW EXECUTE FUNCTION update_updated_at();

-- [L0] a different table from V5's: uuid id, fcnt NOT NULL, naive received_at, no dedup key.
CREATE TABLE sensor_readings (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    device_id    uuid NOT NULL REFERENCES sensor_devices (id),
    dev_eui      varchar(16) NOT NULL,
    fcnt         integer NOT NULL,
    occupied     boolean,
    rssi         double precision,
    snr          double precision,
    raw_payload  text,
    received_at  timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_at   timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX idx_sensor_readings_device ON sensor_readings (device_id);
CREATE INDEX idx_sensor_readings_received ON sensor_readings (received_at DESC);

-- [L0] V5's M001+M002 shape only.
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key_hash      varchar(255) NOT NULL,
    key_name      varchar(100),
    last_used_at  timestamptz,
    is_active     boolean DEFAULT true,
    created_at    timestamptz DEFAULT now(),
    tenant_id     uuid,
    CONSTRAINT unique_key_hash UNIQUE (key_hash),
    CONSTRAINT fk_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE
);
CREATE INDEX idx_api_keys_active ON api_keys (is_active) WHERE is_active = true;
CREATE INDEX idx_api_keys_tenant ON api_keys (tenant_id) WHERE is_active = true;

-- [L0] a different shape from V5's; platform-wide, no tenant.
CREATE TABLE orphan_devices (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    dev_eui        varchar(16) NOT NULL,
    first_seen     timestamp NOT NULL,
    last_seen      timestamp NOT NULL,
    message_count  integer DEFAULT 1,
    last_payload   text,
    created_at     timestamp DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT orphan_devices_dev_eui_key UNIQUE (dev_eui)
);

-- [L0] V5's M001 shape, without tenant_id; never written by V6.
CREATE TABLE state_changes (
    id              bigserial PRIMARY KEY,
    space_id        uuid NOT NULL,
    previous_state  varchar(20),
    new_state       varchar(20) NOT NULL,
    source          varchar(50) NOT NULL,
    request_id      varchar(50),
    metadata        jsonb,
    "timestamp"     timestamptz DEFAULT now(),
    CONSTRAINT fk_space FOREIGN KEY (space_id) REFERENCES spaces (id)
);
CREATE INDEX idx_state_changes_space ON state_changes (space_id, "timestamp" DESC);
CREATE INDEX idx_state_changes_timestamp_brin ON state_changes USING brin ("timestamp");

-- [L1 003] created because the L0 dump did not have it.
CREATE TABLE chirpstack_sync (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    entity_type     varchar(50) NOT NULL,
    entity_id       uuid NOT NULL,
    chirpstack_id   varchar(255) NOT NULL,
    sync_status     varchar(50) DEFAULT 'pending',
    sync_direction  varchar(50),
    last_sync_at    timestamp,
    next_sync_at    timestamp,
    local_data      jsonb,
    remote_data     jsonb,
    sync_errors     jsonb DEFAULT '[]'::jsonb,
    created_at      timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at      timestamp DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT unique_chirpstack_entity UNIQUE (entity_type, entity_id)
);
CREATE INDEX idx_chirpstack_sync_status ON chirpstack_sync (sync_status, next_sync_at);

-- [L3] hand-made "with RLS and indexes"; DDL unknown. Columns are those the code uses
-- (v6-schema.md §8.6), typed the way V6's own tables are.
CREATE TABLE downlink_queue (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id     uuid,
    dev_eui       varchar(16) NOT NULL,
    command_type  varchar(50) NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    priority      integer DEFAULT 5,
    confirmed     boolean DEFAULT false,
    status        varchar(20) DEFAULT 'queued',
    sent_at       timestamp,
    fcnt          integer,
    confirmed_at  timestamp,
    retry_count   integer DEFAULT 0,
    last_error    text,
    created_at    timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at    timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX idx_downlink_queue_tenant ON downlink_queue (tenant_id, status);
CREATE INDEX idx_downlink_queue_pending ON downlink_queue (status, priority DESC, created_at)
    WHERE status IN ('queued', 'pending');

-- ---------------------------------------------------------------------------------------------
-- Views [L0]
-- ---------------------------------------------------------------------------------------------

CREATE VIEW site_details AS
SELECT s.id, s.tenant_id, t.name AS tenant_name, s.name, s.timezone, s.location, s.is_active,
       (SELECT count(*) FROM spaces sp WHERE sp.site_id = s.id AND sp.deleted_at IS NULL) AS space_count,
       s.created_at, s.updated_at
FROM sites s JOIN tenants t ON t.id = s.tenant_id;

CREATE VIEW tenant_summary AS
SELECT t.id, t.name, t.slug, t.is_active,
       (SELECT count(*) FROM sites s WHERE s.tenant_id = t.id AND s.is_active) AS site_count,
       (SELECT count(*) FROM spaces sp WHERE sp.tenant_id = t.id AND sp.deleted_at IS NULL) AS space_count,
       (SELECT count(*) FROM user_memberships m WHERE m.tenant_id = t.id AND m.is_active) AS user_count,
       t.created_at
FROM tenants t;

CREATE VIEW user_permissions AS
SELECT u.id AS user_id, u.email, u.name AS user_name, m.tenant_id, t.name AS tenant_name,
       t.slug AS tenant_slug, m.role, m.is_active AS membership_active
FROM users u
JOIN user_memberships m ON m.user_id = u.id
JOIN tenants t ON t.id = m.tenant_id
WHERE u.is_active AND m.is_active AND t.is_active;

-- ---------------------------------------------------------------------------------------------
-- Row-level security [L0 + L1 004]: policies TO parking_user only, USING only, no FORCE.
-- parking_user owns the tables, so the policies never filter it; any other role sees nothing.
-- ---------------------------------------------------------------------------------------------

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sensor_devices', 'display_devices', 'spaces', 'gateways',
                             'reservations', 'downlink_queue']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation_policy ON %I FOR ALL TO parking_user USING ('
            'tenant_id = current_setting(''app.current_tenant_id'', true)::uuid '
            'OR current_setting(''app.is_platform_admin'', true)::boolean)', t);
    END LOOP;
END
$$;

-- L1 004 enables RLS on sites but creates no policy there.
ALTER TABLE sites ENABLE ROW LEVEL SECURITY;
