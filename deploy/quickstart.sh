#!/usr/bin/env bash
# Quickstart on a Debian machine: a local FreeRADIUS as the upstream, `op25b serve` in front of
# it on the embedded SQLite database with three sample subscribers, and radclient showing one
# filtered, one static and one exempt login.
#
#   bash deploy/quickstart.sh          start (or restart) the demo; it keeps running
#   bash deploy/quickstart.sh stop     stop this demo's two processes
#   bash deploy/quickstart.sh --help   this text
#
# Settings from the environment (defaults in brackets):
#   OP25B_DEMO_DIR [<repo>/demo]   config, SQLite database, logs, pid files, the FreeRADIUS copy
#   OP25B_AUTH_PORT [1812]  OP25B_ACCT_PORT [1813]         op25b serve on 127.0.0.1
#   UPSTREAM_AUTH_PORT [11812]  UPSTREAM_ACCT_PORT [11813]  the FreeRADIUS upstream on 127.0.0.1
#   OP25B_VENV [<demo dir>/venv]   the venv that gets `pip install .` (the package as its wheel)
#
# Processes are stopped by the PIDs in <demo dir>/op25b.pid and <demo dir>/freeradius.pid, and
# only when that PID still runs this demo's command line: never by name, so a system FreeRADIUS
# or a second copy of the demo (another OP25B_DEMO_DIR and other ports) is left alone. Running
# it again stops its previous instance that way first. Both with `stop`:
#   OP25B_DEMO_DIR=/tmp/demo2 OP25B_AUTH_PORT=21812 OP25B_ACCT_PORT=21813 \
#       UPSTREAM_AUTH_PORT=21814 UPSTREAM_ACCT_PORT=21815 bash deploy/quickstart.sh [stop]
set -euo pipefail
case ${1:-} in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    ""|stop) ;;
    *) echo "usage: bash deploy/quickstart.sh [stop|--help]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
repo=$(pwd)
demo=${OP25B_DEMO_DIR:-$repo/demo}
mkdir -p "$demo"
demo=$(cd "$demo" && pwd)
venv=${OP25B_VENV:-$demo/venv}
auth_port=${OP25B_AUTH_PORT:-1812}
acct_port=${OP25B_ACCT_PORT:-1813}
up_auth_port=${UPSTREAM_AUTH_PORT:-11812}
up_acct_port=${UPSTREAM_ACCT_PORT:-11813}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# The PID in $demo/NAME.pid, if that process is alive and its command line names this demo
# directory (a stale file whose PID was reused by something else is not ours).
demo_pid() {
    local file=$demo/$1.pid pid
    [ -f "$file" ] || return 1
    pid=$(cat "$file")
    [[ $pid =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$demo/" || return 1
    echo "$pid"
}

stop_demo() {
    local name pid
    for name in op25b freeradius; do
        if pid=$(demo_pid "$name"); then
            echo "== stopping $name (pid $pid, from $demo/$name.pid)"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then
                echo "   still running after 5 s: SIGKILL to pid $pid"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        rm -f "$demo/$name.pid"
    done
}

if [ "${1:-}" = stop ]; then stop_demo; echo "stopped (demo dir $demo)"; exit 0; fi

missing=()
for pkg in freeradius freeradius-utils python3-venv; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    # Debian's freeradius package would start a system FreeRADIUS on 1812/1813, where this demo's
    # proxy listens by default. A policy-rc.d that denies service starts (exit 101) keeps it from
    # starting during this install; it is removed right after. Nothing is stopped.
    policy=/usr/sbin/policy-rc.d
    if [ -e "$policy" ]; then
        echo "   keeping the existing $policy"
        policy=
    else
        echo "   writing $policy (exit 101: no service starts during this install), removed after it"
        as_root sh -c "printf '#!/bin/sh\\nexit 101\\n' > $policy && chmod 755 $policy"
        trap 'as_root rm -f "$policy"' EXIT
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    if [ -n "$policy" ]; then as_root rm -f "$policy"; echo "   removed $policy"; trap - EXIT; fi
fi
stop_demo   # a previous run of this demo (same demo dir), by its pid files

# A port already taken (a system FreeRADIUS on 1812, another copy of the demo): say so and stop.
for port in "$auth_port" "$acct_port" "$up_auth_port" "$up_acct_port"; do
    if ! python3 -c 'import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null; then
        echo "UDP 127.0.0.1:$port is in use; choose other ports (see bash deploy/quickstart.sh --help)" >&2
        exit 1
    fi
done

echo "== installing radius-op25b into $venv (pip install ., as a wheel)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q . >/dev/null
op25b() { "$venv/bin/op25b" -c "$demo/op25b.toml" "$@"; }

op25b init
# The ports of this copy (init keeps an existing config: set them every time).
sed -i -E \
    -e "s/^auth_listen = \"127\.0\.0\.1:[0-9]+\"/auth_listen = \"127.0.0.1:$auth_port\"/" \
    -e "s/^acct_listen = \"127\.0\.0\.1:[0-9]+\"/acct_listen = \"127.0.0.1:$acct_port\"/" \
    -e "s/^auth_port = [0-9]+/auth_port = $up_auth_port/" \
    -e "s/^acct_port = [0-9]+/acct_port = $up_acct_port/" \
    "$demo/op25b.toml"

echo "== starting the local FreeRADIUS upstream on 127.0.0.1:$up_auth_port/$up_acct_port"
NAME=local-upstream SECRET=testing123 AUTH_PORT=$up_auth_port ACCT_PORT=$up_acct_port \
    deploy/freeradius/run.sh "$demo/freeradius" >"$demo/freeradius.out" 2>&1 &
echo $! >"$demo/freeradius.pid"   # run.sh execs freeradius: the same PID
for _ in $(seq 50); do
    echo 'Message-Authenticator = 0x00' | radclient -q -t 1 "127.0.0.1:$up_auth_port" status testing123 >/dev/null 2>&1 && break
    sleep 0.1
done

echo "== sample subscribers"
op25b subscriber add alice@isp.example --note "dynamic: gets the OP25B filter" 2>/dev/null || true
op25b subscriber add carol@isp.example --note "runs her own MTA" 2>/dev/null || true
op25b subscriber exempt carol@isp.example --reason "runs own MTA (quickstart)" --for 30d 2>/dev/null || true
# bob is not in the database: his Framed-IP-Address 203.0.113.25 lies in policy.static_pools.

echo "== starting op25b serve on 127.0.0.1:$auth_port/$acct_port (log: $demo/op25b.log)"
"$venv/bin/op25b" -c "$demo/op25b.toml" serve >"$demo/op25b.log" 2>&1 &
echo $! >"$demo/op25b.pid"
for _ in $(seq 100); do grep -q "serving auth" "$demo/op25b.log" && break; sleep 0.1; done
grep -q "serving auth" "$demo/op25b.log" || { cat "$demo/op25b.log"; stop_demo; exit 1; }

for who in alice:alicepw:filtered bob:bobpw:static carol:carolpw:exempt; do
    IFS=: read -r user password what <<<"$who"
    echo
    echo "== $user@isp.example ($what): radclient -> op25b -> FreeRADIUS"
    printf 'User-Name = "%s@isp.example"\nUser-Password = "%s"\n' "$user" "$password" \
        | radclient -x "127.0.0.1:$auth_port" auth testing123 | sed -n '/^Received/,$p'
    op25b policy explain "$user@isp.example" $([ "$user" = bob ] && echo --framed-ip 203.0.113.25) | sed -n 1,2p
done
echo
echo "The proxy keeps running (pid $(cat "$demo/op25b.pid")): try radclient against 127.0.0.1:$auth_port (secret testing123),"
echo "or change a subscriber: $venv/bin/op25b -c $demo/op25b.toml subscriber unexempt carol@isp.example --reason done"
echo "Stop with: OP25B_DEMO_DIR=$demo bash deploy/quickstart.sh stop"
