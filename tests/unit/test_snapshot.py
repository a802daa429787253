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

"""Snapshot logic with a specced Docker client."""

from unittest import mock

import docker
import docker.errors
from nova.compute import task_states
from nova import exception
from nova.virt import fake as fake_virt
from oslo_config import fixture as config_fixture
import testtools

from novadocker import conf
from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import guest
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


class DriverSnapshotTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.cfg = self.useFixture(config_fixture.Config(CONF))
        self.driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        self.driver._api = mock.create_autospec(docker.APIClient,
                                                instance=True)
        self.driver._host = HOST

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
