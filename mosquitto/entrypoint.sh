#!/bin/sh
# Build the password file from the environment, then run Mosquitto.
# MQTT_USERS is a space-separated list of NAME=PASSWORD pairs (device ids and service users).
set -eu
: "${MQTT_USERS:?set MQTT_USERS to 'user=password ...' (see .env.example)}"
passwd=/mosquitto/data/passwd
umask 077
: > "$passwd"
for pair in $MQTT_USERS; do
  name=${pair%%=*}
  pass=${pair#*=}
  [ -n "$name" ] && [ -n "$pass" ] && [ "$name" != "$pair" ] || { echo "bad MQTT_USERS entry" >&2; exit 2; }
  mosquitto_passwd -b "$passwd" "$name" "$pass"
done
chown mosquitto:mosquitto "$passwd" 2>/dev/null || true
exec mosquitto -c /mosquitto/config/mosquitto.conf
