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

"""Image cache ageing: Nova's image cache manager over the Docker store.

The Docker store is the cache: every image the driver loaded is tagged
nova-docker/glance:<glance id>, and ImageStore.touch() re-tags it on each
use, which moves the image's Metadata.LastTagTime. That is "last used".
docker load itself leaves LastTagTime unset (and Created is when the image
was built, maybe months ago), so an image never touched since its load
has its clock started by the first ageing pass that sees it.
"""

import typing

from nova import exception
from nova.virt import imagecache
from oslo_log import log as logging
from oslo_utils import timeutils

from novadocker import conf
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import images

CONF = conf.CONF
LOG = logging.getLogger(__name__)


class CachedImage(typing.NamedTuple):
    """One Glance image in the local cache."""
    glance_id: str
    docker_id: str
    last_used: typing.Any   # aware datetime (UTC); None: not since load


def _last_used(inspected: dict):
    """LastTagTime (moved by every touch); None if never tagged."""
    stamp = (inspected.get('Metadata') or {}).get('LastTagTime') or ''
    if stamp and not stamp.startswith('0001-'):
        return timeutils.parse_isotime(stamp)
    return None


def list_cached(api) -> typing.List[CachedImage]:
    """The images the driver loaded: only the nova-docker/glance tags."""
    with docker_client.translate_errors('list images'):
        found = api.images(name=images.GLANCE_REPOSITORY)
    prefix = images.GLANCE_REPOSITORY + ':'
    cached = []
    for image in found:
        glance_ids = [tag[len(prefix):] for tag in image.get('RepoTags') or []
                      if tag.startswith(prefix)]
        if not glance_ids:
            continue
        try:
            with docker_client.translate_errors('inspect image',
                                                image_id=image['Id']):
                inspected = api.inspect_image(image['Id'])
        except exception.ImageNotFound:
            continue   # removed meanwhile
        for glance_id in glance_ids:
            cached.append(CachedImage(glance_id, image['Id'],
                                      _last_used(inspected)))
    return cached


def age_cache(api, in_use_glance_ids: typing.Iterable[str],
              min_age_seconds: int, remove_unused: bool = True,
              now=None) -> typing.Dict[str, typing.List[str]]:
    """One pass of image cache ageing over the driver's own images.

    An image is in use when an instance Nova lists uses its Glance ID or any
    container on the engine uses its Docker image. Images in use are touched,
    so their age restarts when the last user goes. Unused images last used
    at least ``min_age_seconds`` ago are removed if ``remove_unused``
    (ImageStore.remove, which looks again under the image's lock).
    Images not touched since their load are touched (their clock starts)
    and kept. Returns the Glance IDs by outcome: in_use, removed, kept.
    """
    in_use_glance_ids = set(in_use_glance_ids)
    used_docker_ids = images.images_used_by_containers(api)
    now = now or timeutils.utcnow(with_timezone=True)
    result: typing.Dict[str, typing.List[str]] = {
        'in_use': [], 'removed': [], 'kept': []}
    store = images.ImageStore(api)
    for image in list_cached(api):
        in_use = (image.glance_id in in_use_glance_ids or
                  image.docker_id in used_docker_ids)
        if in_use or image.last_used is None:
            # In use: its age restarts. Never used since its load (loaded
            # before the driver marked loads): its age starts now.
            result['in_use' if in_use else 'kept'].append(image.glance_id)
            try:
                store.touch(image.glance_id)
            except exception.NovaException as exc:
                LOG.warning('Image cache: could not touch %s: %s',
                            image.glance_id, exc)
            continue
        age = (now - image.last_used).total_seconds()
        if not remove_unused or age < min_age_seconds:
            result['kept'].append(image.glance_id)
            continue
        if store.remove(images.glance_tag(image.glance_id),
                        keep_if=_used_within(min_age_seconds)):
            LOG.info('Image cache: removed image %s, unused for %d seconds',
                     image.glance_id, age)
            result['removed'].append(image.glance_id)
        else:
            result['kept'].append(image.glance_id)
    return result


def _used_within(min_age_seconds: int) -> typing.Callable[[dict], bool]:
    """The re-check under the image's lock: a spawn may have touched it
    since the listing (or nothing ever did, since its load)."""

    def used(inspected: dict) -> bool:
        last_used = _last_used(inspected)
        return last_used is None or (
            timeutils.utcnow(with_timezone=True) - last_used
        ).total_seconds() < min_age_seconds

    return used


class ImageCacheManager(imagecache.ImageCacheManager):
    """Nova's image cache manager for the Docker store, as libvirt's is for
    its base directory: ``update()`` is one pass of :func:`age_cache`.

    The options are read when it is made ([image_cache]
    remove_unused_base_images and remove_unused_original_minimum_age_
    seconds), so a manager per pass follows option changes. The Glance
    IDs in use are the instances' ``image_ref``, as nova's
    ``_list_running_instances`` counts them; that helper is not called: it
    also fetches every instance's block device mappings (swap and
    ephemeral files, which containers have none of) from the database.
    """

    def __init__(self, api):
        super().__init__()
        self._api = api
        self.min_age_seconds = (
            CONF.image_cache.remove_unused_original_minimum_age_seconds)

    def update(self, context, all_instances
               ) -> typing.Dict[str, typing.List[str]]:
        in_use = {instance.image_ref for instance in all_instances
                  if instance.image_ref}
        return age_cache(self._api, in_use, self.min_age_seconds,
                         self.remove_unused_base_images)
