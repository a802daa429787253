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

"""Cold migration (and resize) to another host, through hidden Glance.

A container's filesystem cannot leave its engine, so the source sends the
resize commit (``resize.backup_tag``) as a ``docker save`` stream into a
new private, hidden Glance image of the instance's project (the same
streaming upload as a snapshot: no temporary file, bounded memory). The
destination loads it like any Glance image and deletes the Glance copy
once its workload exists; the commit stays on the source for a revert
until the resize is confirmed.
"""

import json
import typing

from nova import exception
from nova.i18n import _
from oslo_log import log as logging

from novadocker.virt.docker import images
from novadocker.virt.docker import resize
from novadocker.virt.docker import snapshot

LOG = logging.getLogger(__name__)

# The Glance property naming a transfer image, its value the instance UUID.
MIGRATION_PROPERTY = 'nova_docker_migration_of'


class TransferFailed(exception.NovaException):
    msg_fmt = _("Sending instance %(instance_uuid)s to the destination "
                "through Glance image %(image_id)s failed while %(step)s: "
                "%(reason)s")


def image_record(instance) -> dict:
    """The Glance record of a transfer image: visible to no one's image
    list (hidden), usable only by the instance's project (private)."""
    return {
        'name': 'nova-docker migration of %s' % instance.uuid,
        'container_format': 'docker',
        'disk_format': 'raw',
        'visibility': 'private',
        'os_hidden': True,
        'properties': {MIGRATION_PROPERTY: instance.uuid},
    }


def send(api, context, instance) -> str:
    """Upload the instance's resize commit into a new hidden Glance image;
    return its ID. On failure the Glance image is deleted again."""
    record = image_record(instance)
    image_id = images.IMAGE_API.create(context, record)['id']
    try:
        snapshot.save_to_glance(
            api, context, instance, image_id, resize.backup_tag(instance),
            {'container_format': 'docker', 'disk_format': 'raw'},
            failure=TransferFailed)
    except Exception:
        delete_image(context, image_id)
        raise
    return image_id


def delete_image(context, image_id: str) -> None:
    """Delete a transfer image; already gone is fine, a failure is
    logged (the image is hidden and private: a leak, not a fault)."""
    try:
        images.IMAGE_API.delete(context, image_id)
    except exception.ImageNotFound:
        pass
    except Exception as exc:
        LOG.warning('Could not delete the migration image %s from '
                    'Glance: %s', image_id, exc)


def disk_info(image_id: str) -> str:
    """What migrate_disk_and_power_off hands to finish_migration."""
    return json.dumps({'image_id': image_id})


def image_of(disk_info_json) -> typing.Optional[str]:
    """The transfer image named by ``disk_info``; None for a same-host
    resize (its disk_info is ``[]``)."""
    try:
        found = json.loads(disk_info_json or '[]')
    except (TypeError, ValueError):
        return None
    return found.get('image_id') if isinstance(found, dict) else None


def image_meta(image_id: str):
    """The ImageMeta the destination loads the transfer image with."""
    from nova import objects
    return objects.ImageMeta.from_dict({
        'id': image_id, 'container_format': 'docker', 'disk_format': 'raw'})
