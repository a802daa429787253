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

"""Rescue: the rescue image runs in the instance's sandbox, with the
stopped workload's filesystem mounted read-write at ``/rescue``.

The workload container is left alone (stopped). Its filesystem is mounted
by the engine itself, so nova-compute needs no privileges and no view of
Docker's data root: on overlay2 as an anonymous ``local`` volume of type
overlay over the workload's own layers (its upper directory keeps what the
rescue writes; removing the volume unmounts it, the data stays), on btrfs as
a bind mount of the workload's subvolume. The two never run together: the
workload is stopped first, and starts again only after the rescue container
is gone.
"""

from nova import exception
from nova.i18n import _
from oslo_log import log as logging

from novadocker import conf
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import guest as guest_mod

CONF = conf.CONF
LOG = logging.getLogger(__name__)

ROLE_RESCUE = 'rescue'
RESCUE_SUFFIX = '-rescue'
MOUNT_POINT = '/rescue'


def rescue_name(instance) -> str:
    return guest_mod.container_name(instance) + RESCUE_SUFFIX


class Rescuer:
    """Starts and removes the rescue container of an instance."""

    def __init__(self, api, guests: guest_mod.Guests):
        self._api = api
        self._guests = guests

    def _root_mount(self, guest: guest_mod.Guest) -> dict:
        """A read-write mount of the stopped workload's filesystem."""
        instance = guest.instance
        state = guest.inspect()
        driver = state.get('GraphDriver') or {}
        data = driver.get('Data') or {}
        if driver.get('Name') in ('overlay2', 'overlay') and \
                all(data.get(k) for k in ('LowerDir', 'UpperDir', 'WorkDir')):
            # The engine mounts an overlay of the workload's own layers:
            # what the rescue writes lands in the workload's upper dir.
            options = 'lowerdir=%s,upperdir=%s,workdir=%s' % (
                data['LowerDir'], data['UpperDir'], data['WorkDir'])
            return {'Target': MOUNT_POINT, 'Type': 'volume',
                    'ReadOnly': False,
                    'VolumeOptions': {'DriverConfig': {
                        'Name': 'local',
                        'Options': {'type': 'overlay', 'device': 'overlay',
                                    'o': options}}}}
        if driver.get('Name') == 'btrfs':
            # The container's root is a subvolume, always there: bind it.
            return {'Target': MOUNT_POINT, 'Type': 'bind',
                    'ReadOnly': False,
                    'Source': self._btrfs_subvolume(instance, state['Id'])}
        raise exception.InstanceNotRescuable(
            instance_id=instance.uuid,
            reason=_('rescue needs the overlay2 or btrfs storage driver '
                     '(this engine uses %s)') % driver.get('Name'))

    def _btrfs_subvolume(self, instance, container_id: str) -> str:
        """Path of the workload's btrfs subvolume on the engine's host.

        Docker does not report it (the layer's mount id is only in its
        layer database, readable by root): a short-lived container of
        the sandbox image reads it, so nova-compute needs no access to
        Docker's data root.
        """
        with docker_client.translate_errors('info'):
            root = self._api.info()['DockerRootDir']
        layerdb = '%s/image/btrfs/layerdb/mounts' % root
        host_config = self._api.create_host_config(
            binds={layerdb: {'bind': '/mounts', 'mode': 'ro'}},
            network_mode='none', cap_drop=['ALL'],
            security_opt=['no-new-privileges'])
        labels = self._guests.labels(instance, 'rescue-probe')
        with docker_client.translate_errors('read btrfs mount id',
                                            instance=instance):
            created = self._api.create_container(
                CONF.docker.sandbox_image, labels=labels,
                command=['cat', '/mounts/%s/mount-id' % container_id],
                host_config=host_config, network_disabled=True)
            try:
                self._api.start(created['Id'])
                result = self._api.wait(created['Id'], timeout=60)
                output = self._api.logs(created['Id'], stdout=True,
                                        stderr=True)
            finally:
                self._api.remove_container(created['Id'], force=True)
        mount_id = output.decode(errors='replace').strip()
        if result.get('StatusCode') != 0 or \
                not mount_id.replace('-', '').isalnum():
            raise exception.InstanceNotRescuable(
                instance_id=instance.uuid,
                reason=_('cannot find the btrfs subvolume of the '
                         'workload: %s') % mount_id)
        return '%s/btrfs/subvolumes/%s' % (root, mount_id)

    def start(self, guest: guest_mod.Guest, docker_image: str,
              image_meta) -> str:
        """Create and start the rescue container; nothing is left if that
        fails."""
        instance = guest.instance
        self.remove(guest)    # a failed earlier rescue
        config = self._guests.workload_host_config(instance, guest.sandbox_id)
        config['Mounts'] = [self._root_mount(guest)]
        config.pop('StorageOpt', None)
        labels = self._guests.labels(instance, ROLE_RESCUE)
        try:
            with docker_client.translate_errors('create rescue',
                                                instance=instance):
                created = self._api.create_container(
                    docker_image, name=rescue_name(instance),
                    command=guest_mod.command_override(image_meta),
                    labels=labels, tty=True, stdin_open=True,
                    host_config=config)
            # Under the init a missing command would start and exit: refuse
            # it here, as the workload's is at spawn.
            guest.reload()
            guest.check_command(ROLE_RESCUE)
            try:
                with docker_client.translate_errors('start rescue',
                                                    instance=instance):
                    self._api.start(created['Id'])
            finally:
                self._guests.changed(instance.uuid)
        except Exception:
            LOG.warning('Rescue failed; removing the rescue container',
                        instance=instance)
            guest.reload()
            self.remove(guest)
            raise
        LOG.info('Rescue container %s started, instance filesystem at %s',
                 rescue_name(instance), MOUNT_POINT, instance=instance)
        return created['Id']

    def remove(self, guest: guest_mod.Guest) -> None:
        """Stop and remove the rescue container and its volume. Idempotent.

        Stopped first, so the overlay is unmounted before the volume goes.
        """
        if not guest.has(ROLE_RESCUE):
            return
        container_id = guest.id(ROLE_RESCUE)
        with docker_client.translate_errors('remove rescue',
                                            instance=guest.instance):
            self._api.stop(container_id, timeout=0)
            self._api.remove_container(container_id, v=True, force=True)
        guest.reload()
