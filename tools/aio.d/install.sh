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
# Install steps of tools/aio (sourced). Each is idempotent and fast when
# there is nothing to do.

# Debian packages: the services that do not come from PyPI.
AIO_DEBS="mariadb-server rabbitmq-server ovn-central ovn-host openvswitch-switch
docker.io busybox-static lxcfs iproute2 iptables iputils-ping curl python3-venv python3-dev gcc"

# The OpenStack services, all in one venv (no conflicts between them);
# versions are pinned by tools/aio-constraints.txt.
AIO_PIP="nova==34.0.0 neutron==29.0.0 glance==33.0.0 keystone==30.0.0
openstack-placement==16.0.0 python-openstackclient osc-placement openstacksdk
uwsgi pymysql stestr testtools"

# Where the packages put the docker command: docker.io up to bookworm,
# docker-cli from trixie on (docker.io 26 only recommends it, and
# recommends are not installed here). Another docker on PATH does not count.
AIO_DOCKER_CLI=${AIO_DOCKER_CLI:-/usr/bin/docker}

install_debs() {
    local missing=() p
    for p in $AIO_DEBS; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing: ${missing[*]}"
        apt_install "${missing[@]}" || return
    fi
    if [ ! -x "$AIO_DOCKER_CLI" ]; then
        echo "installing: docker-cli (docker.io has no $AIO_DOCKER_CLI)"
        apt_install docker-cli || return
    elif [ ${#missing[@]} -eq 0 ]; then
        echo "all present"
    fi
}

apt_install() {
    # No systemd: keep package scripts from starting services; tools/aio
    # starts each one itself.
    [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# The venv is rebuilt only when the pins or the driver's requirements
# change; pip's cache (~/.cache/pip) makes a rebuild cheap.
install_venv() {
    local want stamp=$VENV/.aio-stamp
    want=$(cat "$TOP/tools/aio-constraints.txt" "$TOP/requirements.txt" 2>/dev/null | sha256sum | cut -d' ' -f1)
    want="$want $AIO_PIP"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        [ -x "$V/python" ] || "$AIO_PYTHON" -m venv "$VENV"
        "$V/pip" install -q -U pip
        local cons=()
        [ -s "$TOP/tools/aio-constraints.txt" ] && cons=(-c "$TOP/tools/aio-constraints.txt")
        # shellcheck disable=SC2086
        "$V/pip" install "${cons[@]}" $AIO_PIP -r "$TOP/requirements.txt"
        "$V/pip" check || echo "pip check reported the above (not fatal)"
        echo "$want" >"$stamp"
    else
        echo "venv up to date"
    fi
    # This checkout, as operators install it: non-editable, so that
    # nova/virt/docker lands inside nova's package (pbr's path spelling
    # breaks editable installs).
    "$V/pip" install -q --no-deps --force-reinstall "$TOP"
    "$V/python" -c 'import nova.virt.docker, novadocker.virt.docker.driver'
}
