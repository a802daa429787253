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

"""Spawns hold their image: a failed spawn, or cache ageing, never removes
an image another spawn uses or is about to use."""

import datetime
import threading
from unittest import mock

import fixtures
from nova import objects
import testtools

from novadocker.virt.docker import images
from tests.fixtures import fake_docker
from tests.fixtures import glance as glance_fixtures
from tests.fixtures import images as image_fixtures


class ImageHoldTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.FakeLogger())
        self.engine = fake_docker.FakeEngine()
        self.glance = self.useFixture(glance_fixtures.GlanceFixture()).api
        self.meta = objects.ImageMeta.from_dict(self.glance.add(
            image_fixtures.saved_tarball()))
        self.tag = images.glance_tag(self.meta.id)
        self.context = mock.sentinel.context
        # Holds are per process: never leak one into another test.
        self.addCleanup(self.assertEqual, 0, images.holders(self.meta.id))

    def store(self):
        return images.ImageStore(self.engine.api)

    def test_failed_loader_keeps_an_image_another_spawn_holds(self):
        loader, other = self.store(), self.store()
        loader.ensure_image(self.context, self.meta, hold=True)
        self.assertTrue(loader.loaded)
        other.ensure_image(self.context, self.meta, hold=True)
        self.assertFalse(other.loaded)
        self.assertEqual(2, images.holders(self.meta.id))
        self.assertFalse(loader.release(self.meta.id, remove_if_unused=True))
        self.assertIn(self.tag, self.engine.images)
        self.assertEqual(1, images.holders(self.meta.id))
        other.release(self.meta.id)
        self.assertIn(self.tag, self.engine.images)
        self.assertEqual(1, self.glance.download_count[self.meta.id])

    def test_failed_loader_alone_removes_the_image(self):
        loader = self.store()
        loader.ensure_image(self.context, self.meta, hold=True)
        self.assertTrue(loader.release(self.meta.id, remove_if_unused=True))
        self.assertNotIn(self.tag, self.engine.images)

    def test_image_a_container_uses_is_kept(self):
        loader = self.store()
        docker_id = loader.ensure_image(self.context, self.meta, hold=True)
        self.engine.api.create_container(docker_id, name='someone-else',
                                         labels={})
        self.assertFalse(loader.release(self.meta.id, remove_if_unused=True))
        self.assertIn(self.tag, self.engine.images)

    def test_release_waits_for_a_spawn_inside_ensure_image(self):
        """The failed loader releases while another spawn is between
        finding the image and taking its hold: the per-image lock makes
        the release see that hold."""
        self.store().ensure_image(self.context, self.meta)   # cached
        touched = threading.Event()
        proceed = threading.Event()
        real_tag = self.engine.api.tag.side_effect

        def slow_touch(*args, **kwargs):
            touched.set()
            proceed.wait(30)
            return real_tag(*args, **kwargs)

        other = self.store()
        self.engine.api.tag.side_effect = slow_touch
        spawn = threading.Thread(target=other.ensure_image,
                                 args=(self.context, self.meta),
                                 kwargs={'hold': True})
        spawn.start()
        self.assertTrue(touched.wait(30))
        images._hold(self.meta.id)   # the failed loader's own hold
        removed = []
        releaser = threading.Thread(target=lambda: removed.append(
            self.store().release(self.meta.id, remove_if_unused=True)))
        releaser.start()
        # Give an unlocked release every chance to run first; the outcome
        # below does not depend on this wait, only the test's power does.
        releaser.join(0.5)
        proceed.set()
        spawn.join(30)
        releaser.join(30)
        self.engine.api.tag.side_effect = real_tag
        self.assertEqual([False], removed)
        self.assertIn(self.tag, self.engine.images)
        self.assertEqual(1, images.holders(self.meta.id))
        other.release(self.meta.id)

    def test_many_concurrent_spawns_leave_no_hold(self):
        results = []

        def spawn(fail):
            store = self.store()
            store.ensure_image(self.context, self.meta, hold=True)
            results.append(store.release(
                self.meta.id, remove_if_unused=fail and store.loaded))
        threads = [threading.Thread(target=spawn, args=(i % 2 == 0,))
                   for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        self.assertEqual(16, len(results))
        self.assertEqual(0, images.holders(self.meta.id))

    def test_cache_ageing_skips_a_held_image(self):
        store = self.store()
        store.ensure_image(self.context, self.meta, hold=True)
        self.addCleanup(store.release, self.meta.id)
        inspect = self.engine.api.inspect_image.side_effect

        def old(name):
            # The fake knows tags only; ageing inspects by ID too.
            found = inspect(self.tag)
            found['Metadata'] = {'LastTagTime': '2001-01-01T00:00:00Z'}
            return found
        self.engine.api.inspect_image.side_effect = old
        self.engine.api.images.return_value = [
            {'Id': self.engine.images[self.tag], 'RepoTags': [self.tag]}]
        now = datetime.datetime.now(datetime.timezone.utc)
        # The pass sees it unused and old, then looks again under the lock.
        self.assertFalse(images._remove_if_still_unused(
            self.engine.api, self.meta.id, 60))
        result = images.age_cache(self.engine.api, set(), 60, now=now)
        self.assertEqual([self.meta.id], result['kept'], result)
        self.assertIn(self.tag, self.engine.images)
