#!/usr/bin/env bash
# Quickstart on a Debian machine: a local FreeRADIUS as the upstream, `op25b serve` in front of
# it on the embedded SQLite database with three sample subscribers, and radclient showing one
# filtered, one static and one exempt login.   Stop it all with:  bash deploy/quickstart.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
demo=${OP25B_DEMO_DIR:-$repo/demo}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
stop_demo() {
    for name in op25b freeradius; do
        if [ -f "$demo/$name.pid" ]; then
            kill "$(cat "$demo/$name.pid")" 2>/dev/null || true
            rm -f "$demo/$name.pid"
        fi
    done
}

if [ "${1:-}" = stop ]; then stop_demo; echo "stopped"; exit 0; fi

missing=()
for pkg in freeradius freeradius-utils python3-venv; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian may start its own FreeRADIUS on 1812 at install time; the demo proxy listens there.
as_root pkill -x freeradius 2>/dev/null || true
stop_demo

echo "== installing radius-op25b into .venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e . >/dev/null
op25b() { "$repo/.venv/bin/op25b" -c "$demo/op25b.toml" "$@"; }

mkdir -p "$demo"
op25b init

echo "== starting the local FreeRADIUS upstream on 127.0.0.1:11812/11813"
NAME=local-upstream SECRET=testing123 deploy/freeradius/run.sh "$demo/freeradius" >"$demo/freeradius.out" 2>&1 &
echo $! >"$demo/freeradius.pid"
for _ in $(seq 50); do
    echo 'Message-Authenticator = 0x00' | radclient -q -t 1 127.0.0.1:11812 status testing123 >/dev/null 2>&1 && break
    sleep 0.1
done

echo "== sample subscribers"
op25b subscriber add alice@isp.example --note "dynamic: gets the OP25B filter" 2>/dev/null || true
op25b subscriber add carol@isp.example --note "runs her own MTA" 2>/dev/null || true
op25b subscriber exempt carol@isp.example --reason "runs own MTA (quickstart)" --for 30d 2>/dev/null || true
# bob is not in the database: his Framed-IP-Address 203.0.113.25 lies in policy.static_pools.

echo "== starting op25b serve on 127.0.0.1:1812/1813 (log: $demo/op25b.log)"
"$repo/.venv/bin/op25b" -c "$demo/op25b.toml" serve >"$demo/op25b.log" 2>&1 &
echo $! >"$demo/op25b.pid"
for _ in $(seq 100); do grep -q "serving auth" "$demo/op25b.log" && break; sleep 0.1; done
grep -q "serving auth" "$demo/op25b.log" || { cat "$demo/op25b.log"; exit 1; }

for who in alice:alicepw:filtered bob:bobpw:static carol:carolpw:exempt; do
    IFS=: read -r user password what <<<"$who"
    echo
    echo "== $user@isp.example ($what): radclient -> op25b -> FreeRADIUS"
    printf 'User-Name = "%s@isp.example"\nUser-Password = "%s"\n' "$user" "$password" \
        | radclient -x 127.0.0.1:1812 auth testing123 | sed -n '/^Received/,$p'
    op25b policy explain "$user@isp.example" $([ "$user" = bob ] && echo --framed-ip 203.0.113.25) | sed -n 1,2p
done
echo
echo "The proxy keeps running: try radclient against 127.0.0.1:1812 (secret testing123),"
echo "or change a subscriber: .venv/bin/op25b -c $demo/op25b.toml subscriber unexempt carol@isp.example --reason done"
echo "Stop with: bash deploy/quickstart.sh stop"
