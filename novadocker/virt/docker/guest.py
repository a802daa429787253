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

"""The two containers behind one instance, and their lifecycle.

Every instance is a *sandbox* container (``network_mode=none``; it only
sleeps and holds the network namespace, hostname and resolv.conf) and a
*workload* container built from the Glance image, which joins the sandbox
with ``network_mode=container:<sandbox>``. Ports are plugged into the
sandbox before the workload starts, so the workload never runs without its
network, and restarting the workload keeps the NICs.

Both containers carry labels naming the instance and the compute host; the
driver never lists or touches a container without them, because compute
hosts often run other containers (Kolla runs OpenStack itself in Docker).
"""

import shlex
import typing

from nova.compute import power_state
from nova import exception
from nova.i18n import _
from oslo_log import log as logging
from oslo_utils import units

from novadocker import conf
from novadocker.virt.docker import client as docker_client

CONF = conf.CONF
LOG = logging.getLogger(__name__)

LABEL_INSTANCE = 'org.openstack.nova.instance-uuid'
LABEL_HOST = 'org.openstack.nova.host'
LABEL_ROLE = 'org.openstack.nova-docker.role'
ROLE_WORKLOAD = 'workload'
ROLE_SANDBOX = 'sandbox'
SANDBOX_SUFFIX = '-sandbox'

# Docker State.Status -> Nova power state. A paused (frozen) container is
# PAUSED whether Nova paused or suspended it: both freeze the cgroup.
_POWER_STATES = {
    'created': power_state.SHUTDOWN,
    'running': power_state.RUNNING,
    'paused': power_state.PAUSED,
    'restarting': power_state.RUNNING,
    'removing': power_state.SHUTDOWN,
    'exited': power_state.SHUTDOWN,
    'dead': power_state.CRASHED,
}


def power_state_of(state: dict) -> int:
    """Map a container's ``State`` dict to a Nova power state."""
    if state.get('OOMKilled') and state.get('Status') == 'exited':
        return power_state.CRASHED
    return _POWER_STATES.get(state.get('Status'), power_state.NOSTATE)


def command_override(image_meta) -> typing.Optional[typing.List[str]]:
    """The Glance property os_command_line replaces the image's CMD."""
    props = getattr(image_meta, 'properties', None)
    if props is None or not props.obj_attr_is_set('os_command_line'):
        return None
    line = props.os_command_line
    return shlex.split(line) if line else None


class Guests:
    """Creates, finds and drives the containers of this host's instances."""

    def __init__(self, api, host: str):
        self._api = api
        self._host = host

    # -- finding -----------------------------------------------------------

    def _labels(self, instance, role: str) -> dict:
        return {LABEL_INSTANCE: instance.uuid, LABEL_HOST: self._host,
                LABEL_ROLE: role}

    def _list(self, role: typing.Optional[str] = None,
              instance_uuid: typing.Optional[str] = None) -> list:
        filters = ['%s=%s' % (LABEL_HOST, self._host)]
        if role:
            filters.append('%s=%s' % (LABEL_ROLE, role))
        if instance_uuid:
            filters.append('%s=%s' % (LABEL_INSTANCE, instance_uuid))
        with docker_client.translate_errors('list containers'):
            return self._api.containers(all=True, filters={'label': filters})

    def list_instance_uuids(self) -> typing.List[str]:
        """UUIDs of the instances on this host: one Docker API call."""
        return sorted({c['Labels'][LABEL_INSTANCE]
                       for c in self._list(ROLE_WORKLOAD)})

    def list_names(self) -> typing.List[str]:
        """Workload container names (= instance names): one API call."""
        return sorted(c['Names'][0].lstrip('/')
                      for c in self._list(ROLE_WORKLOAD))

    def find(self, instance, role: str = ROLE_WORKLOAD
             ) -> typing.Optional[str]:
        """ID of the instance's container of ``role``, or None."""
        found = self._list(role, instance.uuid)
        return found[0]['Id'] if found else None

    def get(self, instance, role: str = ROLE_WORKLOAD) -> str:
        """Like find, but a missing container is InstanceNotFound."""
        container_id = self.find(instance, role)
        if container_id is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        return container_id

    def inspect(self, instance, role: str = ROLE_WORKLOAD) -> dict:
        container_id = self.get(instance, role)
        with docker_client.translate_errors('inspect', instance=instance):
            return self._api.inspect_container(container_id)

    def power_state(self, instance) -> int:
        return power_state_of(self.inspect(instance)['State'])

    def sandbox_pid(self, instance) -> int:
        """PID whose /proc/<pid>/ns/net is the instance's netns (0 if the
        sandbox is not running)."""
        return self.inspect(instance, ROLE_SANDBOX)['State']['Pid']

    # -- creating ----------------------------------------------------------

    def create_sandbox(self, instance, sandbox_image_id: str,
                       dns: typing.Sequence[str] = (),
                       dns_search: typing.Sequence[str] = ()) -> str:
        """Create and start the namespace-holding container from the
        sandbox image's ID (resolved at start-up, not a re-pointable name).
        """
        host_config = self._api.create_host_config(
            network_mode='none', restart_policy={'Name': 'no'},
            dns=list(dns) or None, dns_search=list(dns_search) or None,
            pids_limit=16, mem_limit=32 * units.Mi,
            security_opt=['no-new-privileges'], cap_drop=['ALL'],
            init=False)
        with docker_client.translate_errors('create sandbox',
                                            instance=instance):
            created = self._api.create_container(
                sandbox_image_id, name=instance.name + SANDBOX_SUFFIX,
                hostname=(instance.hostname or instance.name)[:63],
                labels=self._labels(instance, ROLE_SANDBOX),
                host_config=host_config, network_disabled=False)
            self._api.start(created['Id'])
        return created['Id']

    def workload_host_config(self, instance, sandbox_id: str) -> dict:
        """Flavor limits and the hardening every workload gets."""
        flavor = instance.flavor
        memory = flavor.memory_mb * units.Mi
        options = dict(
            network_mode='container:%s' % sandbox_id,
            mem_limit=memory,
            memswap_limit=memory,   # no swap beyond the flavor's RAM
            cpu_shares=max(2, flavor.vcpus * 1024),
            pids_limit=CONF.docker.pids_limit,
            privileged=False,
            security_opt=['no-new-privileges'],
            restart_policy={'Name': 'no'},   # Nova owns the power state
        )
        if CONF.docker.cpu_quota:
            options['cpu_period'] = CONF.docker.cpu_period_us
            options['cpu_quota'] = flavor.vcpus * CONF.docker.cpu_period_us
        return self._api.create_host_config(**options)

    def create_workload(self, instance, docker_image_id: str, image_meta,
                        sandbox_id: str) -> str:
        """Create (not start) the workload container from the image."""
        with docker_client.translate_errors('create container',
                                            instance=instance):
            created = self._api.create_container(
                docker_image_id, name=instance.name,
                command=command_override(image_meta),
                labels=self._labels(instance, ROLE_WORKLOAD),
                # A terminal keeps shell-CMD images (busybox, ubuntu) alive
                # the way a VM console does; the log is the console output.
                tty=True, stdin_open=True,
                host_config=self.workload_host_config(instance, sandbox_id))
        return created['Id']

    # -- driving -----------------------------------------------------------

    def start(self, instance, role: str = ROLE_WORKLOAD) -> None:
        container_id = self.get(instance, role)
        with docker_client.translate_errors('start', instance=instance):
            self._api.start(container_id)

    def stop(self, instance, timeout: int,
             role: str = ROLE_WORKLOAD) -> None:
        """SIGTERM (the image's StopSignal), then SIGKILL after timeout."""
        container_id = self.get(instance, role)
        with docker_client.translate_errors('stop', instance=instance):
            state = self._api.inspect_container(container_id)['State']
            if state['Paused']:
                self._api.unpause(container_id)
            self._api.stop(container_id, timeout=max(0, int(timeout)))

    def kill(self, instance, role: str = ROLE_WORKLOAD) -> None:
        self.stop(instance, 0, role)

    def restart(self, instance, timeout: int) -> None:
        self.stop(instance, timeout)
        self.start(instance)

    def pause(self, instance) -> None:
        container_id = self.get(instance)
        with docker_client.translate_errors('pause', instance=instance):
            self._api.pause(container_id)

    def unpause(self, instance) -> None:
        """Thaw the workload; a no-op if it is not frozen (Nova's driver
        contract: unpause/resume of a running instance must not fail)."""
        container_id = self.get(instance)
        with docker_client.translate_errors('unpause', instance=instance):
            if not self._api.inspect_container(container_id)['State'][
                    'Paused']:
                return
            self._api.unpause(container_id)

    def remove(self, instance) -> None:
        """Remove both containers. Idempotent."""
        for container in self._list(instance_uuid=instance.uuid):
            try:
                with docker_client.translate_errors('remove',
                                                    instance=instance):
                    self._api.remove_container(container['Id'], force=True,
                                               v=True)
            except exception.InstanceNotFound:
                pass

    # -- reading -----------------------------------------------------------

    def console_log(self, instance, max_bytes: int) -> bytes:
        """The tail of the workload's log, at most max_bytes."""
        container_id = self.get(instance)
        # Docker can only tail by lines: ask for a few lines and widen
        # until the budget is filled or the whole log came back, so a huge
        # log is never transferred whole and short lines still fill it.
        lines = max(64, max_bytes // 128)
        with docker_client.translate_errors('logs', instance=instance):
            while True:
                data = self._api.logs(container_id, stdout=True,
                                      stderr=True, tail=lines)
                if len(data) >= max_bytes or data.count(b'\n') < lines:
                    break
                lines *= 4
        return data[-max_bytes:]

    def stats(self, instance) -> dict:
        container_id = self.get(instance)
        with docker_client.translate_errors('stats', instance=instance):
            return self._api.stats(container_id, stream=False)

    def describe_failure(self, instance) -> str:
        """Why a workload is not running, for a readable instance fault."""
        try:
            state = self.inspect(instance)['State']
        except exception.NovaException:
            return _('container not found')
        return state.get('Error') or _('exit code %s') % state.get('ExitCode')
