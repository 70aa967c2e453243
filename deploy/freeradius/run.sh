#!/usr/bin/env bash
# Render this FreeRADIUS template into RUN_DIR and run it in the foreground.
#
#   deploy/freeradius/run.sh RUN_DIR [-X]
#
# Settings come from the environment (defaults in brackets):
#   NAME [upstream]  AUTH_PORT [11812]  ACCT_PORT [11813]  SECRET [upstream-secret]
#   USERS_FILE [RUN_DIR/raddb/users, a copy of deploy/freeradius/users]
# -X runs FreeRADIUS in debug mode (everything on stdout) instead of `-f` (log in
# RUN_DIR/radius.log).  It runs as this script's PID (exec), written to RUN_DIR/freeradius.pid:
# stop it with Ctrl-C or `kill "$(cat RUN_DIR/freeradius.pid)"`.  A second instance needs another
# RUN_DIR and other ports; one still running from the same RUN_DIR is refused, never stopped.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true   # bash 5.2: keep '&' literal in ${x//p/r}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 1 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
mkdir -p "$1"
run_dir=$(cd "$1" && pwd)
mode=${2:--f}
case $mode in -f|-X) ;; *) echo "second argument must be -f or -X" >&2; exit 2 ;; esac

name=${NAME:-upstream}
auth_port=${AUTH_PORT:-11812}
acct_port=${ACCT_PORT:-11813}
secret=${SECRET:-upstream-secret}
conf_dir=$run_dir/raddb
users_file=${USERS_FILE:-$conf_dir/users}

case $secret in *'\"'*|*'\') echo "SECRET may not end in a backslash or have one before a quote" >&2; exit 2 ;; esac
case $run_dir in *[\"\\\$%{}\']*) echo "RUN_DIR may not contain quotes, \\, \$, %, { or }" >&2; exit 2 ;; esac
secret=${secret//\"/\\\"}   # FreeRADIUS: \" is a quote, other backslashes are verbatim

pid_file=$run_dir/freeradius.pid
if [ -f "$pid_file" ]; then
    old=$(cat "$pid_file")
    if [[ $old =~ ^[0-9]+$ ]] && [ -r "/proc/$old/cmdline" ] && tr '\0' ' ' <"/proc/$old/cmdline" | grep -qF -- "-d $conf_dir"; then
        echo "FreeRADIUS from $run_dir is still running as pid $old: stop it first (kill $old)" >&2
        exit 1
    fi
fi

rm -rf "$conf_dir"
mkdir -p "$conf_dir/mods" "$conf_dir/sites"
chmod 700 "$run_dir"
cp "$here/users" "$conf_dir/users"
cd "$here"
for rel in radiusd.conf clients.conf dictionary empty mods/* sites/*; do
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line//@NAME@/$name}
        line=${line//@CONFDIR@/$conf_dir}
        line=${line//@RUNDIR@/$run_dir}
        line=${line//@AUTH_PORT@/$auth_port}
        line=${line//@ACCT_PORT@/$acct_port}
        line=${line//@SECRET@/$secret}
        line=${line//@USERS_FILE@/$users_file}
        printf '%s\n' "$line"
    done < "$here/$rel" > "$conf_dir/$rel"
    chmod 640 "$conf_dir/$rel"
done

echo "FreeRADIUS '$name' on 127.0.0.1 auth $auth_port acct $acct_port; log $run_dir/radius.log, detail $run_dir/detail" >&2
echo $$ >"$pid_file"   # exec keeps this PID
exec freeradius "$mode" -d "$conf_dir"
