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

"""The config drive as a read-only directory, ``/config-drive``.

Nova's own metadata (``InstanceMetadata.metadata_for_config_drive``, what
``ConfigDriveBuilder`` puts on a libvirt config drive: ``openstack/*/
meta_data.json``, ``user_data``, ``network_data.json``, ``vendor_data*``,
``ec2/*``, injected files under ``openstack/content``) is written on the
host under ``<instances_path>/<uuid>/config-drive`` and bound read-only into
the workload: nothing is written inside the container, and cloud-init's
ConfigDrive datasource reads the same layout from a directory.
"""

import os
import shutil
import typing

from nova.api.metadata import base as instance_metadata
from nova.virt import configdrive as nova_configdrive
from oslo_log import log as logging

from novadocker import conf

CONF = conf.CONF
LOG = logging.getLogger(__name__)
MOUNT_POINT = '/config-drive'


def host_path(instance) -> str:
    return os.path.join(CONF.instances_path, instance.uuid, 'config-drive')


def wanted(instance) -> bool:
    """Nova's rule (the instance asked, force_config_drive for a new
    instance, or the image's img_config_drive=mandatory)."""
    if not all(instance.obj_attr_is_set(f)
               for f in ('config_drive', 'launched_at')):
        return False   # a partial instance object (never from Nova)
    return bool(nova_configdrive.required_by(instance))


def build(instance, injected_files, admin_password,
          network_info) -> typing.Optional[str]:
    """Write the config drive directory if the instance wants one; return
    its host path (None: no config drive). Before the workload exists."""
    if not wanted(instance):
        return None
    extra_md = {'admin_pass': admin_password} if admin_password else {}
    metadata = instance_metadata.InstanceMetadata(
        instance, content=injected_files, extra_md=extra_md,
        network_info=network_info)
    target = host_path(instance)
    staging = target + '.new'
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging, mode=0o755)
    for path, data in metadata.metadata_for_config_drive():
        full = os.path.normpath(os.path.join(staging, path))
        if not full.startswith(staging + os.sep):
            continue   # Nova's paths are relative; never write elsewhere
        os.makedirs(os.path.dirname(full), mode=0o755, exist_ok=True)
        with open(full, 'wb') as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        os.chmod(full, 0o644)
    shutil.rmtree(target, ignore_errors=True)
    os.rename(staging, target)
    LOG.debug('Config drive written to %s', target, instance=instance)
    return target


def bind(instance) -> typing.List[str]:
    """The read-only bind for the workload, if a config drive was built."""
    path = host_path(instance)
    return ['%s:%s:ro' % (path, MOUNT_POINT)] if os.path.isdir(path) else []


def remove(instance) -> None:
    """Remove the directory (and the instance's, if then empty)."""
    shutil.rmtree(host_path(instance), ignore_errors=True)
    shutil.rmtree(host_path(instance) + '.new', ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(host_path(instance)))
    except OSError:
        pass
