#!/usr/bin/env bash
# Prerequisites of building and testing pulsehost, installed or started when
# missing: libpq (Diesel), PostgreSQL's server binaries (the embedded-database
# and outage tests), python3 with venv, Node.js with npm (JavaScript plugins),
# libfaketime (clock-skew tests), Chromium and its WebDriver (dashboard tests), and a PostgreSQL on 127.0.0.1:5432 for the
# tests. componentize-py (PyPI) and jco (npm) are installed by `pulsehost plugin
# build` itself, into ~/.cache/pulsehost, the first time a test builds a plugin.
# Sourced by tests/run and .ci/run.

apt_install() {
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  else
    echo "missing packages: $* (install them, e.g. sudo apt-get install $*)" >&2
    exit 1
  fi
}

# Diesel links libpq; the embedded-database test needs PostgreSQL's server binaries.
missing=()
[ -e /usr/include/postgresql/libpq-fe.h ] || missing+=(libpq-dev)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
command -v python3 >/dev/null || missing+=(python3 python3-venv)
# The JavaScript plugin test builds with jco (the build installs it with npm).
command -v npm >/dev/null || missing+=(nodejs npm)
# Clock-skew tests run a replica under libfaketime.
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || missing+=(libfaketime)
# The dashboard's tests drive a real headless Chromium over WebDriver.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# The tests need a PostgreSQL on 127.0.0.1:5432 with trust auth for `postgres`.
if [[ "$PULSEHOST_TEST_DATABASE_URL" == *127.0.0.1:5432* ]] && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
  if [ -n "$version" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
  fi
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

