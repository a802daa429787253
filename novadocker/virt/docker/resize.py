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

"""Resize and cold migration, and the flavor's root disk.

Nova's resize is a cold move: ``migrate_disk_and_power_off`` stops the
workload, ``finish_migration`` gives it the new flavor, and the user then
confirms (the old copy is dropped) or reverts (the old copy comes back as it
was). Here the "old copy" is a ``docker commit`` of the stopped workload,
tagged ``nova-docker/resize:<uuid>``: it survives the ``destroy`` Nova runs
before ``finish_revert_migration``, and a revert recreates the workload from
it with the old flavor, exactly as libvirt restores the old disk.

The new flavor's limits go on the existing container with ``docker
update`` (the filesystem stays in place); only when the engine enforces
root disk sizes and the size changes is the workload recreated from the
commit, since Docker cannot change ``storage_opt`` on a container.

To another host the commit travels through a hidden Glance image
(``migrate``); it stays on the source for a revert as well.
"""

import uuid

from nova import exception
from nova.i18n import _
from oslo_log import log as logging
from oslo_utils import units

from novadocker import conf
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import guest as guest_mod
from novadocker.virt.docker import images

CONF = conf.CONF
LOG = logging.getLogger(__name__)

RESIZE_REPOSITORY = 'nova-docker/resize'
# The host-config keys a resize changes, as the update API names them.
_UPDATE_KEYS = ('Memory', 'MemorySwap', 'CpuShares', 'CpuPeriod',
                'CpuQuota', 'PidsLimit')


def backup_tag(instance) -> str:
    """The committed pre-resize workload, kept until confirm/revert."""
    return '%s:%s' % (RESIZE_REPOSITORY, instance.uuid)


def probe_root_quota(api) -> bool:
    """True if the engine enforces ``storage_opt size`` (overlay2 on XFS
    with pquota, btrfs, zfs): create (never start) a container asking for
    it. The engine's own answer is the only truthful test."""
    host_config = api.create_host_config(storage_opt={'size': '1G'},
                                         network_mode='none')
    try:
        with docker_client.translate_errors('probe storage_opt'):
            created = api.create_container(
                CONF.docker.sandbox_image,
                name='nova-docker-probe-%s' % uuid.uuid4().hex[:12],
                labels={guest_mod.LABEL_ROLE: 'probe'},
                host_config=host_config, network_disabled=True)
    except docker_client.DockerOperationFailed as exc:
        LOG.info('storage_opt size refused: %s', exc)
        return False
    with docker_client.translate_errors('remove probe'):
        api.remove_container(created['Id'], force=True, v=True)
    return True


def _rollback(reason: str) -> exception.InstanceFaultRollback:
    """The manager puts the instance back as it was and records reason."""
    return exception.InstanceFaultRollback(
        inner_exception=exception.ResizeError(reason=reason))


def is_local_destination(dest: str, local_names) -> bool:
    """Whether ``dest`` (the migration's dest_host) names this host."""
    return dest in {n for n in local_names if n}


def check_new_flavor(api, instance, flavor, host,
                     container_id: str) -> None:
    """Refuse, with the instance untouched, what the resize cannot do:
    more than ``host`` has (None: another host, whose capacity the
    scheduler checked), a disk smaller than the instance's data, an
    ephemeral disk."""
    try:
        guest_mod.check_flavor(flavor)
    except guest_mod.EphemeralDiskUnsupported as exc:
        raise _rollback(str(exc))
    if host is not None:
        _check_fits_host(flavor, host)
    size = flavor.root_gb
    if size:
        used = root_fs_bytes(api, instance, container_id)
        if used > size * units.Gi:
            raise _rollback(
                _('flavor %(flavor)s disk of %(root)d GB is smaller '
                  'than the instance\'s data (%(used)d MB)') % {
                    'flavor': flavor.name, 'root': size,
                    'used': used // units.Mi})


def _check_fits_host(flavor, host) -> None:
    if flavor.vcpus > host.vcpus or flavor.memory_mb > host.memory_mb:
        raise _rollback(
            _('flavor %(flavor)s (%(vcpus)d vCPU, %(mem)d MB) does not fit '
              'this host (%(hvcpus)d vCPU, %(hmem)d MB)') % {
                'flavor': flavor.name, 'vcpus': flavor.vcpus,
                'mem': flavor.memory_mb, 'hvcpus': host.vcpus,
                'hmem': host.memory_mb})
    if flavor.root_gb and flavor.root_gb > host.disk_gb:
        raise _rollback(
            _('flavor %(flavor)s disk of %(root)d GB is larger than '
              'this host\'s disk (%(disk)d GB)') % {
                'flavor': flavor.name, 'root': flavor.root_gb,
                'disk': host.disk_gb})


def root_fs_bytes(api, instance, container_id: str) -> int:
    """Size of the workload's whole filesystem (image and writes)."""
    with docker_client.translate_errors('container size', instance=instance):
        found = api.containers(all=True, size=True,
                               filters={'id': container_id})
    if not found:
        raise exception.InstanceNotFound(instance_id=instance.uuid)
    return int(found[0].get('SizeRootFs') or 0)


def commit_backup(api, instance, container_id: str) -> None:
    """Commit the stopped workload: the copy a revert brings back."""
    repository, _sep, tag = backup_tag(instance).partition(':')
    with docker_client.translate_errors('commit', instance=instance):
        api.commit(container_id, repository=repository, tag=tag,
                   pause=False,
                   message='nova-docker resize of %s' % instance.uuid)


def remove_backup(api, instance) -> None:
    """Drop the pre-resize copy; kept (and logged) while a container still
    uses it as its image (a recreated workload), removed at destroy."""
    images.ImageStore(api).remove(backup_tag(instance))


def storage_size(api, container_id: str):
    """The container's storage_opt size, or None."""
    with docker_client.translate_errors('inspect'):
        config = api.inspect_container(container_id)['HostConfig']
    return (config.get('StorageOpt') or {}).get('size')


def update_limits(api, guests, instance, container_id: str,
                  sandbox_id: str) -> None:
    """``docker update`` the flavor's CPU, memory, swap and pids limits
    in place (the docker SDK's update_container knows no PidsLimit)."""
    wanted = guests.workload_host_config(instance, sandbox_id)
    body = {key: wanted[key] for key in _UPDATE_KEYS if key in wanted}
    with docker_client.translate_errors('update', instance=instance):
        api._result(api._post_json(
            api._url('/containers/{0}/update', container_id), data=body),
            True)


def recreate_workload(api, guests, instance, sandbox_id: str,
                      runtime) -> None:
    """Replace the workload by one made from the resize commit (a new root
    disk size); the old container is back in place if that fails."""
    old_id = guests.get(instance).workload_id
    name = guest_mod.container_name(instance)
    aside = name + '-resizing'
    with docker_client.translate_errors('rename', instance=instance):
        api.rename(old_id, aside)
    try:
        guests.create_workload(instance, backup_tag(instance), None,
                               sandbox_id, runtime)
    except Exception:
        with docker_client.translate_errors('rename', instance=instance):
            api.rename(old_id, name)
        raise
    try:
        with docker_client.translate_errors('remove', instance=instance):
            api.remove_container(old_id, force=True, v=True)
    finally:
        guests.changed(instance.uuid)
