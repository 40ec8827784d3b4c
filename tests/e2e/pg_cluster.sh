#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests: Debian's packages, initdb in a temporary folder as
# an unprivileged user, listening on 127.0.0.1:PORT and a socket in the folder, TLS with a
# certificate from its own CA (DIR/ca.crt). Prints the superuser's URL.
#
# What it changes on the machine, run as root: it installs Debian's `postgresql` package with
# apt-get when no initdb is found, and makes a system user `imipd-pg` (no home, no shell) to run
# PostgreSQL as, since it refuses to run as root. Nothing else outside DIR.
#
#   tests/e2e/pg_cluster.sh start DIR [PORT]   # initdb (first time) and start; PORT: a free one
#   tests/e2e/pg_cluster.sh stop DIR           # stop (fast)
#   tests/e2e/pg_cluster.sh createdb DIR NAME  # a fresh database; prints its URL
set -euo pipefail
action=$1
dir=$2
if [ -f "$dir/port" ]; then
    port=$(cat "$dir/port")
elif [ "$action" = start ]; then
    port=${3:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
else
    echo "$0: no cluster in $dir" >&2
    exit 1
fi

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
# PostgreSQL refuses to run as root.
as=()
if [ "$(id -u)" = 0 ]; then
    id imipd-pg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin imipd-pg
    as=(runuser -u imipd-pg --)
fi
url="postgres://postgres@127.0.0.1:$port/postgres"

case "$action" in
start)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        mkdir -p "$dir"
        [ ${#as[@]} -gt 0 ] && chown imipd-pg "$dir"
        "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log"
        echo "$port" >"$dir/port"
        # TLS with a certificate from a CA of its own (DIR/ca.crt, for clients to trust).
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=imipd test CA" \
            -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
            -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
        openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
            -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
        chmod 600 "$dir/server.key"
        [ ${#as[@]} -gt 0 ] && chown imipd-pg "$dir/server.key" "$dir/server.crt"
        cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
fsync = on
synchronous_commit = on
ssl = on
ssl_cert_file = '$dir/server.crt'
ssl_key_file = '$dir/server.key'
EOF
    fi
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
    echo "$url"
    ;;
stop)
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
createdb)
    name=$3
    PGOPTIONS='-c client_min_messages=warning' psql -q -v ON_ERROR_STOP=1 "$url" \
        -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" -c "CREATE DATABASE \"$name\"" >&2
    echo "postgres://postgres@127.0.0.1:$port/$name"
    ;;
*)
    echo "usage: $0 start|stop DIR [PORT] | createdb DIR NAME [PORT]" >&2
    exit 2
    ;;
esac
