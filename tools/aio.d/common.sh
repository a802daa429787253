# shellcheck shell=bash disable=SC2034
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.
#
# Settings and helpers shared by tools/aio and its parts (sourced, not run).

# Everything the all-in-one writes lives under AIO_DIR (venv, configs,
# databases' file store, logs, PID files). Packages go to the system.
AIO_DIR=${AIO_DIR:-/opt/nova-docker-aio}
VENV=$AIO_DIR/venv
V=$VENV/bin
ETC=$AIO_DIR/etc
DATA=$AIO_DIR/data
RUN=$AIO_DIR/run
LOGS=$AIO_DIR/logs
# Debian's interpreter (what a fresh Debian 12 has), not whatever is first
# in PATH: uwsgi is compiled against its headers (python3-dev).
AIO_PYTHON=${AIO_PYTHON:-/usr/bin/python3}
# docker.DockerDriver (default) or e.g. fake.FakeDriverWithoutFakeNodes.
AIO_COMPUTE_DRIVER=${AIO_COMPUTE_DRIVER:-${COMPUTE_DRIVER:-docker.DockerDriver}}
PW=${AIO_PASSWORD:-secret}
DBU="mysql+pymysql://openstack:$PW@127.0.0.1"
RABBIT="rabbit://guest:guest@127.0.0.1:5672/"
# The external ("public") network: a flat provider network on an OVS
# bridge of its own, with the host's address on it. No uplink and no NAT:
# floating IPs are reachable from this host only.
AIO_EXT_BRIDGE=${AIO_EXT_BRIDGE:-br-aio-ex}
AIO_EXT_CIDR=${AIO_EXT_CIDR:-172.24.4.0/24}
AIO_EXT_HOST_IP=${AIO_EXT_HOST_IP:-172.24.4.1}
AIO_EXT_POOL_START=${AIO_EXT_POOL_START:-172.24.4.10}
AIO_EXT_POOL_END=${AIO_EXT_POOL_END:-172.24.4.250}
AIO_PRIVATE_CIDR=${AIO_PRIVATE_CIDR:-10.20.0.0/24}
OVS_SOCK=/var/run/openvswitch/db.sock
OVN_CTL=/usr/share/ovn/scripts/ovn-ctl
# Services in start order; `down` stops them in reverse.
SERVICES="keystone placement glance neutron-api neutron-ovn-maint neutron-periodic nova-api nova-conductor nova-scheduler nova-compute"

T0=${T0:-$(date +%s.%N)}
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%6.1f", b - a }'; }
say() { echo "[$(elapsed)s] $*"; }
warn() { echo "[$(elapsed)s] WARNING: $*" >&2; }
die() { echo "tools/aio: $*" >&2; exit 1; }

# run_step NAME DESCRIPTION COMMAND...: progress line, output to
# $LOGS/aio-NAME.log, and on failure a message naming the step and its log.
run_step() {
    local name=$1 desc=$2; shift 2
    local log=$LOGS/aio-$name.log
    say "$name: $desc"
    if ! "$@" >"$log" 2>&1 </dev/null; then
        echo >&2
        echo "tools/aio: step '$name' ($desc) FAILED after $(elapsed)s." >&2
        echo "tools/aio: its log is $log; last lines:" >&2
        tail -n 25 "$log" | sed 's/^/    /' >&2
        echo "tools/aio: service logs are in $LOGS/. 'tools/aio down' stops what was started." >&2
        exit 1
    fi
}

# A record of what `up` started or changed, so that `down` and `clean`
# undo exactly that and nothing else (dockerd, OVS, MariaDB... may have been
# running already: then they are used, never stopped).
mark() { mkdir -p "$RUN"; grep -qxF "$1" "$RUN/started" 2>/dev/null || echo "$1" >> "$RUN/started"; }
marked() { grep -qxF "$1" "$RUN/started" 2>/dev/null; }

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
svc_pid() { cat "$RUN/$1.pid" 2>/dev/null; }

# start_svc NAME CMD...: a background service in its own session (so its
# process group can be stopped as a whole), PID in $RUN/NAME.pid.
start_svc() {
    local n=$1; shift
    setsid "$@" >"$LOGS/$n.out" 2>&1 </dev/null &
    echo $! >"$RUN/$n.pid"
    mark "svc:$n"
}

# uwsgi_svc NAME PORT MODULE [ENV=VALUE...]: a WSGI API under uwsgi.
# "Connection: close": without it clients see resets on reused sockets.
uwsgi_svc() {
    local n=$1 port=$2 mod=$3; shift 3
    local envs=() e
    for e in "$@"; do envs+=(--env "$e"); done
    start_svc "$n" "$V/uwsgi" --http-socket "127.0.0.1:$port" --module "$mod" \
        --master --processes 1 --threads 4 --enable-threads --lazy-apps \
        --die-on-term --need-app --hook-master-start "unix_signal:15 gracefully_kill_them_all" \
        --virtualenv "$VENV" --buffer-size 65535 --add-header "Connection: close" \
        --env "PATH=$V:/usr/sbin:/usr/bin:/sbin:/bin" "${envs[@]}"
}

http_ok() { curl -s -o /dev/null --max-time 5 "$1"; }

# wait_for DESCRIPTION SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
    local desc=$1 secs=$2; shift 2
    local end=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$end" ]; then
            echo "timed out after ${secs}s waiting for $desc"
            return 1
        fi
        sleep 0.5
    done
}

ovs_ok() { ovs-vsctl --timeout=5 show >/dev/null 2>&1; }
docker_ok() { docker version >/dev/null 2>&1; }

chassis_hostname() {
    local h
    h=$(ovs-vsctl get open_vswitch . external_ids:hostname 2>/dev/null | tr -d '"')
    echo "${h:-$(hostname)}"
}
