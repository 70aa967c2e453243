#!/usr/bin/env bash
# Runs the whole test suite on a Debian machine: installs what the tests need (Debian's
# freeradius packages with rlm_rest and rlm_python3, nftables, chromium and a Japanese font for the browser tests, PostgreSQL if absent), builds .venv with the package, starts PostgreSQL
# when it is installed but down, then runs pytest against SQLite and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in freeradius freeradius-utils freeradius-common python3-venv nftables chromium fonts-ipafont-gothic freeradius-rest freeradius-python3 radsecproxy openssl; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    # Debian's freeradius package starts a system FreeRADIUS (on 1812/1813) when it is installed.
    # The tests need none: they run their own instances on free ports, and a system one does not
    # disturb them.  So the install runs under a policy-rc.d that denies every service start
    # (exit 101, see /usr/share/doc/init-system-helpers/README.policy-rc.d.gz), removed again
    # right after; nothing is stopped, and a FreeRADIUS already running is left alone.
    policy=/usr/sbin/policy-rc.d
    if [ -e "$policy" ]; then
        echo "keeping the existing $policy (it decides whether packages may start services)"
        policy=
    else
        echo "writing $policy (exit 101: no service starts during this install), removed after it"
        as_root sh -c "printf '#!/bin/sh\\nexit 101\\n' > $policy && chmod 755 $policy"
        trap 'as_root rm -f "$policy"' EXIT
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    if [ -n "$policy" ]; then
        as_root rm -f "$policy"
        echo "removed $policy"
        trap - EXIT
    fi
fi

pg_ready() { python3 -c 'import socket; socket.create_connection(("127.0.0.1", 5432), 1)' 2>/dev/null; }
if ! pg_ready; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "starting PostgreSQL $version"
    hba=/etc/postgresql/$version/main/pg_hba.conf
    # A machine that had no test database server: let the tests in over loopback.
    if ! as_root grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
        echo "editing $hba: adding 'host all all 127.0.0.1/32 trust' as its first line, so that the"
        echo "  tests connect as postgres over 127.0.0.1 without a password (OP25B_TEST_POSTGRES_URL overrides)"
        as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    fi
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
    for _ in $(seq 30); do pg_ready && break; sleep 1; done
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e ".[test]"
exec .venv/bin/python -m pytest "$@"
