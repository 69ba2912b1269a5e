#!/bin/bash
# As production: one user in a password file, no anonymous access,
# listener 1883 (MQTT) and 9001 (MQTT over websockets), no TLS.
set -euo pipefail
: "${MQTT_USER:?MQTT_USER must be set}"
: "${MQTT_PASSWORD:?MQTT_PASSWORD must be set}"
mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log
mosquitto_passwd -c -b /mosquitto/config/passwd "$MQTT_USER" "$MQTT_PASSWORD"
cat >/mosquitto/config/mosquitto.conf <<CONF
per_listener_settings false
allow_anonymous false
password_file /mosquitto/config/passwd
listener 1883
listener 9001
protocol websockets
log_dest stdout
CONF
chown -R mosquitto:mosquitto /mosquitto
exec mosquitto -c /mosquitto/config/mosquitto.conf
