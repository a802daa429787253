#!/bin/bash
#
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
# plugin.sh - devstack plugin entry point for nova-docker.
#
# local.conf:
#     [[local|localrc]]
#     VIRT_DRIVER=docker
#     enable_plugin nova-docker <url of this repository>
#
# devstack sources this file as "plugin.sh MODE PHASE". The plugin acts
# only when VIRT_DRIVER=docker: compute nodes (n-cpu) get Docker, this
# package and their nova.conf; the Glance node (g-api) accepts
# container_format=docker and gets a busybox image built on the spot, which
# Tempest boots (and its scenario tests upload) on the Tempest node.

# Save trace setting
_XTRACE_NOVA_DOCKER_PLUGIN=$(set +o | grep xtrace)
set -o xtrace

# shellcheck source=devstack/lib/nova-docker
source "$(dirname "${BASH_SOURCE[0]}")/lib/nova-docker"

if [[ "$VIRT_DRIVER" == "docker" ]]; then
    _nova_docker_upload=False
    if is_service_enabled g-api && \
            [[ "$NOVA_DOCKER_UPLOAD_IMAGE" == "True" ]]; then
        _nova_docker_upload=True
    fi

    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        if is_service_enabled n-cpu; then
            echo_summary "Installing Docker and nova-docker"
            install_nova_docker
        elif [[ "$_nova_docker_upload" == "True" ]] || \
                is_service_enabled tempest; then
            # The busybox image is built with the local Docker engine.
            echo_summary "Installing Docker to build the nova-docker image"
            install_nova_docker_engine
        fi

    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        if is_service_enabled n-cpu; then
            echo_summary "Configuring Nova for nova-docker"
            configure_nova_docker
        fi
        if is_service_enabled g-api; then
            echo_summary "Configuring Glance for container_format=docker"
            configure_glance_for_docker
        fi
        if is_service_enabled q-svc neutron-api; then
            echo_summary "Configuring Neutron's events to Nova"
            configure_neutron_for_docker
        fi

    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        if [[ "$_nova_docker_upload" == "True" ]]; then
            echo_summary "Uploading the nova-docker busybox image"
            upload_nova_docker_image
        fi

    elif [[ "$1" == "stack" && "$2" == "test-config" ]]; then
        if is_service_enabled tempest; then
            echo_summary "Configuring Tempest for nova-docker"
            configure_tempest_for_docker
        fi

    elif [[ "$1" == "unstack" ]]; then
        # dockerd is a host service other users may rely on: leave it
        # running. Instances stay as containers, as libvirt domains do.
        :

    elif [[ "$1" == "clean" ]]; then
        echo_summary "Removing nova-docker containers and images"
        cleanup_nova_docker
    fi
    unset _nova_docker_upload
fi

# Restore xtrace
$_XTRACE_NOVA_DOCKER_PLUGIN
