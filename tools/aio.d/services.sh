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
# Starting and stopping the services of the all-in-one (sourced). Every
# process started here has a PID file in $RUN and a line in $RUN/started;
# stop_all stops those and only those.

# -- base services ---------------------------------------------------------

start_docker_ovs() {
    if docker_ok; then
        echo "dockerd already running: using it"
    else
        # live-restore: instances keep running across a dockerd restart or
        # upgrade (nova-compute warns when it is off). Not as a flag when
        # daemon.json sets it: dockerd refuses a directive given both ways.
        local flags=()
        grep -qs '"live-restore"' /etc/docker/daemon.json || flags+=(--live-restore)
        start_svc dockerd dockerd "${flags[@]}"
        wait_for dockerd 60 docker_ok
    fi
    if ovs_ok; then
        echo "Open vSwitch already running: using it"
    else
        /usr/share/openvswitch/scripts/ovs-ctl --system-id=random start
        mark ovs
    fi
}

start_mariadb() {
    if mysqladmin ping >/dev/null 2>&1; then
        echo "MariaDB already running: using it"
    else
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        cat >/etc/mysql/mariadb.conf.d/99-nova-docker-aio.cnf <<EOF
[mysqld]
bind-address = 127.0.0.1
max_connections = 1024
innodb_buffer_pool_size = 64M
performance_schema = off
character-set-server = utf8
collation-server = utf8_general_ci
EOF
        mark mariadb-cnf
        start_svc mysqld_safe /usr/bin/mysqld_safe
        mark mariadb
        wait_for MariaDB 60 mysqladmin ping
    fi
    local h
    for h in localhost 127.0.0.1; do
        mysql -e "CREATE USER IF NOT EXISTS 'openstack'@'$h' IDENTIFIED BY '$PW';
                  GRANT ALL ON *.* TO 'openstack'@'$h';"
    done
    mark db-user
    for d in keystone placement glance neutron nova_api nova_cell0 nova; do
        mysql -e "DROP DATABASE IF EXISTS aio_$d; CREATE DATABASE aio_$d"
    done
    mark databases
}

rabbit_ok() { rabbitmq-diagnostics -q ping; }

start_rabbitmq() {
    if rabbit_ok >/dev/null 2>&1; then
        echo "RabbitMQ already running: using it"
        return
    fi
    rabbitmq-server -detached
    mark rabbitmq
    rabbitmqctl --timeout 120 await_startup
    # rabbitmq-server forks epmd (Erlang port mapper), which outlives it.
    ss -ltnpH 'sport = :4369' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 >"$RUN/epmd.pid"
}

# LXCFS: instances see their flavor's RAM, vCPUs (CFS quota) and uptime.
LXCFS_DIR=/var/lib/lxcfs
lxcfs_ok() { [ -r "$LXCFS_DIR/proc/meminfo" ]; }
start_lxcfs() {
    if lxcfs_ok; then
        echo "lxcfs already running: using it"
        return
    fi
    # A killed lxcfs leaves a dead FUSE mount behind.
    if grep -q " $LXCFS_DIR fuse" /proc/mounts; then umount -l "$LXCFS_DIR"; fi
    mkdir -p "$LXCFS_DIR"
    start_svc lxcfs lxcfs --enable-cfs --enable-loadavg "$LXCFS_DIR"
    wait_for lxcfs 30 lxcfs_ok
}

start_base() {
    start_docker_ovs
    start_lxcfs
    start_mariadb
    start_rabbitmq
}

# -- OVN ---------------------------------------------------------------------

start_ovn() {
    if ovn-appctl -t ovn-northd version >/dev/null 2>&1; then
        echo "ovn-northd already running: using it"
    else
        # Fresh northbound/southbound databases: Neutron's database is new.
        rm -f /var/lib/ovn/ovnnb_db.db /var/lib/ovn/ovnsb_db.db \
              /var/lib/ovn/.ovnnb_db.db.~lock~ /var/lib/ovn/.ovnsb_db.db.~lock~
        "$OVN_CTL" start_northd --db-nb-addr=127.0.0.1 --db-sb-addr=127.0.0.1 \
            --db-nb-create-insecure-remote=yes --db-sb-create-insecure-remote=yes \
            --ovn-northd-priority=0
        mark ovn-central
    fi
    # The external network's bridge, with the host's address on it.
    if ! ovs-vsctl br-exists "$AIO_EXT_BRIDGE"; then
        ovs-vsctl add-br "$AIO_EXT_BRIDGE" -- set bridge "$AIO_EXT_BRIDGE" datapath_type=netdev
        mark "bridge:$AIO_EXT_BRIDGE"
    fi
    ip link set "$AIO_EXT_BRIDGE" up
    ip addr replace "$AIO_EXT_HOST_IP/${AIO_EXT_CIDR#*/}" dev "$AIO_EXT_BRIDGE"
    ovs-vsctl br-exists br-int || mark "bridge:br-int"
    # ovn-controller creates br-int itself (userspace datapath); this chassis
    # is also the gateway for routers and floating IPs.
    ovs-vsctl set open_vswitch . \
        external_ids:ovn-remote=tcp:127.0.0.1:6642 \
        external_ids:ovn-encap-type=geneve \
        external_ids:ovn-encap-ip=127.0.0.1 \
        external_ids:ovn-bridge-datapath-type=netdev \
        external_ids:ovn-bridge-mappings="public:$AIO_EXT_BRIDGE" \
        external_ids:ovn-cms-options=enable-chassis-as-gw
    mark ovs-external-ids
    if ovn-appctl -t ovn-controller version >/dev/null 2>&1; then
        echo "ovn-controller already running: using it"
    else
        "$OVN_CTL" start_controller --ovn-controller-priority=0
        mark ovn-controller
    fi
    wait_for "ovn-controller to create br-int" 60 ovs-vsctl br-exists br-int
}

# -- Keystone ----------------------------------------------------------------

authsec() {
    printf '[%s]\nauth_url = http://127.0.0.1:5000/v3\nauth_type = password\nproject_domain_name = Default\nuser_domain_name = Default\nproject_name = service\nusername = %s\npassword = %s\nregion_name = RegionOne\n' "$1" "$2" "$PW"
}
ktsec() { authsec keystone_authtoken "$1"; echo "www_authenticate_uri = http://127.0.0.1:5000/v3"; }

setup_keystone() {
    mkdir -p "$ETC/keystone"
    cat >"$ETC/keystone/keystone.conf" <<EOF
[DEFAULT]
log_file = $LOGS/keystone.log
[database]
connection = $DBU/aio_keystone
[token]
provider = fernet
[fernet_tokens]
key_repository = $ETC/keystone/fernet-keys
[fernet_receipts]
key_repository = $ETC/keystone/fernet-keys
[credential]
key_repository = $ETC/keystone/credential-keys
EOF
    local km=("$V/keystone-manage" --config-file "$ETC/keystone/keystone.conf")
    "${km[@]}" db_sync
    "${km[@]}" fernet_setup --keystone-user root --keystone-group root
    "${km[@]}" credential_setup --keystone-user root --keystone-group root
    "${km[@]}" bootstrap --bootstrap-password "$PW" --bootstrap-region-id RegionOne \
        --bootstrap-admin-url http://127.0.0.1:5000/v3 \
        --bootstrap-public-url http://127.0.0.1:5000/v3 \
        --bootstrap-internal-url http://127.0.0.1:5000/v3
    uwsgi_svc keystone 5000 keystone.wsgi.api:application \
        "OS_KEYSTONE_CONFIG_FILES=$ETC/keystone/keystone.conf"
}

# -- configuration files -------------------------------------------------------

write_configs() {
    local host
    host=$(chassis_hostname)
    mkdir -p "$ETC"/{placement,glance,nova,neutron/plugins/ml2} "$DATA"/{images,nova,lock}
    { printf '[DEFAULT]\nlog_file = %s\n[api]\nauth_strategy = keystone\n[placement_database]\nconnection = %s/aio_placement\n' \
        "$LOGS/placement.log" "$DBU"; ktsec placement; } >"$ETC/placement/placement.conf"

    cp "$VENV/etc/glance/glance-api-paste.ini" "$ETC/glance/"
    { cat <<EOF
[DEFAULT]
log_file = $LOGS/glance.log
enabled_backends = fs:file
[database]
connection = $DBU/aio_glance
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $DATA/images
[image_format]
container_formats = bare,docker,ovf,ova,compressed
disk_formats = raw,qcow2
[paste_deploy]
flavor = keystone
config_file = $ETC/glance/glance-api-paste.ini
[oslo_concurrency]
lock_path = $DATA/lock
EOF
      ktsec glance; } >"$ETC/glance/glance-api.conf"

    cp "$VENV/etc/neutron/api-paste.ini" "$ETC/neutron/"
    { cat <<EOF
[DEFAULT]
log_file = $LOGS/neutron.log
core_plugin = ml2
service_plugins = ovn-router
auth_strategy = keystone
api_paste_config = $ETC/neutron/api-paste.ini
transport_url = $RABBIT
[database]
connection = $DBU/aio_neutron
[oslo_concurrency]
lock_path = $DATA/lock
EOF
      ktsec neutron; authsec nova nova; } >"$ETC/neutron/neutron.conf"
    cat >"$ETC/neutron/plugins/ml2/ml2_conf.ini" <<EOF
[ml2]
mechanism_drivers = ovn
type_drivers = local,flat,geneve
tenant_network_types = geneve
extension_drivers = port_security
overlay_ip_version = 4
[ml2_type_geneve]
vni_ranges = 1:4096
max_header_size = 38
[ml2_type_flat]
flat_networks = public
[ovn]
ovn_nb_connection = tcp:127.0.0.1:6641
ovn_sb_connection = tcp:127.0.0.1:6642
ovn_metadata_enabled = false
EOF

    cp "$VENV/etc/nova/api-paste.ini" "$ETC/nova/"
    local helper="$V/privsep-helper --config-file $ETC/nova/nova.conf"
    { cat <<EOF
[DEFAULT]
# Must be the OVN chassis hostname, or OVN does not bind the ports.
host = $host
my_ip = 127.0.0.1
state_path = $DATA/nova
instances_path = $DATA/nova/instances
log_file = $LOGS/nova.log
transport_url = $RABBIT
compute_driver = $AIO_COMPUTE_DRIVER
allow_resize_to_same_host = true
vif_plugging_timeout = 60
# Containers share the host's CPUs: room for more than 4 per core.
cpu_allocation_ratio = 16.0
[wsgi]
api_paste_config = $ETC/nova/api-paste.ini
[api_database]
connection = $DBU/aio_nova_api
[database]
connection = $DBU/aio_nova
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 5
[oslo_concurrency]
lock_path = $DATA/lock
[vnc]
enabled = false
[workarounds]
# The services run as root: no sudo, no rootwrap. privsep daemons start
# from the venv directly (helper_command below).
disable_rootwrap = true
[docker]
ovsdb_connection = unix:$OVS_SOCK
[os_vif_ovs]
ovsdb_connection = unix:$OVS_SOCK
[vif_plug_ovs_privileged]
helper_command = $helper
[vif_plug_linux_bridge_privileged]
helper_command = $helper
[nova_sys_admin]
helper_command = $helper
EOF
      local section
      # The driver's own privsep contexts, whatever they are named.
      for section in $(grep -rhoE "cfg_section=['\"][a-z_]+['\"]" "$TOP/novadocker" 2>/dev/null \
                       | sed -E "s/cfg_section=['\"]([a-z_]+)['\"]/\1/" | sort -u); do
          printf '[%s]\nhelper_command = %s\n' "$section" "$helper"
      done
      ktsec nova; authsec placement placement; authsec neutron neutron
      authsec service_user nova; echo "send_service_user_token = true"
    } >"$ETC/nova/nova.conf"
    echo "nova host = $host, compute_driver = $AIO_COMPUTE_DRIVER"
}

NEUTRON_CONF=(--config-file "$ETC/neutron/neutron.conf" --config-file "$ETC/neutron/plugins/ml2/ml2_conf.ini")
NOVA_MANAGE=("$V/nova-manage" --config-file "$ETC/nova/nova.conf")

dbsync_nova() {
    "${NOVA_MANAGE[@]}" api_db sync &&
    "${NOVA_MANAGE[@]}" cell_v2 map_cell0 --database_connection "$DBU/aio_nova_cell0" &&
    "${NOVA_MANAGE[@]}" db sync &&
    "${NOVA_MANAGE[@]}" cell_v2 create_cell --name cell1
}

# The four schema migrations run in the background while Keystone's
# catalog is made; wait_dbsyncs collects them.
DBSYNC_PIDS=()
start_dbsyncs() {
    ( "$V/placement-manage" --config-file "$ETC/placement/placement.conf" db sync ) >"$LOGS/dbsync-placement.log" 2>&1 &
    DBSYNC_PIDS+=("$!:placement")
    ( "$V/glance-manage" --config-file "$ETC/glance/glance-api.conf" db_sync ) >"$LOGS/dbsync-glance.log" 2>&1 &
    DBSYNC_PIDS+=("$!:glance")
    ( "$V/neutron-db-manage" "${NEUTRON_CONF[@]}" upgrade heads ) >"$LOGS/dbsync-neutron.log" 2>&1 &
    DBSYNC_PIDS+=("$!:neutron")
    ( dbsync_nova ) >"$LOGS/dbsync-nova.log" 2>&1 &
    DBSYNC_PIDS+=("$!:nova")
    echo "started: ${DBSYNC_PIDS[*]}"
}

wait_dbsyncs() {
    local entry rc=0
    for entry in "${DBSYNC_PIDS[@]}"; do
        if wait "${entry%%:*}"; then
            echo "${entry#*:}: ok"
        else
            echo "${entry#*:}: FAILED, see $LOGS/dbsync-${entry#*:}.log"
            tail -n 15 "$LOGS/dbsync-${entry#*:}.log"
            rc=1
        fi
    done
    return $rc
}

write_rc_files() {
    cat >"$AIO_DIR/adminrc" <<EOF
export OS_AUTH_URL=http://127.0.0.1:5000/v3 OS_USERNAME=admin OS_PASSWORD=$PW OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_ID=default OS_PROJECT_DOMAIN_ID=default OS_IDENTITY_API_VERSION=3 OS_REGION_NAME=RegionOne
export PATH=$V:\$PATH
EOF
    cat >"$AIO_DIR/demorc" <<EOF
export OS_AUTH_URL=http://127.0.0.1:5000/v3 OS_USERNAME=demo OS_PASSWORD=$PW OS_PROJECT_NAME=demo
export OS_USER_DOMAIN_ID=default OS_PROJECT_DOMAIN_ID=default OS_IDENTITY_API_VERSION=3 OS_REGION_NAME=RegionOne
export PATH=$V:\$PATH
EOF
    cat >"$AIO_DIR/clouds.yaml" <<EOF
# export OS_CLIENT_CONFIG_FILE=$AIO_DIR/clouds.yaml OS_CLOUD=aio   (or aio-admin)
clouds:
  aio:
    auth: {auth_url: 'http://127.0.0.1:5000/v3', username: demo, password: '$PW',
           project_name: demo, user_domain_id: default, project_domain_id: default}
    region_name: RegionOne
    identity_api_version: 3
  aio-admin:
    auth: {auth_url: 'http://127.0.0.1:5000/v3', username: admin, password: '$PW',
           project_name: admin, user_domain_id: default, project_domain_id: default}
    region_name: RegionOne
    identity_api_version: 3
EOF
}

aio_py() { OS_CLIENT_CONFIG_FILE=$AIO_DIR/clouds.yaml "$V/python" "$TOP/tools/aio.d/cloud.py" "$@"; }

# -- OpenStack services ------------------------------------------------------

start_apis() {
    uwsgi_svc placement 8778 placement.wsgi.api:application "OS_PLACEMENT_CONFIG_DIR=$ETC/placement"
    uwsgi_svc glance 9292 glance.wsgi.api:application "OS_GLANCE_CONFIG_DIR=$ETC/glance"
    uwsgi_svc neutron-api 9696 neutron.wsgi.api:application "OS_NEUTRON_CONFIG_DIR=$ETC/neutron" \
        "OS_NEUTRON_CONFIG_FILES=neutron.conf;plugins/ml2/ml2_conf.ini"
    start_svc neutron-ovn-maint "$V/neutron-ovn-maintenance-worker" "${NEUTRON_CONF[@]}"
    start_svc neutron-periodic "$V/neutron-periodic-workers" "${NEUTRON_CONF[@]}"
    uwsgi_svc nova-api 8774 nova.wsgi.osapi_compute:application "OS_NOVA_CONFIG_DIR=$ETC/nova"
    local port
    for port in 8778 9292 9696 8774; do
        wait_for "the API on port $port (logs: $LOGS/*.out)" 180 http_ok "http://127.0.0.1:$port/"
    done
    echo "APIs answer"
}

start_nova_services() {
    local s
    for s in conductor scheduler compute; do
        start_svc "nova-$s" "$V/nova-$s" --config-file "$ETC/nova/nova.conf"
    done
    if ! aio_py wait-compute --timeout 180 --pid "$(svc_pid nova-compute)"; then
        echo "--- $LOGS/nova-compute.out:"; tail -n 15 "$LOGS/nova-compute.out"
        echo "--- errors in $LOGS/nova.log:"; grep -E ' (ERROR|CRITICAL) ' "$LOGS/nova.log" | tail -n 8
        return 1
    fi
    "${NOVA_MANAGE[@]}" cell_v2 discover_hosts --verbose
}

# -- stop ----------------------------------------------------------------------

# stop_pid NAME: TERM the process group, then KILL after 20 s.
stop_pid() {
    local n=$1 p
    p=$(svc_pid "$n")
    [ -n "$p" ] || return 0
    if pid_alive "$p"; then
        kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
        local i
        for i in $(seq 1 40); do
            kill -0 -- "-$p" 2>/dev/null || kill -0 "$p" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 -- "-$p" 2>/dev/null || kill -0 "$p" 2>/dev/null; then
            echo "$n: still running after 20 s, SIGKILL"
            kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null
        fi
        echo "stopped $n (pid $p)"
    fi
    rm -f "$RUN/$n.pid"
}

stop_openstack() {
    local s pids=()
    # All at once (each takes a few seconds to drain), compute first.
    for s in $(echo "$SERVICES" | tr ' ' '\n' | tac); do
        marked "svc:$s" || continue
        stop_pid "$s" & pids+=($!)
    done
    for s in "${pids[@]}"; do wait "$s"; done
    return 0
}

stop_base() {
    if marked ovn-controller; then
        ovn-appctl -t ovn-controller exit && echo "stopped ovn-controller"
    fi
    if marked ovn-central; then
        "$OVN_CTL" stop_northd && echo "stopped OVN central (northd, NB and SB databases)"
    fi
    if marked rabbitmq; then
        rabbitmqctl -q shutdown && echo "stopped RabbitMQ"
        local p
        p=$(cat "$RUN/epmd.pid" 2>/dev/null)
        pid_alive "$p" && kill "$p" && echo "stopped epmd (pid $p)"
        rm -f "$RUN/epmd.pid"
    fi
    if marked mariadb; then
        mysqladmin shutdown && echo "stopped MariaDB"
        stop_pid mysqld_safe
    fi
    if marked svc:dockerd; then stop_pid dockerd; fi
    # lxcfs unmounts on SIGTERM; containers started since see a dead view.
    if marked svc:lxcfs; then stop_pid lxcfs; fi
    if marked ovs; then /usr/share/openvswitch/scripts/ovs-ctl stop; fi
    sed -i -E '/^(ovn-controller|ovn-central|rabbitmq|mariadb|svc:.*|ovs)$/d' "$RUN/started"
}
