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

"""Instance snapshots: ``docker commit``, then ``docker save`` into Glance.

The workload container is committed (paused while Docker copies its
filesystem diff) to a temporary local image; ``docker save`` of that image
streams through a file-like reader straight into the Glance upload, so no
temporary file is written and memory stays at about one chunk whatever the
image size. The temporary image is removed afterwards, whether the upload
worked or not. The result is an ordinary ``docker save`` tarball
(``container_format=docker``, ``disk_format=raw``) that the driver, or
``docker load``, can boot: the committed image keeps the container's
ENTRYPOINT, CMD, environment, working directory and user.
"""

import hashlib
import threading
import typing

from nova.compute import task_states
from nova import exception
from nova.i18n import _
from oslo_log import log as logging
from oslo_utils import excutils
from oslo_utils import timeutils

from novadocker import conf
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import guest as guest_mod
from novadocker.virt.docker import images
from novadocker.virt.docker import streams

CONF = conf.CONF
LOG = logging.getLogger(__name__)

SNAPSHOT_REPOSITORY = 'nova-docker/snapshot'
# Chunks of ``docker save`` read ahead of the Glance upload: the engine
# sends 32 KiB chunks (at most [docker]image_load_chunk_size each).
SAVE_PREFETCH = 32
# The workload's labels name its instance and host; a committed image would
# hand them to every container later made from it (even by hand, outside
# Nova), making that container look like this instance. Blank them.
_BLANKED_LABELS = (guest_mod.LABEL_INSTANCE, guest_mod.LABEL_HOST,
                   guest_mod.LABEL_ROLE, guest_mod.LABEL_NAME)


class SnapshotFailed(exception.NovaException):
    msg_fmt = _("Snapshot %(image_id)s of instance %(instance_uuid)s failed "
                "while %(step)s: %(reason)s")


def _host_digest(host: str) -> str:
    # Host names may hold characters a Docker tag may not.
    return hashlib.sha256(host.encode()).hexdigest()[:12]


def snapshot_tag(image_id: str, host: str) -> str:
    """Local name of the temporary committed image of one snapshot."""
    return '%s:%s-%s' % (SNAPSHOT_REPOSITORY, image_id, _host_digest(host))


def snapshot_metadata(instance, glance_meta: dict) -> dict:
    """What the Glance record needs so that a boot from it works.

    Nova created the record without formats (compute/utils.py create_image);
    the boot-relevant configuration travels inside the image itself.
    """
    properties = {
        'image_location': 'snapshot',
        'image_state': 'available',
        'owner_id': instance.project_id,
    }
    if instance.obj_attr_is_set('os_type') and instance.os_type:
        properties['os_type'] = instance.os_type
    return {
        'name': glance_meta.get('name'),
        'container_format': 'docker',
        'disk_format': 'raw',
        'properties': properties,
    }


class Snapshotter:
    """Takes one snapshot of an instance's workload container into Glance."""

    def __init__(self, api, guests: guest_mod.Guests, host: str):
        self._api = api
        self._guests = guests
        self._host = host
        # Tags of the snapshots this Snapshotter is taking right now: the
        # orphan sweep must not remove an image whose upload still runs.
        self._in_progress: typing.Set[str] = set()
        self._lock = threading.Lock()

    def in_progress(self, tag: str) -> bool:
        """Whether one of this Snapshotter's snapshots uses ``tag``."""
        with self._lock:
            return tag in self._in_progress

    def take(self, context, instance, image_id: str,
             update_task_state) -> int:
        """Commit, save and upload; return the number of bytes uploaded.

        On any failure the temporary image is removed and the container is
        left as it was (running, paused or stopped). InstanceNotFound,
        ImageNotFound and Nova's task-state errors pass through unchanged:
        the compute manager treats them as "deleted meanwhile".
        """
        guest = self._guests.get(instance)
        container_id = guest.workload_id
        was_paused = guest.paused
        glance_meta = images.IMAGE_API.get(context, image_id)
        metadata = snapshot_metadata(instance, glance_meta)
        tag = snapshot_tag(image_id, self._host)
        with self._lock:
            self._in_progress.add(tag)
        try:
            update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
            self._commit(instance, image_id, container_id, tag)
            try:
                return self._upload(context, instance, image_id, tag,
                                    metadata, update_task_state)
            finally:
                self._remove_image(tag)
        except Exception:
            with excutils.save_and_reraise_exception():
                self._restore_state(guest, was_paused)
        finally:
            with self._lock:
                self._in_progress.discard(tag)

    def _commit(self, instance, image_id: str, container_id: str,
                tag: str) -> None:
        """docker commit with the container paused (Docker unpauses it)."""
        repository, _sep, name = tag.partition(':')
        LOG.info('Snapshot %s: committing the container', image_id,
                 instance=instance)
        try:
            with docker_client.translate_errors('commit', instance=instance):
                self._api.commit(
                    container_id, repository=repository, tag=name,
                    pause=True,
                    message='nova-docker snapshot %s' % image_id,
                    changes=['LABEL ' + ' '.join(
                        '%s=""' % label for label in _BLANKED_LABELS)])
        except exception.InstanceNotFound:
            self._remove_image(tag)   # a commit racing a delete
            raise
        except docker_client.DockerOperationFailed as exc:
            self._remove_image(tag)
            raise SnapshotFailed(image_id=image_id,
                                 instance_uuid=instance.uuid,
                                 step=_('committing the container'),
                                 reason=docker_client.reason_of(exc))

    def _upload(self, context, instance, image_id: str, tag: str,
                metadata: dict, update_task_state) -> int:
        """Stream docker save of ``tag`` into the Glance image."""

        def uploading():
            update_task_state(
                task_state=task_states.IMAGE_UPLOADING,
                expected_state=task_states.IMAGE_PENDING_UPLOAD)

        return save_to_glance(self._api, context, instance, image_id, tag,
                              metadata, before_upload=uploading)

    def _remove_image(self, tag: str) -> None:
        """Remove the temporary image; idempotent, never raises."""
        try:
            images.ImageStore(self._api).remove(tag, force=True)
        except exception.NovaException as exc:
            # The orphan sweep of manage_image_cache retries it later.
            LOG.warning('Could not remove the snapshot image %s: %s',
                        tag, exc)

    @staticmethod
    def _restore_state(guest: guest_mod.Guest, was_paused: bool) -> None:
        """Unpause after a failure if the commit left the workload frozen."""
        if was_paused:
            return
        try:
            guest.reload()
            if guest.paused:
                LOG.warning('Unpausing the workload after a failed '
                            'snapshot', instance=guest.instance)
                guest.unpause()
        except exception.NovaException as exc:
            LOG.debug('No state to restore after the failed snapshot: %s',
                      exc, instance=guest.instance)


def save_to_glance(api, context, instance, image_id: str, tag: str,
                   metadata: dict, before_upload=None,
                   failure=SnapshotFailed) -> int:
    """Stream ``docker save`` of the local image ``tag`` into the existing
    Glance image ``image_id``: no temporary file, at most SAVE_PREFETCH
    chunks of memory. Returns the bytes uploaded.

    ``before_upload()`` runs once the save has produced its first chunk
    (the engine accepted it). ImageNotFound and ImageNotAuthorized (the
    Glance image went meanwhile) pass through; any other failure is
    ``failure`` (``image_id``, ``instance_uuid``, ``step``, ``reason``).
    """
    with docker_client.translate_errors('save image', image_id=image_id):
        chunks = api.get_image(tag,
                               chunk_size=CONF.docker.image_load_chunk_size)
    # Drained on a thread of its own while the upload sends: the engine
    # keeps producing instead of waiting for each send.
    reader = streams.ChunkReader(streams.prefetch(
        chunks, 'docker-save-%s' % image_id[:8], SAVE_PREFETCH))
    try:
        try:
            with docker_client.translate_errors('save image',
                                                image_id=image_id):
                reader.prime()
        except exception.NovaException as exc:
            raise failure(image_id=image_id, instance_uuid=instance.uuid,
                          step=_('saving the committed image'),
                          reason=docker_client.reason_of(exc))
        if before_upload is not None:
            before_upload()
        LOG.info('Image %s: uploading docker save of %s to Glance',
                 image_id, tag, instance=instance)
        with timeutils.StopWatch() as timer:
            _send(context, instance, image_id, metadata, reader, failure)
        LOG.info('Image %(id)s: uploaded %(size)d bytes in %(sec).1f s',
                 {'id': image_id, 'size': reader.bytes_read,
                  'sec': timer.elapsed()}, instance=instance)
        return reader.bytes_read
    finally:
        reader.close()


def _send(context, instance, image_id, metadata, reader, failure) -> None:
    try:
        images.IMAGE_API.update(context, image_id, metadata, reader,
                                purge_props=False)
    except (exception.ImageNotFound, exception.ImageNotAuthorized):
        raise   # the image was deleted meanwhile; Nova handles it
    except Exception as exc:
        if reader.error is not None:
            # docker save broke mid-stream; Glance only saw the effect.
            LOG.error('Image %s: docker save failed: %s', image_id,
                      reader.error, instance=instance)
            reason = docker_client.reason_of(reader.error)
            step = _('saving the committed image')
        else:
            reason = str(exc) or exc.__class__.__name__
            step = _('uploading to Glance')
        raise failure(image_id=image_id, instance_uuid=instance.uuid,
                      step=step, reason=reason) from exc


def remove_orphans(api, host: str,
                   in_progress: typing.Callable[[str], bool]
                   ) -> typing.List[str]:
    """Remove temporary snapshot images a crash left behind on this host.

    Only tags of this host that no running snapshot uses
    (``in_progress(tag)``: the driver's Snapshotter knows).
    """
    suffix = '-' + _host_digest(host)
    with docker_client.translate_errors('list images'):
        found = api.images(name=SNAPSHOT_REPOSITORY)
    removed = []
    for image in found:
        for tag in image.get('RepoTags') or []:
            if not tag.endswith(suffix):
                continue
            if in_progress(tag):
                continue
            try:
                if images.ImageStore(api).remove(tag, force=True):
                    removed.append(tag)
                    LOG.info('Removed orphaned snapshot image %s', tag)
            except exception.NovaException as exc:
                LOG.warning('Could not remove orphaned snapshot image '
                            '%s: %s', tag, exc)
    return removed
