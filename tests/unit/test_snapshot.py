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

"""Snapshot and image-cache logic with a specced Docker client."""

import datetime
from unittest import mock

import docker
import docker.errors
from glanceclient.common import http as glance_http
from nova.compute import task_states
from nova import exception
from nova.virt import fake as fake_virt
from oslo_config import fixture as config_fixture
import testtools

from novadocker import conf
from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import guest
from novadocker.virt.docker import images
from novadocker.virt.docker import snapshot
from tests.fixtures import glance as glance_fixtures
from tests.fixtures import objects as obj_fixtures

CONF = conf.CONF
IMAGE_ID = '6b1a4a4e-0000-4000-8000-000000000001'
HOST = 'unit-host'


def _api_error(explanation, cls=docker.errors.APIError, status=500):
    return cls('%d Server Error' % status,
               response=mock.Mock(status_code=status),
               explanation=explanation)


class ChunkStreamReaderTest(testtools.TestCase):

    def test_read_n_across_chunks_and_empty_chunks(self):
        reader = snapshot.ChunkStreamReader(
            iter([b'abc', b'', b'defgh', b'i']))
        out = []
        while True:
            data = reader.read(2)
            if not data:
                break
            self.assertLessEqual(len(data), 2)
            out.append(data)
        self.assertEqual(b'abcdefghi', b''.join(out))
        self.assertEqual(9, reader.bytes_read)

    def test_read_all(self):
        reader = snapshot.ChunkStreamReader([b'x' * 10, b'y' * 5])
        self.assertEqual(b'x' * 10 + b'y' * 5, reader.read())

    def test_glanceclient_uploads_it_as_a_chunked_body(self):
        # The real glanceclient code path: json.dumps fails, then its
        # chunker calls read(CHUNKSIZE) until empty.
        payload = [bytes([i]) * 300000 for i in range(7)]
        reader = snapshot.ChunkStreamReader(iter(payload))
        headers = {}
        kwargs = {'data': reader}
        body = glance_http._BaseHTTPClient()._set_common_request_kwargs(
            headers, kwargs)
        self.assertEqual('application/octet-stream',
                         headers['Content-Type'])
        self.assertEqual(b''.join(payload), b''.join(body))

    def test_a_generator_would_not_do(self):
        # Why the adapter exists (design notes, section 5).
        body = glance_http._BaseHTTPClient()._set_common_request_kwargs(
            {}, {'data': (c for c in [b'a'])})
        self.assertRaises(AttributeError, list, body)

    def test_stream_error_is_recorded_and_raised(self):
        def chunks():
            yield b'first'
            raise IOError('save broke')

        reader = snapshot.ChunkStreamReader(chunks())
        self.assertEqual(b'first', reader.read(100))
        self.assertRaises(IOError, reader.read, 100)
        self.assertIsInstance(reader.error, IOError)

    def test_close_closes_the_generator(self):
        closed = []

        def chunks():
            try:
                while True:
                    yield b'z' * 10
            finally:
                closed.append(True)

        reader = snapshot.ChunkStreamReader(chunks())
        reader.read(3)
        reader.close()
        self.assertEqual([True], closed)
        self.assertTrue(reader.closed)

    def test_prime_surfaces_errors_before_reading(self):
        def chunks():
            raise IOError('refused')
            yield b''

        reader = snapshot.ChunkStreamReader(chunks())
        self.assertRaises(IOError, reader.prime)


class SnapshotterTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(config_fixture.Config(CONF))
        self.glance = self.useFixture(glance_fixtures.GlanceFixture()).api
        self.api = mock.create_autospec(docker.APIClient, instance=True)
        self.guests = mock.create_autospec(guest.Guests, instance=True)
        self.guests._api = self.api
        self.guests.containers_of.return_value = [
            (guest.ROLE_WORKLOAD, 'cid')]
        self.guests.get.side_effect = lambda instance: guest.Guest(
            self.guests, instance, self.guests.containers_of(instance.uuid))
        self.paused = [False]
        self.api.inspect_container.side_effect = lambda cid: {
            'State': {'Paused': self.paused[0], 'Status': 'running'}}
        self.saved = [b'tar-part-1', b'tar-part-2']
        self.api.get_image.side_effect = lambda name, chunk_size: iter(
            self.saved)
        self.api.commit.return_value = {'Id': 'sha256:committed'}
        self.instance = obj_fixtures.instance(os_type='linux')
        self.image_id = self.glance.create(None, {'name': 'my-snap'})['id']
        self.states = []
        self.snapshotter = snapshot.Snapshotter(self.api, self.guests, HOST)

    def update_task_state(self, task_state, expected_state='snapshot'):
        self.states.append((task_state, expected_state))

    def take(self):
        return self.snapshotter.take(None, self.instance, self.image_id,
                                     self.update_task_state)

    def test_success(self):
        size = self.take()
        tag = snapshot.snapshot_tag(self.image_id, HOST)
        repository, name = tag.split(':')
        self.assertEqual('nova-docker/snapshot', repository)
        self.api.commit.assert_called_once_with(
            'cid', repository=repository, tag=name, pause=True,
            message=mock.ANY, changes=[mock.ANY])
        change = self.api.commit.call_args.kwargs['changes'][0]
        for label in (guest.LABEL_INSTANCE, guest.LABEL_HOST,
                      guest.LABEL_ROLE, guest.LABEL_NAME):
            self.assertIn('%s=""' % label, change)
        self.api.get_image.assert_called_once_with(
            tag, chunk_size=CONF.docker.image_load_chunk_size)
        self.assertEqual(b''.join(self.saved), self.glance.data[self.image_id])
        self.assertEqual(len(b''.join(self.saved)), size)
        meta = self.glance.images[self.image_id]
        self.assertEqual('docker', meta['container_format'])
        self.assertEqual('raw', meta['disk_format'])
        self.assertEqual('my-snap', meta['name'])
        self.assertEqual('linux', meta['properties']['os_type'])
        self.assertEqual(
            [(task_states.IMAGE_PENDING_UPLOAD, 'snapshot'),
             (task_states.IMAGE_UPLOADING, task_states.IMAGE_PENDING_UPLOAD)],
            self.states)
        self.api.remove_image.assert_called_once_with(tag, force=True)
        self.api.unpause.assert_not_called()
        self.assertFalse(self.snapshotter.in_progress(
            snapshot.snapshot_tag(self.image_id, HOST)))

    def test_tags_are_valid_docker_names_whatever_the_host(self):
        tag = snapshot.snapshot_tag(IMAGE_ID, 'Compute_01.Example.COM:x/y')
        name = tag.split(':', 1)[1]
        self.assertRegex(name, r'^[a-z0-9][a-z0-9_.-]{0,127}$')
        self.assertNotEqual(tag, snapshot.snapshot_tag(IMAGE_ID, 'other'))

    def test_upload_failure_cleans_up_and_unpauses(self):
        def fail(*args, **kwargs):
            self.paused[0] = True   # as if the commit left it frozen
            raise IOError('glance went away')

        with mock.patch.object(self.glance, 'update', side_effect=fail):
            exc = self.assertRaises(snapshot.SnapshotFailed, self.take)
        self.assertIn('uploading to Glance: glance went away', str(exc))
        self.api.remove_image.assert_called_once_with(
            snapshot.snapshot_tag(self.image_id, HOST), force=True)
        self.api.unpause.assert_called_once_with('cid')
        self.assertFalse(self.snapshotter.in_progress(
            snapshot.snapshot_tag(self.image_id, HOST)))

    def test_paused_instance_is_not_unpaused_on_failure(self):
        self.paused[0] = True
        with mock.patch.object(self.glance, 'update',
                               side_effect=IOError('x')):
            self.assertRaises(snapshot.SnapshotFailed, self.take)
        self.api.unpause.assert_not_called()

    def test_save_error_mid_stream_names_docker_save(self):
        def chunks(name, chunk_size):
            yield b'part'
            raise _api_error('layer vanished')

        self.api.get_image.side_effect = chunks
        exc = self.assertRaises(snapshot.SnapshotFailed, self.take)
        self.assertIn('saving the committed image: layer vanished', str(exc))
        self.assertTrue(self.api.remove_image.called)

    def test_save_refused_upload_never_starts(self):
        def chunks(name, chunk_size):
            raise _api_error('no space left on device')
            yield b''

        self.api.get_image.side_effect = chunks
        with mock.patch.object(self.glance, 'update') as update:
            exc = self.assertRaises(snapshot.SnapshotFailed, self.take)
        update.assert_not_called()
        self.assertIn('no space left on device', str(exc))
        self.assertEqual([task_states.IMAGE_PENDING_UPLOAD],
                         [s for s, _ in self.states])
        self.assertTrue(self.api.remove_image.called)

    def test_commit_refused(self):
        self.api.commit.side_effect = _api_error('no space left on device')
        exc = self.assertRaises(snapshot.SnapshotFailed, self.take)
        self.assertIn('committing the container', str(exc))
        self.api.get_image.assert_not_called()
        self.assertTrue(self.api.remove_image.called)

    def test_container_gone_at_commit(self):
        self.api.commit.side_effect = _api_error(
            'No such container', cls=docker.errors.NotFound, status=404)
        self.assertRaises(exception.InstanceNotFound, self.take)
        self.assertTrue(self.api.remove_image.called)

    def test_instance_without_container(self):
        self.guests.get.side_effect = exception.InstanceNotFound(
            instance_id=self.instance.uuid)
        self.assertRaises(exception.InstanceNotFound, self.take)
        self.api.commit.assert_not_called()
        self.assertEqual([], self.states)

    def test_glance_image_gone_passes_through(self):
        with mock.patch.object(self.glance, 'update', side_effect=(
                exception.ImageNotFound(image_id=self.image_id))):
            self.assertRaises(exception.ImageNotFound, self.take)
        self.assertTrue(self.api.remove_image.called)

    def test_task_state_error_passes_through(self):
        def deleting(task_state, expected_state=None):
            if task_state == task_states.IMAGE_UPLOADING:
                raise exception.UnexpectedDeletingTaskStateError(
                    instance_uuid=self.instance.uuid, expected='x',
                    actual='deleting')

        self.assertRaises(
            exception.UnexpectedDeletingTaskStateError,
            self.snapshotter.take, None, self.instance, self.image_id,
            deleting)
        self.assertTrue(self.api.remove_image.called)
        self.assertNotIn(self.image_id, self.glance.data)

    def test_failed_cleanup_does_not_hide_success(self):
        self.api.remove_image.side_effect = _api_error('busy')
        self.take()
        self.assertIn(self.image_id, self.glance.data)


class RemoveOrphansTest(testtools.TestCase):

    def test_only_this_hosts_idle_snapshot_images(self):
        api = mock.create_autospec(docker.APIClient, instance=True)
        mine = snapshot.snapshot_tag('a', HOST)
        busy = snapshot.snapshot_tag('b', HOST)
        other = snapshot.snapshot_tag('c', 'other-host')
        api.images.return_value = [
            {'Id': 'sha256:1', 'RepoTags': [mine]},
            {'Id': 'sha256:2', 'RepoTags': [busy, other]},
            {'Id': 'sha256:3', 'RepoTags': None}]
        self.assertEqual([mine], snapshot.remove_orphans(
            api, HOST, lambda tag: tag == busy))
        api.images.assert_called_once_with(name='nova-docker/snapshot')
        api.remove_image.assert_called_once_with(mine, force=True)


NOW = datetime.datetime(2030, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


def _stamp(seconds_ago):
    return (NOW - datetime.timedelta(seconds=seconds_ago)).strftime(
        '%Y-%m-%dT%H:%M:%S.%f123Z')


class AgeCacheTest(testtools.TestCase):
    """images.age_cache decisions over a specced client."""

    def setUp(self):
        super().setUp()
        self.api = mock.create_autospec(docker.APIClient, instance=True)
        tag = images.glance_tag
        self.listing = [
            {'Id': 'sha256:used', 'RepoTags': [tag('used')]},
            {'Id': 'sha256:old', 'RepoTags': [tag('old'),
                                              'someone/else:keep']},
            {'Id': 'sha256:young', 'RepoTags': [tag('young')]},
            {'Id': 'sha256:ctr', 'RepoTags': [tag('by-container')]},
            {'Id': 'sha256:never', 'RepoTags': [tag('never-tagged')]},
            {'Id': 'sha256:foreign', 'RepoTags': ['nova-docker/glancey:x']},
        ]
        self.ages = {'sha256:used': 10 ** 6, 'sha256:old': 5000,
                     'sha256:young': 10, 'sha256:ctr': 10 ** 6,
                     'sha256:never': None, 'sha256:foreign': 10 ** 6}
        self.api.images.return_value = self.listing
        self.api.containers.return_value = [
            {'Id': 'c1', 'ImageID': 'sha256:ctr'}]
        by_tag = {t: i['Id'] for i in self.listing for t in i['RepoTags']}

        def inspect(name):
            docker_id = by_tag.get(name, name)
            age = self.ages[docker_id]
            return {'Id': docker_id, 'Created': _stamp(7200),
                    'Metadata': {'LastTagTime': _stamp(age) if age is not None
                                 else '0001-01-01T00:00:00Z'}}

        self.api.inspect_image.side_effect = inspect
        patcher = mock.patch('oslo_utils.timeutils.utcnow',
                             return_value=NOW)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_decisions(self):
        result = images.age_cache(self.api, {'used'}, 3600, now=NOW)
        self.assertEqual(['used', 'by-container'], result['in_use'])
        self.assertEqual(['old'], result['removed'])
        # Never tagged since its load (Created is build time): its clock
        # starts now rather than it going at once.
        self.assertEqual(['young', 'never-tagged'], result['kept'])
        self.api.remove_image.assert_called_once_with(
            images.glance_tag('old'), force=False)
        # In-use and never-touched images are re-tagged; nothing else is.
        touched = sorted(c.kwargs['tag'] for c in self.api.tag.call_args_list)
        self.assertEqual(['by-container', 'never-tagged', 'used'], touched)
        self.api.images.assert_called_once_with(name='nova-docker/glance')

    def test_removal_disabled(self):
        result = images.age_cache(self.api, set(), 3600,
                                  remove_unused=False, now=NOW)
        self.api.remove_image.assert_not_called()
        self.assertIn('old', result['kept'])

    def test_docker_refusal_keeps_the_image(self):
        self.api.remove_image.side_effect = _api_error(
            'conflict: image is being used by running container', status=409)
        result = images.age_cache(self.api, set(), 3600, now=NOW)
        self.assertEqual([], result['removed'])
        self.assertIn('old', result['kept'])

    def test_touched_meanwhile_is_kept(self):
        # The listing saw it old; under the lock it is young again.
        real_inspect = self.api.inspect_image.side_effect

        def inspect(name):
            found = real_inspect(name)
            if name == images.glance_tag('old'):
                found['Metadata']['LastTagTime'] = _stamp(1)
            return found

        self.api.inspect_image.side_effect = inspect
        result = images.age_cache(self.api, set(), 3600, now=NOW)
        self.assertNotIn('old', result['removed'])
        self.assertIn('old', result['kept'])

    def test_last_used(self):
        self.assertIsNone(
            images._last_used({'Created': _stamp(7200),
                               'Metadata': {'LastTagTime':
                                            '0001-01-01T00:00:00Z'}}))
        self.assertEqual(
            NOW - datetime.timedelta(seconds=30),
            images._last_used({'Created': _stamp(7200),
                               'Metadata': {'LastTagTime': _stamp(30)}}))


class DriverImageCacheTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.cfg = self.useFixture(config_fixture.Config(CONF))
        self.driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        self.driver._api = mock.create_autospec(docker.APIClient,
                                                instance=True)
        self.driver._host = HOST

    def test_capability(self):
        self.assertTrue(self.driver.capabilities['has_imagecache'])

    def test_manage_image_cache_passes_nova_options(self):
        self.cfg.config(group='image_cache',
                        remove_unused_original_minimum_age_seconds=77,
                        remove_unused_base_images=False)
        instances = [obj_fixtures.instance(image_ref='img-a'),
                     obj_fixtures.instance(image_ref='img-b'),
                     obj_fixtures.instance(image_ref='')]
        with mock.patch.object(images, 'age_cache', autospec=True,
                               return_value={'in_use': [], 'removed': [],
                                             'kept': []}) as age, \
                mock.patch.object(snapshot, 'remove_orphans', autospec=True,
                                  return_value=[]) as orphans:
            self.driver.manage_image_cache(None, instances)
        age.assert_called_once_with(self.driver._api, {'img-a', 'img-b'},
                                    77, False)
        orphans.assert_called_once_with(self.driver._api, HOST,
                                        self.driver._snapshots.in_progress)

    def test_snapshot_uses_the_workload_container(self):
        glance = self.useFixture(glance_fixtures.GlanceFixture()).api
        image_id = glance.create(None, {'name': 's'})['id']
        instance = obj_fixtures.instance()
        api = self.driver._api
        api.containers.return_value = [
            {'Id': 'workload-id',
             'Labels': {guest.LABEL_ROLE: guest.ROLE_WORKLOAD}},
            {'Id': 'sandbox-id',
             'Labels': {guest.LABEL_ROLE: guest.ROLE_SANDBOX}}]
        api.inspect_container.return_value = {'State': {'Paused': False}}
        api.get_image.return_value = iter([b'data'])
        self.driver.snapshot(None, instance, image_id,
                             lambda **kwargs: None)
        self.assertEqual('workload-id', api.commit.call_args.args[0])
        filters = api.containers.call_args.kwargs['filters']['label']
        self.assertIn('%s=%s' % (guest.LABEL_INSTANCE, instance.uuid),
                      filters)
        self.assertEqual(b'data', glance.data[image_id])


class InProgressTest(testtools.TestCase):
    """The snapshots being taken are the Snapshotter's own state."""

    def test_a_running_snapshot_keeps_its_image_from_the_sweep(self):
        api = mock.create_autospec(docker.APIClient, instance=True)
        guests = mock.create_autospec(guest.Guests, instance=True)
        first = snapshot.Snapshotter(api, guests, HOST)
        second = snapshot.Snapshotter(api, guests, HOST)
        seen = []

        def commit(*args, **kwargs):
            seen.append((first.in_progress(tag), second.in_progress(tag)))
            raise exception.InstanceNotFound(instance_id='x')
        found = mock.create_autospec(guest.Guest, instance=True)
        found.workload_id, found.paused = 'cid', False
        guests.get.return_value = found
        glance = self.useFixture(glance_fixtures.GlanceFixture()).api
        image_id = glance.create(None, {'name': 's'})['id']
        tag = snapshot.snapshot_tag(image_id, HOST)
        api.commit.side_effect = commit
        self.assertRaises(exception.InstanceNotFound, first.take, None,
                          obj_fixtures.instance(), image_id,
                          lambda **kwargs: None)
        self.assertEqual([(True, False)], seen)
        self.assertFalse(first.in_progress(tag))
