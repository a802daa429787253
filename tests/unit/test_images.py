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

"""The image store: Glance -> docker load, the load report and its undo,
holds, and the one removal rule."""

import datetime
import threading
from unittest import mock

import docker
import fixtures
from nova import exception
from nova import objects
import testtools

from novadocker.virt.docker import imagecache
from novadocker.virt.docker import images
from tests.fixtures import fake_docker
from tests.fixtures import glance as glance_fixtures
from tests.fixtures import images as image_fixtures


class CheckAcceptableTest(testtools.TestCase):

    def test_only_docker_container_format(self):
        for fmt in ('bare', 'ovf', 'ova', None):
            values = {'id': 'img', 'disk_format': 'raw'}
            if fmt:
                values['container_format'] = fmt
            meta = objects.ImageMeta.from_dict(values)
            exc = self.assertRaises(exception.ImageUnacceptable,
                                    images.check_image_acceptable, meta)
            self.assertIn('docker save', str(exc))
            self.assertIn('--container-format docker', str(exc))
        images.check_image_acceptable(objects.ImageMeta.from_dict(
            {'id': 'img', 'container_format': 'docker'}))


class LoadFailureTest(testtools.TestCase):
    """How a failing docker load reaches Nova (fault matrix cases 6, 7)."""

    def load(self, load_image, body=(b'x',)):
        api = mock.create_autospec(docker.APIClient, instance=True)
        api.load_image.side_effect = load_image
        return images.ImageStore(api)._docker_load('img-1', iter(body))

    def test_full_data_root_in_the_stream_is_transfer_failed(self):
        # What Docker 20.10 streams when its data root fills up.
        message = ('Error processing tar file(exit status 1): write '
                   '/var/lib/docker/tmp/docker-import-1/a/layer.tar: no '
                   'space left on device')
        error = self.assertRaises(
            images.ImageTransferFailed, self.load,
            lambda body: iter([{'errorDetail': {'message': message},
                                'error': message}]))
        self.assertIn('no space left on device', str(error))
        self.assertNotIn('docker-import', str(error))

    def test_full_data_root_as_api_error_is_transfer_failed(self):
        def refuse(body):
            raise docker.errors.APIError(
                '500 Server Error', explanation='mkdir /var/lib/docker/tmp/'
                'docker-import-2: no space left on device')
        self.assertRaises(images.ImageTransferFailed, self.load, refuse)

    def test_other_load_errors_stay_unacceptable(self):
        self.assertRaises(
            exception.ImageUnacceptable, self.load,
            lambda body: iter([{'error': 'invalid tar header'}]))

    def test_body_oserror_reaches_requests_as_no_oserror(self):
        # urllib3 takes an ECONNRESET from the body for the engine closing
        # the socket, and waits for a response until the read timeout.
        seen = []

        def glance_drops():
            yield b'x' * 10
            raise ConnectionResetError(104, 'Connection reset by peer')

        def consume(body):
            try:
                for _chunk in body:
                    pass
            except Exception as exc:
                seen.append(exc)
                raise
            return iter([])

        error = self.assertRaises(images.ImageTransferFailed, self.load,
                                  consume, glance_drops())
        self.assertIn('Connection reset', str(error))
        self.assertEqual(1, len(seen))
        self.assertNotIsInstance(seen[0], OSError)


class LoadReportTest(testtools.TestCase):
    """After docker load, the names it reports must be ours alone."""

    def setUp(self):
        super().setUp()
        self.engine = fake_docker.FakeEngine()
        self.store = images.ImageStore(self.engine.api)
        self.ours = images.glance_tag('img')

    def _load(self, *lines):
        self.engine.images[self.ours] = 'sha256:tenant'
        self.engine.api.load_image.side_effect = lambda data: iter(
            [{'stream': line + '\n'} for line in lines])
        return self.assertRaises(exception.ImageUnacceptable,
                                 self.store._docker_load, 'img', iter([]))

    def test_only_our_name_passes(self):
        self.engine.api.load_image.side_effect = lambda data: iter(
            [{'stream': 'Loaded image: %s\n' % self.ours}])
        self.store._docker_load('img', iter([]))
        self.engine.api.remove_image.assert_not_called()

    def test_moved_foreign_tag_is_put_back(self):
        self.engine.images['victim:1'] = 'sha256:tenant'
        self.engine.images['sha256:old'] = 'sha256:old'
        exc = self._load(
            'Loaded image: %s' % self.ours,
            'The image victim:1 already exists, renaming the old one with '
            'ID sha256:old to empty string',
            'Loaded image: victim:1')
        self.assertIn('undone', str(exc))
        self.engine.api.tag.assert_called_once_with(
            'sha256:old', 'victim', tag='1', force=True)
        self.assertNotIn(self.ours, self.engine.images)
        self.assertEqual('sha256:old', self.engine.images['victim:1'])

    def test_new_foreign_tag_is_removed(self):
        self.engine.images['registry:5000/new'] = 'sha256:tenant'
        self._load('Loaded image: %s' % self.ours,
                   'Loaded image: registry:5000/new')
        self.engine.api.remove_image.assert_any_call('registry:5000/new',
                                                     force=False)
        self.assertNotIn('registry:5000/new', self.engine.images)
        self.assertNotIn(self.ours, self.engine.images)

    def test_untagged_load_or_nothing(self):
        self.engine.images['sha256:loose'] = 'sha256:loose'
        self._load('Loaded image ID: sha256:loose')
        self.engine.api.remove_image.assert_any_call('sha256:loose',
                                                     force=False)
        self._load()

    def test_split_reference(self):
        self.assertEqual(('a/b', '1'), images.split_reference('a/b:1'))
        self.assertEqual(('h:5000/b', 'latest'),
                         images.split_reference('h:5000/b'))
        self.assertEqual(('b', 'latest'), images.split_reference('b'))


class _LoadedImageTestCase(testtools.TestCase):
    """A Glance image and a fake engine to load it into."""

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


class ImageHoldTest(_LoadedImageTestCase):
    """Spawns hold their image: a failed spawn, or cache ageing, never
    removes an image another spawn uses or is about to use."""

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
        self.assertFalse(images.ImageStore(self.engine.api).remove(
            self.tag, keep_if=lambda inspected: False))
        result = imagecache.age_cache(self.engine.api, set(), 60, now=now)
        self.assertEqual([self.meta.id], result['kept'], result)
        self.assertIn(self.tag, self.engine.images)


class RemoveRuleTest(_LoadedImageTestCase):
    """ImageStore.remove: the one rule every removal of an image follows."""

    def setUp(self):
        super().setUp()
        self.image_store = self.store()
        self.docker_id = self.image_store.ensure_image(self.context,
                                                       self.meta)

    def test_unused_image_is_removed_without_force(self):
        self.assertTrue(self.image_store.remove(self.tag))
        self.engine.api.remove_image.assert_called_once_with(self.tag,
                                                             force=False)
        self.assertNotIn(self.tag, self.engine.images)
        # Idempotent: gone is not an error.
        self.assertFalse(self.image_store.remove(self.tag))

    def test_held_image_is_kept(self):
        self.image_store.ensure_image(self.context, self.meta, hold=True)
        self.addCleanup(self.image_store.release, self.meta.id)
        self.assertFalse(self.image_store.remove(self.tag))
        self.engine.api.remove_image.assert_not_called()
        self.assertIn(self.tag, self.engine.images)

    def test_image_a_container_uses_is_kept(self):
        self.engine.api.create_container(self.docker_id, name='stranger',
                                         labels={})
        self.assertFalse(self.image_store.remove(self.tag))
        self.engine.api.remove_image.assert_not_called()
        self.assertIn(self.tag, self.engine.images)

    def test_keep_if_is_asked_with_the_inspected_image(self):
        seen = []
        self.assertFalse(self.image_store.remove(
            self.tag, keep_if=lambda inspected: seen.append(inspected) or
            True))
        self.assertEqual(self.docker_id, seen[0]['Id'])
        self.engine.api.remove_image.assert_not_called()

    def test_forced_removes_a_private_name_whatever_uses_it(self):
        self.engine.api.create_container(self.docker_id, name='stranger',
                                         labels={})
        self.engine.api.containers.reset_mock()
        self.assertTrue(self.image_store.remove(self.tag, force=True))
        self.engine.api.remove_image.assert_called_once_with(self.tag,
                                                             force=True)
        self.engine.api.containers.assert_not_called()

    def test_docker_refusal_is_logged_not_raised(self):
        self.engine.api.remove_image.side_effect = docker.errors.APIError(
            '409 Conflict', response=mock.Mock(status_code=409),
            explanation='conflict: image is being used by stopped container')
        self.assertFalse(self.image_store.remove(self.tag))
        self.assertIn(self.tag, self.engine.images)

    def test_removal_takes_the_image_lock(self):
        """The lock ensure_image loads under: a removal waits for it."""
        locked = threading.Event()
        release = threading.Event()

        @images._image_lock(self.meta.id)
        def hold_the_lock():
            locked.set()
            release.wait(30)

        holder = threading.Thread(target=hold_the_lock)
        holder.start()
        self.assertTrue(locked.wait(30))
        removed = []
        remover = threading.Thread(target=lambda: removed.append(
            self.image_store.remove(self.tag)))
        remover.start()
        remover.join(0.5)
        self.assertTrue(remover.is_alive())
        self.engine.api.remove_image.assert_not_called()
        release.set()
        holder.join(30)
        remover.join(30)
        self.assertEqual([True], removed)
