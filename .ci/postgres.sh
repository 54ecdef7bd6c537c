#!/usr/bin/env bash
# Starts a PostgreSQL server for the tests and prints its DSN on stdout
# (everything else goes to stderr):
#
#   export CONCORD_TEST_POSTGRES="$(bash .ci/postgres.sh)"
#
# Runs as root on Debian. Installs Debian's postgresql package if it is
# missing, starts the cluster through pg_ctlcluster (which runs the server as
# the postgres system user), listening on 127.0.0.1 only, and creates the
# role and database the tests use. Every step is skipped when already done,
# so a warm machine takes about a second.
set -euo pipefail

port=${CONCORD_PG_PORT:-5432}
role=concord
password=concord-test # a throwaway server on loopback, for tests only
db=concord_test

log() { echo "postgres.sh: $*" >&2; }

if ! command -v pg_ctlcluster >/dev/null || ! dpkg -s postgresql >/dev/null 2>&1; then
	log "installing postgresql"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	# Ask postinst not to create and start a cluster of its own: the one
	# below is configured first and started once.
	mkdir -p /etc/postgresql-common/createcluster.d
	echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/concord-ci.conf
	apt-get install -y -qq --no-install-recommends postgresql >&2
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { found = 1 } END { exit !found }'; then
	log "creating cluster $version/main"
	# UTF8 and the C locale whatever the machine's locale: the tests must see
	# what a production database does with text.
	pg_createcluster --port "$port" --encoding UTF8 --locale C "$version" main >&2
fi

# Loopback only, and no durability: the server holds nothing but test data.
conf=/etc/postgresql/$version/main/conf.d/concord-ci.conf
want="listen_addresses = '127.0.0.1'
port = $port
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off"
changed=false
main_conf=/etc/postgresql/$version/main/postgresql.conf
if ! grep -q "^include_dir = 'conf.d'" "$main_conf"; then
	echo "include_dir = 'conf.d'" >>"$main_conf"
	changed=true
fi
if [[ ! -f $conf || "$(cat "$conf")" != "$want" ]]; then
	mkdir -p "$(dirname "$conf")"
	printf '%s\n' "$want" >"$conf"
	changed=true
fi

status=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $4 }')
if [[ $status == online* ]]; then
	if $changed; then
		log "restarting cluster $version/main with the new settings"
		pg_ctlcluster "$version" main restart >&2
	fi
else
	log "starting cluster $version/main"
	pg_ctlcluster "$version" main start >&2
fi

# As the postgres superuser over the unix socket (peer authentication).
runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres >&2 <<SQL
SELECT format('CREATE ROLE %I LOGIN', '$role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') \gexec
ALTER ROLE $role WITH LOGIN PASSWORD '$password';
SELECT format('CREATE DATABASE %I OWNER %I ENCODING %L LC_COLLATE %L LC_CTYPE %L TEMPLATE template0',
              '$db', '$role', 'UTF8', 'C', 'C')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db') \gexec
SQL

echo "postgres://$role:$password@127.0.0.1:$port/$db?sslmode=disable"
