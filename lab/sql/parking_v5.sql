-- parking_v5: the V5 application database, in its most likely LIVE shape (not a replay of the
-- repo's migration files, several of which fail as committed: v5-schema.md §9).
-- Run inside an empty database, connected as its owner parking_user.
-- Choices are listed one per bullet in lab/SCHEMA_CHOICES.md.
--
-- The file has two parts separated by the marker line "-- @legacy-rows". lab/seed.py loads the
-- rows that predate migrations 008/011 (lowercase and malformed EUIs) between the two parts, as
-- history did; applied in one go (psql -f) the file gives the same schema.

CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- ---------------------------------------------------------------------------------------------
-- Functions
-- ---------------------------------------------------------------------------------------------

-- M001: sets updated_at on UPDATE.
CREATE FUNCTION update_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$;

-- M003 (replaces M002's sync_space_tenant_id): validates the site and copies its tenant.
CREATE FUNCTION spaces_sync_tenant_id() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    site_tenant uuid;
    site_active boolean;
BEGIN
    IF NEW.site_id IS NULL THEN
        RAISE EXCEPTION 'spaces.site_id cannot be NULL';
    END IF;
    SELECT tenant_id, is_active INTO site_tenant, site_active FROM sites WHERE id = NEW.site_id;
    IF site_tenant IS NULL THEN
        RAISE EXCEPTION 'site % does not exist', NEW.site_id;
    END IF;
    IF site_active IS NOT TRUE THEN
        RAISE EXCEPTION 'site % is not active', NEW.site_id;
    END IF;
    IF NEW.tenant_id IS NOT NULL AND NEW.tenant_id <> site_tenant THEN
        RAISE EXCEPTION 'space tenant % does not match site tenant %', NEW.tenant_id, site_tenant;
    END IF;
    NEW.tenant_id = site_tenant;
    RETURN NEW;
END;
$$;

-- M008: copy tenant_id from the referenced space.
CREATE FUNCTION sensor_readings_sync_tenant_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.space_id IS NOT NULL THEN
        SELECT tenant_id INTO NEW.tenant_id FROM spaces WHERE id = NEW.space_id;
    END IF;
    RETURN NEW;
END;
$$;

CREATE FUNCTION state_changes_sync_tenant_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT tenant_id INTO NEW.tenant_id FROM spaces WHERE id = NEW.space_id;
    RETURN NEW;
END;
$$;

CREATE FUNCTION actuations_sync_tenant_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT tenant_id INTO NEW.tenant_id FROM spaces WHERE id = NEW.space_id;
    RETURN NEW;
END;
$$;

-- M008's buggy upper-casing function. Its trg_*_eui_upper triggers were dropped by hand (with
-- them every write to spaces fails, v5-schema.md §9); the function itself is left behind.
CREATE FUNCTION enforce_eui_upper() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.dev_eui = upper(NEW.dev_eui);
    RETURN NEW;
END;
$$;

-- M011: table-aware upper-casing of EUI columns.
CREATE FUNCTION enforce_eui_uppercase() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'spaces' THEN
        NEW.sensor_eui = upper(NEW.sensor_eui);
        NEW.display_eui = upper(NEW.display_eui);
    ELSIF TG_TABLE_NAME IN ('sensor_devices', 'display_devices') THEN
        NEW.dev_eui = upper(NEW.dev_eui);
    ELSIF TG_TABLE_NAME = 'sensor_readings' THEN
        NEW.device_eui = upper(NEW.device_eui);
    ELSIF TG_TABLE_NAME = 'actuations' THEN
        NEW.display_eui = upper(NEW.display_eui);
    ELSIF TG_TABLE_NAME = 'gateways' THEN
        NEW.gateway_id = upper(NEW.gateway_id);
    END IF;
    RETURN NEW;
END;
$$;

-- M007: audit_log is append-only.
CREATE FUNCTION prevent_audit_log_modification() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% rejected)', TG_OP;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Multi-tenancy tables (M002, M003, M008)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        varchar(255) NOT NULL,
    slug        varchar(100) NOT NULL,
    metadata    jsonb DEFAULT '{}'::jsonb,
    settings    jsonb DEFAULT '{}'::jsonb,
    is_active   boolean DEFAULT true,
    created_at  timestamptz DEFAULT now(),
    updated_at  timestamptz DEFAULT now(),
    CONSTRAINT tenants_slug_key UNIQUE (slug),
    CONSTRAINT valid_slug CHECK (slug ~ '^[a-z0-9-]+$')
);
CREATE INDEX idx_tenants_slug ON tenants (slug) WHERE is_active = true;
CREATE INDEX idx_tenants_active ON tenants (is_active) WHERE is_active = true;
CREATE TRIGGER update_tenants_updated_at BEFORE UPDATE ON tenants
    FOR EACH ROW EXECUTE FUNCTION update_updated_at();

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
    CONSTRAINT fk_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT unique_tenant_site_name UNIQUE (tenant_id, name)
);
CREATE INDEX idx_sites_tenant ON sites (tenant_id) WHERE is_active = true;
CREATE INDEX idx_sites_tenant_active ON sites (tenant_id, is_active);
CREATE TRIGGER update_sites_updated_at BEFORE UPDATE ON sites
    FOR EACH ROW EXECUTE FUNCTION update_updated_at();

CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email           varchar(255) NOT NULL,
    name            varchar(255) NOT NULL,
    password_hash   varchar(255) NOT NULL,
    metadata        jsonb DEFAULT '{}'::jsonb,
    is_active       boolean DEFAULT true,
    email_verified  boolean DEFAULT false,
    created_at      timestamptz DEFAULT now(),
    updated_at      timestamptz DEFAULT now(),
    last_login_at   timestamptz
);
-- M008 replaced the plain UNIQUE (users_email_key) by a case-insensitive unique index.
CREATE UNIQUE INDEX uq_users_email_ci ON users (lower(email));
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
    -- Replaced by hand on the live server to admit platform_admin (v5-schema.md §3.4).
    CONSTRAINT valid_role CHECK (role IN ('owner', 'admin', 'operator', 'viewer', 'platform_admin'))
);
CREATE INDEX idx_user_memberships_user ON user_memberships (user_id) WHERE is_active = true;
CREATE INDEX idx_user_memberships_tenant ON user_memberships (tenant_id) WHERE is_active = true;
CREATE INDEX idx_user_memberships_role ON user_memberships (tenant_id, role) WHERE is_active = true;
CREATE INDEX idx_user_memberships_user_active ON user_memberships (user_id, tenant_id)
    WHERE is_active = true;
CREATE INDEX idx_user_memberships_tenant_active ON user_memberships (tenant_id, role, created_at DESC)
    WHERE is_active = true;
CREATE TRIGGER update_user_memberships_updated_at BEFORE UPDATE ON user_memberships
    FOR EACH ROW EXECUTE FUNCTION update_updated_at();

-- api_keys: M001 + M002_add_api_key_admin + M002 + M003 + M007. revoked_at is absent (M007's
-- block aborted), revoked_by exists (v5-schema.md §3.5, §9).
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key_hash      varchar(255) NOT NULL,
    key_name      varchar(100),
    last_used_at  timestamptz,
    is_active     boolean DEFAULT true,
    created_at    timestamptz DEFAULT now(),
    is_admin      boolean DEFAULT false,
    tenant_id     uuid,
    scopes        text[] NOT NULL DEFAULT ARRAY['spaces:read', 'devices:read'],
    revoked_by    uuid,
    CONSTRAINT unique_key_hash UNIQUE (key_hash),
    CONSTRAINT fk_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT api_keys_revoked_by_fkey FOREIGN KEY (revoked_by) REFERENCES users (id)
        ON DELETE SET NULL
);
CREATE INDEX idx_api_keys_active ON api_keys (is_active) WHERE is_active = true;
CREATE INDEX idx_api_keys_admin ON api_keys (is_admin) WHERE is_admin = true;
CREATE INDEX idx_api_keys_tenant ON api_keys (tenant_id) WHERE is_active = true;
CREATE INDEX idx_api_keys_scopes ON api_keys USING gin (scopes);
CREATE INDEX idx_api_keys_last_used ON api_keys (last_used_at DESC);

CREATE TABLE webhook_secrets (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    secret_hash  varchar(255) NOT NULL,
    algorithm    varchar(20) DEFAULT 'HS256',
    is_active    boolean DEFAULT true,
    created_at   timestamptz DEFAULT now()
);
CREATE INDEX idx_webhook_secrets_tenant ON webhook_secrets (tenant_id) WHERE is_active = true;

-- ---------------------------------------------------------------------------------------------
-- Device registries: created by no migration file; shape from the docs (v5-schema.md §4.7).
-- device_name is not in the docs but the assign endpoints insert it, so the live table has it.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE device_types (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    type_code                varchar(50) NOT NULL UNIQUE,
    category                 varchar(20) NOT NULL CHECK (category IN ('sensor', 'display')),
    name                     varchar(100) NOT NULL,
    manufacturer             varchar(100),
    handler_class            varchar(100),
    default_config           jsonb DEFAULT '{}'::jsonb,
    capabilities             jsonb DEFAULT '{}'::jsonb,
    enabled                  boolean DEFAULT true,
    status                   varchar(20) DEFAULT 'confirmed'
                             CHECK (status IN ('orphan', 'confirmed', 'disabled')),
    chirpstack_profile_name  varchar(100),
    chirpstack_profile_id    uuid,
    sample_payload           jsonb,
    sample_raw_payload       jsonb,
    confirmed_at             timestamptz,
    confirmed_by             varchar(255),
    notes                    text,
    created_at               timestamptz DEFAULT now(),
    updated_at               timestamptz DEFAULT now()
);

CREATE TABLE sensor_devices (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    dev_eui          varchar(16) NOT NULL UNIQUE,
    device_type      varchar(50) NOT NULL,
    device_type_id   uuid REFERENCES device_types (id),
    device_model     varchar(100),
    manufacturer     varchar(100),
    payload_decoder  varchar(100),
    capabilities     jsonb DEFAULT '{}'::jsonb,
    status           varchar(30) DEFAULT 'orphan'
                     CHECK (status IN ('orphan', 'active', 'inactive', 'decommissioned')),
    enabled          boolean DEFAULT true,
    last_seen_at     timestamptz,
    created_at       timestamptz DEFAULT now(),
    updated_at       timestamptz DEFAULT now(),
    device_name      varchar(255)
);
CREATE INDEX idx_sensor_devices_deveui ON sensor_devices (dev_eui, enabled) WHERE enabled = true;
CREATE INDEX idx_sensor_devices_status ON sensor_devices (status, created_at);
CREATE TRIGGER update_sensor_devices_updated_at BEFORE UPDATE ON sensor_devices
    FOR EACH ROW EXECUTE FUNCTION update_updated_at();

CREATE TABLE display_devices (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    dev_eui              varchar(16) NOT NULL UNIQUE,
    device_type          varchar(50) NOT NULL,
    device_type_id       uuid REFERENCES device_types (id),
    device_model         varchar(100),
    manufacturer         varchar(100),
    display_codes        jsonb NOT NULL,
    fport                integer DEFAULT 1,
    confirmed_downlinks  boolean DEFAULT false,
    status               varchar(30) DEFAULT 'orphan'
                         CHECK (status IN ('orphan', 'active', 'inactive', 'decommissioned')),
    enabled              boolean DEFAULT true,
    last_seen_at         timestamptz,
    created_at           timestamptz DEFAULT now(),
    updated_at           timestamptz DEFAULT now(),
    device_name          varchar(255)
);
CREATE INDEX idx_display_devices_deveui ON display_devices (dev_eui, enabled) WHERE enabled = true;
CREATE INDEX idx_display_devices_status ON display_devices (status, created_at);
CREATE TRIGGER update_display_devices_updated_at BEFORE UPDATE ON display_devices
    FOR EACH ROW EXECUTE FUNCTION update_updated_at();

-- ---------------------------------------------------------------------------------------------
-- Core tables (M001 + later)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE spaces (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name               varchar(100) NOT NULL,
    code               varchar(20) NOT NULL,
    building           varchar(100),
    floor              varchar(20),
    zone               varchar(50),
    gps_latitude       numeric(10, 8),
    gps_longitude      numeric(11, 8),
    sensor_eui         varchar(16),
    display_eui        varchar(16),
    state              varchar(20) NOT NULL DEFAULT 'FREE',
    metadata           jsonb,
    created_at         timestamptz DEFAULT now(),
    updated_at         timestamptz DEFAULT now(),
    deleted_at         timestamptz,
    site_id            uuid,
    tenant_id          uuid,
    sensor_device_id   uuid REFERENCES sensor_devices (id),
    display_device_id  uuid REFERENCES display_devices (id),
    -- Global, soft-deleted rows included (M001, never dropped).
    CONSTRAINT unique_sensor_eui UNIQUE (sensor_eui),
    CONSTRAINT valid_state CHECK (state IN ('FREE', 'OCCUPIED', 'RESERVED', 'MAINTENANCE')),
    CONSTRAINT valid_gps CHECK (
        (gps_latitude IS NULL AND gps_longitude IS NULL)
        OR (gps_latitude BETWEEN -90 AND 90 AND gps_longitude BETWEEN -180 AND 180)),
    CONSTRAINT fk_site FOREIGN KEY (site_id) REFERENCES sites (id) ON DELETE RESTRICT
);
CREATE UNIQUE INDEX unique_tenant_site_space_code ON spaces (tenant_id, site_id, code)
    WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX uq_spaces_display_eui ON spaces (display_eui)
    WHERE display_eui IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX idx_spaces_state ON spaces (state) WHERE deleted_at IS NULL;
CREATE INDEX idx_spaces_sensor ON spaces (sensor_eui) WHERE deleted_at IS NULL;
CREATE INDEX idx_spaces_building ON spaces (building) WHERE deleted_at IS NULL;
CREATE INDEX idx_spaces_location ON spaces (building, floor, zone) WHERE deleted_at IS NULL;
CREATE INDEX idx_spaces_site ON spaces (site_id) WHERE deleted_at IS NULL;
CREATE INDEX idx_spaces_tenant ON spaces (tenant_id) WHERE deleted_at IS NULL;
CREATE INDEX idx_spaces_tenant_site ON spaces (tenant_id, site_id, code) WHERE deleted_at IS NULL;
CREATE INDEX idx_spaces_sensor_eui ON spaces (sensor_eui)
    WHERE sensor_eui IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX idx_spaces_display_eui ON spaces (display_eui)
    WHERE display_eui IS NOT NULL AND deleted_at IS NULL;
CREATE TRIGGER update_spaces_updated_at BEFORE UPDATE ON spaces
    FOR EACH ROW EXECUTE FUNCTION update_updated_at();
CREATE TRIGGER trg_spaces_sync_tenant_id BEFORE INSERT OR UPDATE OF site_id, tenant_id ON spaces
    FOR EACH ROW EXECUTE FUNCTION spaces_sync_tenant_id();

CREATE TABLE reservations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    space_id    uuid NOT NULL,
    start_time  timestamptz NOT NULL,
    end_time    timestamptz NOT NULL,
    user_email  varchar(255),
    user_phone  varchar(20),
    status      varchar(20) NOT NULL DEFAULT 'active',
    metadata    jsonb,
    created_at  timestamptz DEFAULT now(),
    updated_at  timestamptz DEFAULT now(),
    request_id  uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL,
    CONSTRAINT fk_space FOREIGN KEY (space_id) REFERENCES spaces (id),
    CONSTRAINT fk_reservation_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT valid_times CHECK (end_time > start_time),
    CONSTRAINT valid_duration CHECK (end_time - start_time <= interval '24 hours'),
    CONSTRAINT valid_reservation_status CHECK (status IN (
        'pending', 'confirmed', 'cancelled', 'expired', 'active', 'completed', 'no_show')),
    -- M008 hotfix: no two pending/confirmed reservations of a space overlap on [start, end).
    CONSTRAINT uq_reservations_no_overlap EXCLUDE USING gist (
        space_id WITH =, tstzrange(start_time, end_time, '[)') WITH &&)
        WHERE (status IN ('pending', 'confirmed'))
);
CREATE UNIQUE INDEX idx_reservations_request_id ON reservations (request_id);
CREATE UNIQUE INDEX uq_reservations_request_id ON reservations (tenant_id, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX idx_reservations_space ON reservations (space_id);
CREATE INDEX idx_reservations_status ON reservations (status) WHERE status = 'active';
CREATE INDEX idx_reservations_time ON reservations (start_time, end_time) WHERE status = 'active';
CREATE INDEX idx_reservations_tenant_space ON reservations (tenant_id, space_id);
CREATE INDEX idx_reservations_expiry ON reservations (end_time, status)
    WHERE status IN ('pending', 'confirmed');
CREATE INDEX idx_reservations_tenant_status_time ON reservations (tenant_id, status, start_time);
CREATE INDEX idx_reservations_space_overlap ON reservations (space_id, start_time, end_time)
    WHERE status IN ('pending', 'confirmed');
CREATE INDEX idx_reservations_user_email ON reservations (user_email);
CREATE TRIGGER update_reservations_updated_at BEFORE UPDATE ON reservations
    FOR EACH ROW EXECUTE FUNCTION update_updated_at();

CREATE TABLE sensor_readings (
    id               bigserial PRIMARY KEY,
    device_eui       varchar(16) NOT NULL,
    space_id         uuid,
    occupancy_state  varchar(20),
    battery          numeric(3, 2),
    temperature      numeric(4, 1),
    rssi             integer,
    snr              numeric(4, 1),
    "timestamp"      timestamptz DEFAULT now(),
    tenant_id        uuid DEFAULT '00000000-0000-0000-0000-000000000001',
    fcnt             integer,
    CONSTRAINT fk_space FOREIGN KEY (space_id) REFERENCES spaces (id)
);
CREATE UNIQUE INDEX idx_sensor_readings_dedup ON sensor_readings (tenant_id, device_eui, fcnt)
    WHERE fcnt IS NOT NULL;
CREATE UNIQUE INDEX uq_readings_device_fcnt ON sensor_readings (tenant_id, device_eui, fcnt)
    WHERE fcnt IS NOT NULL;
CREATE INDEX idx_sensor_readings_device_time ON sensor_readings (device_eui, "timestamp" DESC);
CREATE INDEX idx_sensor_readings_space_time ON sensor_readings (space_id, "timestamp" DESC)
    WHERE space_id IS NOT NULL;
CREATE INDEX idx_sensor_readings_timestamp_brin ON sensor_readings USING brin ("timestamp");
CREATE INDEX idx_sensor_readings_tenant_time ON sensor_readings (tenant_id, "timestamp" DESC);
CREATE INDEX idx_readings_tenant_timestamp ON sensor_readings (tenant_id, "timestamp" DESC)
    WHERE tenant_id IS NOT NULL;
CREATE TRIGGER trg_sensor_readings_sync_tenant BEFORE INSERT OR UPDATE OF space_id ON sensor_readings
    FOR EACH ROW EXECUTE FUNCTION sensor_readings_sync_tenant_id();

CREATE TABLE state_changes (
    id              bigserial PRIMARY KEY,
    space_id        uuid NOT NULL,
    previous_state  varchar(20),
    new_state       varchar(20) NOT NULL,
    source          varchar(50) NOT NULL,
    request_id      varchar(50),
    metadata        jsonb,
    "timestamp"     timestamptz DEFAULT now(),
    tenant_id       uuid,
    CONSTRAINT fk_space FOREIGN KEY (space_id) REFERENCES spaces (id)
);
CREATE INDEX idx_state_changes_space ON state_changes (space_id, "timestamp" DESC);
CREATE INDEX idx_state_changes_space_time ON state_changes (space_id, "timestamp" DESC);
CREATE INDEX idx_state_changes_timestamp_brin ON state_changes USING brin ("timestamp");
CREATE INDEX idx_state_changes_tenant_time ON state_changes (tenant_id, "timestamp" DESC);
CREATE INDEX idx_state_changes_tenant_timestamp ON state_changes (tenant_id, "timestamp" DESC)
    WHERE tenant_id IS NOT NULL;
CREATE TRIGGER trg_state_changes_sync_tenant BEFORE INSERT OR UPDATE OF space_id ON state_changes
    FOR EACH ROW EXECUTE FUNCTION state_changes_sync_tenant_id();

-- M004 shape (the code matches it; the docs' version does not).
CREATE TABLE orphan_devices (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    dev_eui               varchar(16) NOT NULL,
    first_seen            timestamptz DEFAULT now(),
    last_seen             timestamptz DEFAULT now(),
    uplink_count          integer DEFAULT 1,
    last_payload          bytea,
    last_rssi             integer,
    last_snr              numeric(4, 1),
    assigned_to_space_id  uuid,
    assigned_at           timestamptz,
    CONSTRAINT unique_orphan_deveui UNIQUE (dev_eui)
);
CREATE INDEX idx_orphan_devices_last_seen ON orphan_devices (last_seen DESC);

-- ---------------------------------------------------------------------------------------------
-- Display state machine (M006). display_policies fails as committed; the live system uses it,
-- so it was created by hand, in the documented shape.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE display_policies (
    id                           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id                    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                         varchar(100) NOT NULL,
    description                  text,
    is_active                    boolean NOT NULL DEFAULT true,
    reserved_soon_threshold_sec  integer NOT NULL DEFAULT 900,
    sensor_unknown_timeout_sec   integer NOT NULL DEFAULT 60,
    debounce_window_sec          integer NOT NULL DEFAULT 10,
    occupied_color               varchar(20) NOT NULL DEFAULT 'FF0000',
    free_color                   varchar(20) NOT NULL DEFAULT '00FF00',
    reserved_color               varchar(20) NOT NULL DEFAULT 'FFA500',
    reserved_soon_color          varchar(20) NOT NULL DEFAULT 'FFFF00',
    blocked_color                varchar(20) NOT NULL DEFAULT '808080',
    out_of_service_color         varchar(20) NOT NULL DEFAULT '800080',
    blink_reserved_soon          boolean NOT NULL DEFAULT false,
    blink_pattern_ms             integer DEFAULT 500,
    allow_sensor_override        boolean NOT NULL DEFAULT true,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    updated_at                   timestamptz,
    created_by                   uuid REFERENCES users (id)
);
CREATE UNIQUE INDEX uq_display_policies_active_per_tenant ON display_policies (tenant_id)
    WHERE is_active = true;
CREATE INDEX idx_display_policies_tenant ON display_policies (tenant_id, is_active);

CREATE TABLE sensor_debounce_state (
    space_id                 uuid PRIMARY KEY REFERENCES spaces (id) ON DELETE CASCADE,
    last_sensor_state        varchar(20),
    last_sensor_timestamp    timestamptz,
    last_sensor_rssi         integer,
    last_sensor_snr          numeric,
    pending_sensor_state     varchar(20),
    pending_since            timestamptz,
    pending_count            integer DEFAULT 0,
    stable_sensor_state      varchar(20),
    stable_since             timestamptz,
    last_display_state       varchar(20),
    last_display_color       varchar(20),
    last_display_blink       boolean DEFAULT false,
    last_display_updated_at  timestamptz,
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_sensor_debounce_pending ON sensor_debounce_state (pending_sensor_state, pending_since)
    WHERE pending_sensor_state IS NOT NULL;

CREATE TABLE space_admin_overrides (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    space_id       uuid NOT NULL REFERENCES spaces (id) ON DELETE CASCADE,
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    override_type  varchar(20) NOT NULL CHECK (override_type IN ('blocked', 'out_of_service')),
    start_time     timestamptz NOT NULL DEFAULT now(),
    end_time       timestamptz,
    reason         text,
    notes          text,
    created_by     uuid REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    is_active      boolean NOT NULL DEFAULT true
);
CREATE INDEX idx_space_admin_overrides_space ON space_admin_overrides (space_id, start_time, end_time)
    WHERE is_active = true;
CREATE INDEX idx_space_admin_overrides_tenant ON space_admin_overrides (tenant_id)
    WHERE is_active = true;

-- ---------------------------------------------------------------------------------------------
-- Security, audit and tokens (M007, M010)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE audit_log (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at     timestamptz NOT NULL DEFAULT now(),
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id        uuid REFERENCES users (id) ON DELETE SET NULL,
    api_key_id     uuid REFERENCES api_keys (id) ON DELETE SET NULL,
    actor_type     varchar(20) NOT NULL CHECK (actor_type IN ('user', 'api_key', 'system', 'webhook')),
    actor_name     varchar(255),
    action         varchar(100) NOT NULL,
    resource_type  varchar(50) NOT NULL,
    resource_id    uuid,
    ip_address     inet,
    user_agent     text,
    request_id     varchar(36),
    old_values     jsonb,
    new_values     jsonb,
    metadata       jsonb,
    success        boolean NOT NULL DEFAULT true,
    error_message  text
);
CREATE INDEX idx_audit_log_tenant_created ON audit_log (tenant_id, created_at DESC);
CREATE INDEX idx_audit_log_user ON audit_log (user_id, created_at DESC) WHERE user_id IS NOT NULL;
CREATE INDEX idx_audit_log_action ON audit_log (action, created_at DESC);
CREATE INDEX idx_audit_log_resource ON audit_log (resource_type, resource_id);
CREATE INDEX idx_audit_log_request ON audit_log (request_id) WHERE request_id IS NOT NULL;
CREATE TRIGGER audit_log_immutable BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION prevent_audit_log_modification();

-- M007: inserts one audit row and returns its id.
CREATE FUNCTION log_audit_event(
    p_tenant_id uuid, p_user_id uuid, p_api_key_id uuid, p_actor_type varchar, p_actor_name varchar,
    p_action varchar, p_resource_type varchar, p_resource_id uuid,
    p_old_values jsonb DEFAULT NULL, p_new_values jsonb DEFAULT NULL, p_metadata jsonb DEFAULT NULL,
    p_ip_address inet DEFAULT NULL, p_user_agent text DEFAULT NULL, p_request_id varchar DEFAULT NULL,
    p_success boolean DEFAULT true, p_error_message text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    new_id uuid;
BEGIN
    INSERT INTO audit_log (tenant_id, user_id, api_key_id, actor_type, actor_name, action,
                           resource_type, resource_id, old_values, new_values, metadata,
                           ip_address, user_agent, request_id, success, error_message)
    VALUES (p_tenant_id, p_user_id, p_api_key_id, p_actor_type, p_actor_name, p_action,
            p_resource_type, p_resource_id, p_old_values, p_new_values, p_metadata,
            p_ip_address, p_user_agent, p_request_id, p_success, p_error_message)
    RETURNING id INTO new_id;
    RETURN new_id;
END;
$$;

-- M010 shape (serial id, no tenant_id): the code inserts without tenant_id (v5-schema.md §5).
CREATE TABLE refresh_tokens (
    id                  serial PRIMARY KEY,
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash          varchar(64) NOT NULL UNIQUE,
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    last_used_at        timestamptz,
    revoked_at          timestamptz,
    device_fingerprint  varchar(255),
    ip_address          inet,
    user_agent          text
);
CREATE INDEX idx_refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX idx_refresh_tokens_expires ON refresh_tokens (expires_at) WHERE revoked_at IS NULL;

-- actuations: no migration creates it; docs shape + M008 (display_eui rename, tenant_id).
CREATE TABLE actuations (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    space_id           uuid NOT NULL REFERENCES spaces (id),
    trigger_type       varchar(30) NOT NULL CHECK (trigger_type IN (
                           'sensor_uplink', 'api_reservation', 'manual_override', 'system_cleanup',
                           'reservation_expired')),
    trigger_source     varchar(100),
    previous_state     varchar(20),
    new_state          varchar(20) NOT NULL,
    display_eui        varchar(16) NOT NULL,
    display_device_id  uuid REFERENCES display_devices (id),
    display_code       varchar(20) NOT NULL,
    fport              integer NOT NULL,
    confirmed          boolean DEFAULT false,
    downlink_sent      boolean DEFAULT false,
    downlink_queue_id  varchar(100),
    downlink_error     text,
    response_time_ms   integer,
    retry_count        integer DEFAULT 0,
    created_at         timestamptz DEFAULT now(),
    sent_at            timestamptz,
    confirmed_at       timestamptz,
    tenant_id          uuid
);
CREATE INDEX idx_actuations_space ON actuations (space_id, created_at DESC);
CREATE INDEX idx_actuations_tenant ON actuations (tenant_id, created_at DESC);
CREATE INDEX idx_actuations_pending ON actuations (created_at) WHERE downlink_sent = false;
CREATE TRIGGER trg_actuations_sync_tenant BEFORE INSERT OR UPDATE OF space_id ON actuations
    FOR EACH ROW EXECUTE FUNCTION actuations_sync_tenant_id();

-- ---------------------------------------------------------------------------------------------
-- Functions that read tables (M005, M006)
-- ---------------------------------------------------------------------------------------------

-- M005: pending/confirmed reservations past their end become 'expired'.
CREATE FUNCTION expire_old_reservations() RETURNS TABLE (expired_count integer, expired_ids uuid[])
LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
BEGIN
    WITH expired AS (
        UPDATE reservations SET status = 'expired'
        WHERE status IN ('pending', 'confirmed') AND end_time < now()
        RETURNING id)
    SELECT array_agg(id) INTO ids FROM expired;
    RETURN QUERY SELECT coalesce(array_length(ids, 1), 0), coalesce(ids, ARRAY[]::uuid[]);
END;
$$;

-- M006: display state priority ladder.
CREATE FUNCTION compute_display_state(p_space_id uuid, p_tenant_id uuid)
RETURNS TABLE (display_state varchar, color varchar, blink boolean, reason varchar)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    pol display_policies%ROWTYPE;
    dbs sensor_debounce_state%ROWTYPE;
    ovr varchar;
BEGIN
    SELECT * INTO pol FROM display_policies WHERE tenant_id = p_tenant_id AND is_active LIMIT 1;
    IF NOT FOUND THEN
        pol.occupied_color := 'FF0000'; pol.free_color := '00FF00';
        pol.reserved_color := 'FFA500'; pol.reserved_soon_color := 'FFFF00';
        pol.blocked_color := '808080'; pol.out_of_service_color := '800080';
        pol.reserved_soon_threshold_sec := 900; pol.blink_reserved_soon := false;
    END IF;

    SELECT override_type INTO ovr FROM space_admin_overrides
    WHERE space_id = p_space_id AND is_active AND start_time <= now()
      AND (end_time IS NULL OR end_time > now())
    ORDER BY (override_type = 'out_of_service') DESC LIMIT 1;
    IF ovr = 'out_of_service' THEN
        RETURN QUERY SELECT 'MAINTENANCE'::varchar, pol.out_of_service_color, false, 'out_of_service'::varchar;
        RETURN;
    ELSIF ovr = 'blocked' THEN
        RETURN QUERY SELECT 'MAINTENANCE'::varchar, pol.blocked_color, false, 'blocked'::varchar;
        RETURN;
    END IF;

    IF EXISTS (SELECT 1 FROM reservations WHERE space_id = p_space_id
               AND status IN ('pending', 'confirmed') AND start_time <= now() AND end_time > now()) THEN
        RETURN QUERY SELECT 'RESERVED'::varchar, pol.reserved_color, false, 'reservation_active'::varchar;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM reservations WHERE space_id = p_space_id
               AND status IN ('pending', 'confirmed') AND start_time > now()
               AND start_time <= now() + make_interval(secs => pol.reserved_soon_threshold_sec)) THEN
        RETURN QUERY SELECT 'RESERVED'::varchar, pol.reserved_soon_color, pol.blink_reserved_soon,
                            'reservation_soon'::varchar;
        RETURN;
    END IF;

    SELECT * INTO dbs FROM sensor_debounce_state WHERE space_id = p_space_id;
    IF FOUND AND dbs.stable_sensor_state = 'occupied' THEN
        RETURN QUERY SELECT 'OCCUPIED'::varchar, pol.occupied_color, false, 'sensor'::varchar;
        RETURN;
    ELSIF FOUND AND dbs.stable_sensor_state = 'vacant' THEN
        RETURN QUERY SELECT 'FREE'::varchar, pol.free_color, false, 'sensor'::varchar;
        RETURN;
    ELSIF FOUND AND dbs.last_display_state IS NOT NULL THEN
        RETURN QUERY SELECT dbs.last_display_state, coalesce(dbs.last_display_color, pol.free_color),
                            false, 'last_stable'::varchar;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'FREE'::varchar, pol.free_color, false, 'default'::varchar;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Views (M002, M003, M004, M005, M006, M008 hotfix)
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
       (SELECT count(*) FROM spaces sp WHERE sp.tenant_id = t.id AND sp.deleted_at IS NULL
          AND sp.state = 'FREE') AS free_spaces,
       (SELECT count(*) FROM spaces sp WHERE sp.tenant_id = t.id AND sp.deleted_at IS NULL
          AND sp.state = 'OCCUPIED') AS occupied_spaces,
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

-- A plain view (the docs call it materialized).
CREATE VIEW v_spaces AS
SELECT sp.id, sp.tenant_id, sp.site_id, s.name AS site_name, sp.name, sp.code, sp.building, sp.floor,
       sp.zone, sp.sensor_eui, sp.display_eui, sp.state, sp.created_at, sp.updated_at
FROM spaces sp JOIN sites s ON s.id = sp.site_id
WHERE sp.deleted_at IS NULL;

CREATE VIEW orphan_summary AS
SELECT count(*) AS orphan_count, min(first_seen) AS oldest_first_seen, max(last_seen) AS newest_last_seen,
       sum(uplink_count) AS total_uplinks
FROM orphan_devices WHERE assigned_to_space_id IS NULL;

CREATE VIEW reservations_to_expire AS
SELECT id, tenant_id, space_id, status, end_time
FROM reservations WHERE status IN ('pending', 'confirmed') AND end_time < now();

CREATE VIEW active_reservations_by_tenant AS
SELECT tenant_id, count(*) AS active_count
FROM reservations WHERE status IN ('pending', 'confirmed') AND end_time > now()
GROUP BY tenant_id;

CREATE VIEW v_space_display_states AS
SELECT sp.id AS space_id, sp.tenant_id, sp.code, d.display_state, d.color, d.blink, d.reason
FROM spaces sp, LATERAL compute_display_state(sp.id, sp.tenant_id) d
WHERE sp.deleted_at IS NULL;

CREATE VIEW v_orphan_devices AS
SELECT 'sensor'::text AS device_category, id, dev_eui, device_type, status, last_seen_at, created_at
FROM sensor_devices WHERE status = 'orphan'
UNION ALL
SELECT 'display'::text, id, dev_eui, device_type, status, last_seen_at, created_at
FROM display_devices WHERE status = 'orphan';

-- @legacy-rows
-- Everything below was added by migrations 008/011 (and the hand repairs) after the legacy rows
-- existed. lab/seed.py loads those rows at this point.

-- M008 hotfix: EUIs on spaces are 16 uppercase hex digits (validated: M011 upper-cased them).
ALTER TABLE spaces ADD CONSTRAINT chk_spaces_eui_hex CHECK (
    (sensor_eui IS NULL OR sensor_eui ~ '^[0-9A-F]{16}$')
    AND (display_eui IS NULL OR display_eui ~ '^[0-9A-F]{16}$'));

-- Registry CHECKs kept NOT VALID: legacy registry rows (lowercase, malformed, empty) predate them.
ALTER TABLE sensor_devices ADD CONSTRAINT chk_sensor_dev_eui_hex
    CHECK (dev_eui ~ '^[0-9A-F]{16}$') NOT VALID;
ALTER TABLE display_devices ADD CONSTRAINT chk_display_dev_eui_hex
    CHECK (dev_eui ~ '^[0-9A-F]{16}$') NOT VALID;

-- M011 upper-casing triggers (M008's trg_*_eui_upper were dropped by hand).
CREATE TRIGGER trigger_spaces_eui_uppercase BEFORE INSERT OR UPDATE ON spaces
    FOR EACH ROW EXECUTE FUNCTION enforce_eui_uppercase();
CREATE TRIGGER trigger_sensor_devices_eui_uppercase BEFORE INSERT OR UPDATE ON sensor_devices
    FOR EACH ROW EXECUTE FUNCTION enforce_eui_uppercase();
CREATE TRIGGER trigger_display_devices_eui_uppercase BEFORE INSERT OR UPDATE ON display_devices
    FOR EACH ROW EXECUTE FUNCTION enforce_eui_uppercase();
CREATE TRIGGER trigger_sensor_readings_eui_uppercase BEFORE INSERT OR UPDATE ON sensor_readings
    FOR EACH ROW EXECUTE FUNCTION enforce_eui_uppercase();
CREATE TRIGGER trigger_actuations_eui_uppercase BEFORE INSERT OR UPDATE ON actuations
    FOR EACH ROW EXECUTE FUNCTION enforce_eui_uppercase();

-- M008 row-level security: setting app.current_tenant, policies for PUBLIC, ENABLE + FORCE on
-- ten tables. display_policies has none (its M008 block failed with the table).
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY p_tenants_isolation ON tenants FOR ALL
    USING (id = current_setting('app.current_tenant', true)::uuid)
    WITH CHECK (id = current_setting('app.current_tenant', true)::uuid);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sites', 'spaces', 'reservations', 'api_keys', 'webhook_secrets',
                             'sensor_readings', 'audit_log', 'state_changes', 'actuations']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY %I ON %I FOR ALL '
            'USING (tenant_id = current_setting(''app.current_tenant'', true)::uuid) '
            'WITH CHECK (tenant_id = current_setting(''app.current_tenant'', true)::uuid)',
            'p_' || t || '_tenant', t);
    END LOOP;
END
$$;

-- M009: grants for the application role parking_app (created by lab/sql/roles.sql).
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO parking_app', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO parking_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO parking_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO parking_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO parking_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO parking_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO parking_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO parking_app;
