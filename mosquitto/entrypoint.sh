#!/bin/sh
# The broker container's entrypoint: compose the configuration of this role, build the
# password file, run Mosquitto (docs/deploy.md).
#
#   MOSQUITTO_ROLE   all-in-one | server | sensor: appends roles/<role>.conf (its listeners)
#                    to the base mosquitto.conf; sensor also appends /etc/soundscape/bridge.conf
#   MQTT_USERS       "name=password ..." of the service accounts (Compose builds it from .env);
#                    the hashed device lines of /etc/soundscape/broker/devices.passwd
#                    (`soundscape device add`) are appended when that file exists
#
# Mosquitto 2 reads certificates, the password file and the ACL after dropping root for its
# own user, who cannot read a 0600 key owned by the host's user: this script, still root,
# gives it copies it can read (in the run folder, rebuilt at every start).
#
# The folders default to the container's; the process test (tests/deploy) points them at
# temporary ones, and container paths in the composed configuration follow.
set -eu
conf_dir=${MOSQUITTO_CONFIG_DIR:-/mosquitto/config}
data_dir=${MOSQUITTO_DATA_DIR:-/mosquitto/data}
etc_dir=${SOUNDSCAPE_CONFIG_DIR:-/etc/soundscape}
run_dir=${MOSQUITTO_RUN_DIR:-/mosquitto/run}
role=${MOSQUITTO_ROLE:-all-in-one}
: "${MQTT_USERS:?set MQTT_USERS to 'user=password ...' (the Compose file builds it from .env)}"

role_conf="$conf_dir/roles/$role.conf"
[ -f "$role_conf" ] || { echo "unknown MOSQUITTO_ROLE '$role': no $role_conf" >&2; exit 2; }
[ -f "$etc_dir/broker/acl" ] || {
  echo "no $etc_dir/broker/acl: run 'soundscape init' (it renders the ACL for your prefix)" >&2
  exit 2
}

umask 077
mkdir -p "$data_dir" "$run_dir/tls"
rm -f "$run_dir/tls/"*

# Password file: the service accounts, then the provisioned devices not already named.
passwd="$data_dir/passwd"
: > "$passwd"
names=" "
for pair in $MQTT_USERS; do
  name=${pair%%=*}
  pass=${pair#*=}
  if [ -z "$name" ] || [ -z "$pass" ] || [ "$name" = "$pair" ]; then
    echo "bad MQTT_USERS entry for '${name}': expected name=password with a password" >&2
    exit 2
  fi
  mosquitto_passwd -b "$passwd" "$name" "$pass"
  names="$names$name "
done
devices="$etc_dir/broker/devices.passwd"
if [ -f "$devices" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in '' | '#'*) continue ;; esac
    case "$names" in
      *" ${line%%:*} "*) echo "devices.passwd: ${line%%:*} is also in MQTT_USERS, kept that one" >&2 ;;
      *) printf '%s\n' "$line" >> "$passwd" ;;
    esac
  done < "$devices"
fi

# TLS files Mosquitto can read once it is no longer root.
if [ -d "$etc_dir/tls" ]; then
  for f in "$etc_dir"/tls/*; do
    [ -f "$f" ] && cp "$f" "$run_dir/tls/"
  done
fi

if [ "$role" = sensor ] && [ ! -f "$etc_dir/bridge.conf" ]; then
  echo "role sensor needs $etc_dir/bridge.conf: copy it from 'soundscape device add'" >&2
  exit 2
fi
# Mosquitto scopes some options to the listener above them; above every listener (the base
# file) they would open a default listener on 1883 of their own. Those the base names go
# under each of the role's listeners instead.
scoped='^(use_username_as_clientid|max_connections|protocol|mount_point)[[:space:]]'
conf="$run_dir/mosquitto.conf"
{
  grep -Ev "$scoped" "$conf_dir/mosquitto.conf" || true
  printf '\n# --- role %s (%s)\n' "$role" "$role_conf"
  LISTENER_OPTS=$(grep -E "$scoped" "$conf_dir/mosquitto.conf" || true) \
    awk '{ print } /^listener[ \t]/ && ENVIRON["LISTENER_OPTS"] != "" { print ENVIRON["LISTENER_OPTS"] }' "$role_conf"
  if [ "$role" = sensor ]; then
    printf '\n# --- bridge (%s)\n' "$etc_dir/bridge.conf"
    cat "$etc_dir/bridge.conf"
  fi
} | sed -e "s#/etc/soundscape/tls/#$run_dir/tls/#g" \
        -e "s#/etc/soundscape/#$etc_dir/#g" \
        -e "s#/mosquitto/data/#$data_dir/#g" > "$conf"

if [ "$(id -u)" = 0 ]; then
  chown -R mosquitto:mosquitto "$data_dir" "$run_dir" 2>/dev/null || true
fi
exec mosquitto -c "$conf"
