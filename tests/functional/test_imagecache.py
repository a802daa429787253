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

"""Image cache ageing on the real engine, with real images of different
ages (the minimum age is set to one second instead of a day).

Other tests share the engine, and their cached images are legitimately
unused for a moment between load and spawn. So each test here sees only
its own Glance images: the real listing runs, filtered to this test's IDs.
In production one nova-compute owns the engine's nova-docker/glance images.
"""

import hashlib
import io
import json
import tarfile
import time
from unittest import mock
import uuid

import docker.errors
import fixtures
from nova import objects
from oslo_utils import timeutils

from novadocker.virt.docker import imagecache
from novadocker.virt.docker import images
from novadocker.virt.docker import snapshot
from tests.fixtures import docker as docker_fixtures
from tests.fixtures import images as image_fixtures
from tests.functional import base

MIN_AGE = 1


def distinct_image() -> bytes:
    """A tarball whose image ID is its own (a unique file in the layer)."""
    return image_fixtures.build_saved_image(
        changes=('CMD ["/bin/sleep", "2147483647"]',),
        extra_files={'etc/unique': uuid.uuid4().hex.encode()})


def created_in_2020(tarball: bytes) -> bytes:
    """The same docker save tarball with an image built in 2020."""
    src = tarfile.open(fileobj=io.BytesIO(tarball))
    manifest = json.load(src.extractfile('manifest.json'))
    config = json.load(src.extractfile(manifest[0]['Config']))
    config['created'] = '2020-01-01T00:00:00Z'
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + '.json'
    old_config = manifest[0]['Config']
    manifest[0]['Config'] = config_name
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w') as tar:
        for member in src:
            if member.name in (old_config, 'manifest.json', 'repositories'):
                continue
            tar.addfile(member, src.extractfile(member)
                        if member.isreg() else None)
        for name, data in ((config_name, config_bytes),
                           ('manifest.json', json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class ImageCacheTest(base.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.conf.config(group='image_cache',
                         remove_unused_original_minimum_age_seconds=MIN_AGE,
                         remove_unused_base_images=True)
        real_list_cached = imagecache.list_cached

        def own_images_only(api):
            return [image for image in real_list_cached(api)
                    if image.glance_id in self.glance.images]

        self.useFixture(fixtures.MonkeyPatch(
            'novadocker.virt.docker.imagecache.list_cached', own_images_only))
        self.store = images.ImageStore(self.api)

    def load(self, data=None) -> objects.ImageMeta:
        """Load an image into the cache and use it (as a boot does)."""
        meta = self.add_image(data or distinct_image())
        self.store.ensure_image(self.context, meta)
        self.store.touch(meta.id)
        return meta

    def cached(self, meta) -> bool:
        return bool(self.api.images(name=images.glance_tag(meta.id)))

    def last_used(self, meta):
        return imagecache._last_used(
            self.api.inspect_image(images.glance_tag(meta.id)))

    def let_age(self):
        time.sleep(MIN_AGE + 0.5)

    def foreign_image(self) -> str:
        """An image the driver did not load, unused and old."""
        name = 'nova-docker-test/foreign-%s:old' % uuid.uuid4().hex[:10]
        repository, tag = name.split(':')
        self.api.import_image_from_data(
            image_fixtures.busybox_rootfs({'etc/foreign': b'x'}),
            repository=repository, tag=tag)
        self.addCleanup(self.api.remove_image, name, force=True)
        return name

    def test_ageing_removes_only_unused_old_images(self):
        running = self.spawn(self.add_image(distinct_image()))
        stopped = self.spawn(self.add_image(distinct_image()))
        self.driver.power_off(stopped)
        old_unused = self.load()
        # Used by a container Nova knows nothing about.
        by_stranger = self.load()
        stranger = self.api.create_container(
            images.glance_tag(by_stranger.id),
            labels={docker_fixtures.TEST_LABEL: self.id()})
        self.addCleanup(self._remove_container_quietly, stranger['Id'])
        foreign = self.foreign_image()
        foreign_before = self.api.inspect_image(foreign)['Metadata']
        self.let_age()
        fresh_unused = self.load()   # loaded (used) less than MIN_AGE ago

        # Nova passes the instances of this host; "stopped" is left out on
        # purpose: its container alone must keep its image.
        self.driver.manage_image_cache(self.context, [running])

        self.assertFalse(self.cached(old_unused))
        self.assertTrue(self.cached(fresh_unused))
        self.assertTrue(self.cached(objects.ImageMeta.from_dict(
            self.glance.get(self.context, running.image_ref))))
        self.assertTrue(self.cached(objects.ImageMeta.from_dict(
            self.glance.get(self.context, stopped.image_ref))))
        self.assertTrue(self.cached(by_stranger))
        # The image the driver did not load is untouched, not even tagged.
        self.assertEqual(foreign_before,
                         self.api.inspect_image(foreign)['Metadata'])

        # Once the fresh one is old enough and the stranger is gone, the
        # next pass removes those two and still keeps the instances' ones.
        self.api.remove_container(stranger['Id'], force=True)
        self.let_age()
        self.driver.manage_image_cache(self.context, [running])
        self.assertFalse(self.cached(fresh_unused))
        self.assertFalse(self.cached(by_stranger))
        self.assertTrue(self.cached(objects.ImageMeta.from_dict(
            self.glance.get(self.context, running.image_ref))))
        self.assertTrue(self.cached(objects.ImageMeta.from_dict(
            self.glance.get(self.context, stopped.image_ref))))

    def test_in_use_images_are_touched_so_ageing_restarts(self):
        instance = self.spawn(self.add_image(distinct_image()))
        meta = objects.ImageMeta.from_dict(
            self.glance.get(self.context, instance.image_ref))
        self.store.touch(meta.id)
        before = self.last_used(meta)
        self.let_age()
        self.driver.manage_image_cache(self.context, [instance])
        after = self.last_used(meta)
        self.assertGreater(after, before)
        # Right after the instance goes, the image is young: kept. (A
        # minimum age longer than a destroy under load, so that "young"
        # does not depend on the machine's speed.)
        self.driver.destroy(self.context, instance, [])
        self.conf.config(group='image_cache',
                         remove_unused_original_minimum_age_seconds=60)
        self.driver.manage_image_cache(self.context, [])
        self.assertTrue(self.cached(meta))

    def test_freshly_loaded_image_gets_its_full_minimum_age(self):
        # docker load leaves LastTagTime unset, and Created is when the
        # image was built (here: 2020). The load itself marks the image
        # used, so its age counts from the load, not from 2020.
        meta = self.add_image(created_in_2020(distinct_image()))
        self.store.ensure_image(self.context, meta)
        loaded = self.api.inspect_image(images.glance_tag(meta.id))
        self.assertTrue(loaded['Created'].startswith('2020-'))
        self.assertIsNotNone(imagecache._last_used(loaded))
        self.assertGreater(imagecache._last_used(loaded).year, 2020)

        self.driver.manage_image_cache(self.context, [])
        self.assertTrue(self.cached(meta))
        self.let_age()
        self.driver.manage_image_cache(self.context, [])
        self.assertFalse(self.cached(meta))

    def test_removal_disabled_keeps_everything(self):
        self.conf.config(group='image_cache',
                         remove_unused_base_images=False)
        old_unused = self.load()
        self.let_age()
        self.driver.manage_image_cache(self.context, [])
        self.assertTrue(self.cached(old_unused))

    def test_removed_image_is_loaded_again_on_next_spawn(self):
        meta = self.load()
        self.assertEqual(1, self.glance.download_count[meta.id])
        self.let_age()
        self.driver.manage_image_cache(self.context, [])
        self.assertFalse(self.cached(meta))
        self.spawn(meta)
        self.assertEqual(2, self.glance.download_count[meta.id])
        self.assertTrue(self.cached(meta))

    def test_same_image_under_two_glance_ids(self):
        # Two Glance records with identical bytes share one Docker image.
        data = distinct_image()
        used = self.add_image(data)
        unused = self.load(data)
        instance = self.spawn(used)
        self.assertEqual(self.api.inspect_image(
            images.glance_tag(used.id))['Id'],
            self.api.inspect_image(images.glance_tag(unused.id))['Id'])
        self.let_age()
        self.driver.manage_image_cache(self.context, [instance])
        # The image is used by a container, so neither name goes.
        self.assertTrue(self.cached(used))
        self.assertTrue(self.cached(unused))

    def test_cache_image_precaches_once(self):
        meta = self.add_image(distinct_image())
        self.assertTrue(self.driver.cache_image(self.context, meta.id))
        self.assertTrue(self.cached(meta))
        first = self.last_used(meta)
        self.assertFalse(self.driver.cache_image(self.context, meta.id))
        self.assertEqual(1, self.glance.download_count[meta.id])
        self.assertGreaterEqual(self.last_used(meta), first)

    def test_orphaned_snapshot_images_of_this_host_are_swept(self):
        mine = snapshot.snapshot_tag(str(uuid.uuid4()), self.host)
        others = snapshot.snapshot_tag(str(uuid.uuid4()), 'another-host')
        for name in (mine, others):
            repository, tag = name.split(':')
            self.api.import_image_from_data(
                image_fixtures.busybox_rootfs(), repository=repository,
                tag=tag)
            self.addCleanup(self._remove_quietly, name)
        self.driver.manage_image_cache(self.context, [])
        self.assertEqual([], self.api.images(name=mine))
        self.assertNotEqual([], self.api.images(name=others))

    def _remove_container_quietly(self, container_id):
        try:
            self.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass

    def _remove_quietly(self, name):
        if self.api.images(name=name):
            self.api.remove_image(name, force=True)

    def test_last_used_reads_the_tag_time(self):
        meta = self.load()
        start = timeutils.utcnow(with_timezone=True)
        self.store.touch(meta.id)
        self.assertGreaterEqual(
            self.last_used(meta).timestamp(), start.timestamp() - 1)
        listed = {image.glance_id: image for image in
                  imagecache.list_cached(self.api)}
        self.assertEqual(self.last_used(meta), listed[meta.id].last_used)


class ImageCacheFaultTest(base.DriverTestCase):

    def test_container_appearing_during_the_pass_keeps_the_image(self):
        # A spawn creates a container between the listing and the removal:
        # the check under the image lock sees it and keeps the image.
        self.conf.config(group='image_cache',
                         remove_unused_original_minimum_age_seconds=0)
        meta = self.add_image(distinct_image())
        images.ImageStore(self.api).ensure_image(self.context, meta)
        real_used = images.images_used_by_containers
        calls = []
        created = []

        def used_then_create(api):
            calls.append(1)
            if len(calls) == 2:   # the re-check under the lock
                created.append(self.api.create_container(
                    images.glance_tag(meta.id),
                    labels={docker_fixtures.TEST_LABEL: self.id()}))
                self.addCleanup(self.api.remove_container,
                                created[0]['Id'], force=True)
            return real_used(api)

        real_list_cached = imagecache.list_cached
        with mock.patch.object(images, 'images_used_by_containers',
                               side_effect=used_then_create), \
                mock.patch.object(imagecache, 'list_cached', side_effect=(
                    lambda api: [i for i in real_list_cached(api)
                                 if i.glance_id == meta.id])):
            result = imagecache.age_cache(self.api, [], 0)
        self.assertEqual([meta.id], result['kept'])
        self.assertTrue(self.api.images(name=images.glance_tag(meta.id)))
