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

"""Snapshots on the real engine: commit, docker save into a Glance stand-in
that stores the bytes, boot from them; shelve-style snapshots; faults.

Faults are injected by wrapping the real Docker client's calls (the real
call still runs where it matters) or the Glance stand-in's upload.
"""

import errno
import functools
import io
import json
import tarfile
from unittest import mock

import docker.errors
from nova.compute import power_state
from nova.compute import task_states
from nova import exception
from nova import objects

from novadocker.virt.docker import guest
from novadocker.virt.docker import images
from novadocker.virt.docker import snapshot
from tests.fixtures import images as image_fixtures
from tests.functional import base

BOOT_LINE = 'booted in $(pwd) with $GREETING as $(id -u)'


@functools.lru_cache(maxsize=None)
def configured_image_tarball() -> bytes:
    """An image whose ENTRYPOINT, CMD, ENV, WORKDIR and USER all matter:
    its command prints them to the console, then sleeps."""
    return image_fixtures.build_saved_image(changes=(
        'ENTRYPOINT ["/bin/busybox"]',
        'CMD ["sh", "-c", "echo %s; exec sleep 2147483647"]' % BOOT_LINE,
        'ENV GREETING=hello-from-the-image',
        'WORKDIR /srv/app',
        'USER 0',
    ))


class TaskStateRecorder:
    """The update_task_state callback Nova passes, recording the calls."""

    def __init__(self, fail_on=None):
        self.calls = []
        self.fail_on = fail_on

    def __call__(self, task_state, expected_state=task_states.IMAGE_SNAPSHOT):
        self.calls.append((task_state, expected_state))
        if task_state == self.fail_on:
            raise exception.UnexpectedDeletingTaskStateError(
                instance_uuid='x', expected=expected_state,
                actual='deleting')


class SnapshotTestBase(base.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(self._remove_snapshot_images)

    def new_snapshot_record(self, name='snap') -> str:
        """The Glance record Nova creates before calling the driver
        (compute/utils.py create_image: no formats, queued)."""
        return self.glance.create(self.context, {
            'name': name, 'properties': {'image_type': 'snapshot'}})['id']

    def snapshot_images_here(self) -> list:
        """Temporary committed images of this test's host."""
        suffix = snapshot.snapshot_tag('x', self.host).split('-', 1)[1]
        return [tag for image in self.api.images(
                    name=snapshot.SNAPSHOT_REPOSITORY)
                for tag in image.get('RepoTags') or []
                if tag.endswith(suffix)]

    def _remove_snapshot_images(self):
        for tag in self.snapshot_images_here():
            self.api.remove_image(tag, force=True)

    def take_snapshot(self, instance, recorder=None) -> str:
        image_id = self.new_snapshot_record()
        recorder = recorder or TaskStateRecorder()
        self.driver.snapshot(self.context, instance, image_id, recorder)
        return image_id

    def boot_from(self, image_id):
        return self.spawn(objects.ImageMeta.from_dict(
            self.glance.get(self.context, image_id)))

    def container_state(self, instance) -> dict:
        return self.inspect(instance)['State']

    def assertNothingLeft(self, image_id):
        """No temporary image, and Glance got no data for the record."""
        self.assertEqual([], self.snapshot_images_here())
        self.assertNotIn(image_id, self.glance.data)


class SnapshotTest(SnapshotTestBase):

    def test_snapshot_then_boot_finds_the_change_and_config(self):
        source = self.spawn(self.add_image(configured_image_tarball()))
        self.exec_in(source, 'sh', '-c',
                     'echo written-in-source > /root/changed && '
                     'rm /bin/ping && mkdir -p /var/lib/app')
        recorder = TaskStateRecorder()

        image_id = self.take_snapshot(source, recorder)

        # Task states as the compute manager requires (it saves with
        # expected_task_state=IMAGE_UPLOADING afterwards).
        self.assertEqual(
            [(task_states.IMAGE_PENDING_UPLOAD, task_states.IMAGE_SNAPSHOT),
             (task_states.IMAGE_UPLOADING,
              task_states.IMAGE_PENDING_UPLOAD)], recorder.calls)
        meta = self.glance.get(self.context, image_id)
        self.assertEqual('docker', meta['container_format'])
        self.assertEqual('raw', meta['disk_format'])
        self.assertEqual('active', meta['status'])
        self.assertEqual('snapshot', meta['properties']['image_location'])
        self.assertEqual('snapshot', meta['properties']['image_type'])
        # The bytes are a docker save tarball of exactly one image.
        with tarfile.open(fileobj=io.BytesIO(
                self.glance.data[image_id])) as tar:
            manifest = json.load(tar.extractfile('manifest.json'))
        self.assertEqual(1, len(manifest))
        self.assertEqual(len(self.glance.data[image_id]), meta['size'])
        # The source keeps running, unpaused; the committed image is gone.
        self.assertEqual('running', self.container_state(source)['Status'])
        self.assertFalse(self.container_state(source)['Paused'])
        self.assertEqual([], self.snapshot_images_here())

        # Boot a new instance from the uploaded bytes.
        clone = self.boot_from(image_id)
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(clone).state)
        self.assertEqual('written-in-source\n',
                         self.exec_in(clone, 'cat', '/root/changed'))
        self.assertIn('dir', self.exec_in(
            clone, 'sh', '-c', 'test -d /var/lib/app && echo dir'))
        self.assertNotIn('ping', self.exec_in(clone, 'ls', '/bin').split())
        config = self.inspect(clone)['Config']
        self.assertEqual(['/bin/busybox'], config['Entrypoint'])
        self.assertEqual(
            ['sh', '-c', 'echo %s; exec sleep 2147483647' % BOOT_LINE],
            config['Cmd'])
        self.assertIn('GREETING=hello-from-the-image', config['Env'])
        self.assertEqual('/srv/app', config['WorkingDir'])
        # What actually ran: the console of the clone.
        console = self.driver.get_console_output(self.context, clone)
        self.assertIn(b'booted in /srv/app with hello-from-the-image as 0',
                      console)
        # The clone belongs to its own instance: the source's labels were
        # blanked in the image and replaced by the clone's.
        labels = config['Labels']
        self.assertEqual(clone.uuid, labels[guest.LABEL_INSTANCE])
        loaded = self.api.inspect_image(images.glance_tag(image_id))
        self.assertEqual('', loaded['Config']['Labels'][guest.LABEL_HOST])
        self.assertEqual('', loaded['Config']['Labels'][guest.LABEL_INSTANCE])
        self.assertEqual('', loaded['Config']['Labels'][guest.LABEL_NAME])
        self.assertEqual(clone.name, labels[guest.LABEL_NAME])
        self.assertEqual(sorted([source.uuid, clone.uuid]),
                         self.driver.list_instance_uuids())

    def test_snapshot_of_a_paused_instance_leaves_it_paused(self):
        instance = self.spawn()
        self.exec_in(instance, 'touch', '/root/before-pause')
        self.driver.pause(instance)

        image_id = self.take_snapshot(instance)

        self.assertTrue(self.container_state(instance)['Paused'])
        self.assertEqual(power_state.PAUSED,
                         self.driver.get_info(instance).state)
        self.driver.unpause(instance)
        clone = self.boot_from(image_id)
        self.exec_in(clone, 'test', '-f', '/root/before-pause')

    def test_shelve_offload_unshelve_sequence(self):
        # What Nova does: power off, snapshot, destroy; later spawn the
        # instance again from the snapshot (same instance object).
        instance = self.spawn()
        self.exec_in(instance, 'sh', '-c', 'echo kept > /root/shelved')
        self.driver.power_off(instance, timeout=0)
        self.assertEqual(power_state.SHUTDOWN,
                         self.driver.get_info(instance).state)

        image_id = self.take_snapshot(instance)
        self.assertEqual(power_state.SHUTDOWN,
                         self.driver.get_info(instance).state)
        self.driver.destroy(self.context, instance, [])
        self.assertEqual([], self.driver.list_instance_uuids())

        shelved = objects.ImageMeta.from_dict(
            self.glance.get(self.context, image_id))
        self.driver.spawn(self.context, instance, shelved, [], None, {})
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(instance).state)
        self.assertEqual('kept\n',
                         self.exec_in(instance, 'cat', '/root/shelved'))
        self.assertEqual([instance.uuid], self.driver.list_instance_uuids())

    def test_snapshot_of_a_snapshot(self):
        first = self.spawn()
        self.exec_in(first, 'sh', '-c', 'echo 1 > /root/generation')
        second = self.boot_from(self.take_snapshot(first))
        self.exec_in(second, 'sh', '-c', 'echo 2 >> /root/generation')
        third = self.boot_from(self.take_snapshot(second))
        self.assertEqual('1\n2\n',
                         self.exec_in(third, 'cat', '/root/generation'))


class SnapshotFaultTest(SnapshotTestBase):
    """Every failure: a clear error, the instance as it was, nothing left."""

    def setUp(self):
        super().setUp()
        self.instance = self.spawn()
        self.exec_in(self.instance, 'touch', '/root/data')

    def assertInstanceUntouched(self):
        state = self.container_state(self.instance)
        self.assertEqual('running', state['Status'])
        self.assertFalse(state['Paused'])
        self.exec_in(self.instance, 'test', '-f', '/root/data')

    def test_glance_fails_mid_upload(self):
        real_update = self.glance.update
        read = []

        def failing_update(context, image_id, meta, data=None, **kw):
            sent = 0
            while sent < 256 * 1024:   # some bytes went out
                sent += len(data.read(64 * 1024))
            read.append(sent)
            raise IOError('Connection reset by peer (glance-api)')

        self.glance.update = failing_update
        image_id = self.new_snapshot_record()
        exc = self.assertRaises(
            snapshot.SnapshotFailed, self.driver.snapshot, self.context,
            self.instance, image_id, TaskStateRecorder())
        self.assertIn('uploading to Glance', str(exc))
        self.assertIn('Connection reset by peer', str(exc))
        self.assertGreaterEqual(read[0], 256 * 1024)
        self.assertInstanceUntouched()
        self.assertNothingLeft(image_id)
        # And a retry once Glance is back works.
        self.glance.update = real_update
        self.driver.snapshot(self.context, self.instance, image_id,
                             TaskStateRecorder())
        self.assertEqual('active', self.glance.images[image_id]['status'])
        self.assertEqual([], self.snapshot_images_here())

    def test_glance_unreachable_before_anything_is_made(self):
        image_id = self.new_snapshot_record()
        refused = exception.GlanceConnectionFailed(
            server='glance:9292', reason='connection refused')
        with mock.patch.object(self.glance, 'get', side_effect=refused), \
                mock.patch.object(self.driver.api, 'commit',
                                  wraps=self.driver.api.commit) as commit:
            self.assertRaises(exception.GlanceConnectionFailed,
                              self.driver.snapshot, self.context,
                              self.instance, image_id, TaskStateRecorder())
        commit.assert_not_called()
        self.assertInstanceUntouched()
        self.assertNothingLeft(image_id)

    def test_glance_image_deleted_meanwhile(self):
        image_id = self.new_snapshot_record()

        def gone(context, image_id, meta, data=None, **kw):
            raise exception.ImageNotFound(image_id=image_id)

        self.glance.update = gone
        # ImageNotFound passes through unchanged: Nova handles it.
        self.assertRaises(exception.ImageNotFound, self.driver.snapshot,
                          self.context, self.instance, image_id,
                          TaskStateRecorder())
        self.assertInstanceUntouched()
        self.assertNothingLeft(image_id)

    def test_instance_deleted_before_commit(self):
        image_id = self.new_snapshot_record()
        real_commit = self.driver.api.commit

        def delete_then_commit(container, *args, **kwargs):
            self.driver.destroy(self.context, self.instance, [])
            return real_commit(container, *args, **kwargs)

        with mock.patch.object(self.driver.api, 'commit',
                               side_effect=delete_then_commit):
            self.assertRaises(exception.InstanceNotFound,
                              self.driver.snapshot, self.context,
                              self.instance, image_id, TaskStateRecorder())
        self.assertNothingLeft(image_id)
        self.assertEqual([], self.driver.list_instance_uuids())

    def test_instance_deleted_during_upload(self):
        # Nova reports a delete through the task state check.
        image_id = self.new_snapshot_record()
        recorder = TaskStateRecorder(fail_on=task_states.IMAGE_UPLOADING)
        self.assertRaises(exception.UnexpectedDeletingTaskStateError,
                          self.driver.snapshot, self.context, self.instance,
                          image_id, recorder)
        self.assertInstanceUntouched()
        self.assertNothingLeft(image_id)

    def test_instance_never_existed(self):
        image_id = self.new_snapshot_record()
        stranger = self.make_instance(self.add_image())
        # No container: InstanceNotRunning, as Nova's driver contract wants
        # (the manager treats it as "deleted during the snapshot").
        self.assertRaises(exception.InstanceNotRunning, self.driver.snapshot,
                          self.context, stranger, image_id,
                          TaskStateRecorder())
        self.assertNothingLeft(image_id)

    def test_disk_full_during_commit_unpauses(self):
        # The daemon paused the container, then failed to write the layer;
        # the driver must not leave the workload frozen.
        image_id = self.new_snapshot_record()
        container = self.driver._guests.get(self.instance).workload_id

        def pause_then_fail(*args, **kwargs):
            self.api.pause(container)
            raise docker.errors.APIError(
                'commit failed', explanation='write /var/lib/docker/...: '
                'no space left on device')

        with mock.patch.object(self.driver.api, 'commit',
                               side_effect=pause_then_fail):
            exc = self.assertRaises(
                snapshot.SnapshotFailed, self.driver.snapshot, self.context,
                self.instance, image_id, TaskStateRecorder())
        self.assertIn('no space left on device', str(exc))
        self.assertIn('committing the container', str(exc))
        self.assertInstanceUntouched()
        self.assertNothingLeft(image_id)

    def test_disk_full_while_saving(self):
        # docker save stages the image on disk; it fails mid-stream here,
        # after the real commit made the temporary image.
        image_id = self.new_snapshot_record()
        real_get_image = self.driver.api.get_image

        def failing_save(name, chunk_size=None):
            chunks = real_get_image(name, chunk_size=chunk_size)
            yield next(chunks)
            raise IOError(errno.ENOSPC, 'No space left on device')

        with mock.patch.object(self.driver.api, 'get_image',
                               side_effect=failing_save):
            exc = self.assertRaises(
                snapshot.SnapshotFailed, self.driver.snapshot, self.context,
                self.instance, image_id, TaskStateRecorder())
        self.assertIn('No space left on device', str(exc))
        self.assertIn('saving the committed image', str(exc))
        self.assertInstanceUntouched()
        self.assertNothingLeft(image_id)

    def test_save_refused_before_upload(self):
        image_id = self.new_snapshot_record()
        recorder = TaskStateRecorder()

        def refused(name, chunk_size=None):
            raise docker.errors.APIError(
                'save failed', explanation='no space left on device')
            yield b''   # a generator, like the SDK's

        with mock.patch.object(self.driver.api, 'get_image',
                               side_effect=refused):
            self.assertRaises(snapshot.SnapshotFailed, self.driver.snapshot,
                              self.context, self.instance, image_id,
                              recorder)
        # The upload never started.
        self.assertEqual([task_states.IMAGE_PENDING_UPLOAD],
                         [state for state, _ in recorder.calls])
        self.assertInstanceUntouched()
        self.assertNothingLeft(image_id)
