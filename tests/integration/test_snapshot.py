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

"""createImage, boot from the snapshot, shelve, shelve-offload and unshelve
through Nova's REST API, on the real engine, with a Glance fixture that
stores and serves the real bytes."""

from tests.integration import base  # isort:skip  (imports nova first)

import io
import json
import tarfile
import uuid

import fixtures
from nova import context as nova_context
from nova import objects

from novadocker.virt.docker import imagecache
from novadocker.virt.docker import images
from novadocker.virt.docker import snapshot
from tests.fixtures import images as image_fixtures


class SnapshotThroughAPITest(base.IntegrationTestCase):

    def snapshot_images_here(self) -> list:
        suffix = snapshot.snapshot_tag('x', self.compute_host).split(
            '-', 1)[1]
        return [tag for image in self.docker.images(
                    name=snapshot.SNAPSHOT_REPOSITORY)
                for tag in image.get('RepoTags') or []
                if tag.endswith(suffix)]

    def remove_cached_later(self) -> list:
        """Glance IDs whose cached Docker image the test removes at the
        end. Unshelve deletes the shelved snapshot from Glance, so the
        Glance-driven leak check would not know its cached image. Call it
        before booting: cleanups run in reverse, after the server is gone.
        """
        image_ids = []

        def remove():
            for image_id in image_ids:
                tag = images.glance_tag(image_id)
                if self.docker.images(name=tag):
                    self.docker.remove_image(tag, force=True)

        self.addCleanup(remove)
        return image_ids

    def create_image(self, server, name='nd-snap') -> str:
        """POST createImage; wait until the server has no task left."""
        body = self.api.post_server_action(
            server['id'], {'createImage': {'name': name}})
        self.wait_for_task_done(server)
        return body['image_id']

    def test_create_image_then_boot_from_it(self):
        server = self.boot()
        self.exec_in(server, 'sh', '-c', 'echo from-the-api > /root/mark')

        image_id = self.create_image(server)

        image = self.glance.show(None, image_id)
        self.assertEqual('active', image['status'])
        self.assertEqual('docker', image['container_format'])
        self.assertEqual('raw', image['disk_format'])
        self.assertEqual('snapshot', image['properties']['image_type'])
        self.assertEqual(server['id'],
                         image['properties']['instance_uuid'])
        blob = self.glance.bytes_of(image_id)
        self.assertEqual(len(blob), image['size'])
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            self.assertEqual(1, len(json.load(
                tar.extractfile('manifest.json'))))
        # The source server kept running.
        self.assertEqual('nd-snap', image['name'])
        self.assertEqual('ACTIVE',
                         self.api.get_server(server['id'])['status'])
        state = self.assertContainerStatus(server, 'running')['State']
        self.assertFalse(state['Paused'])
        self.assertEqual([], self.snapshot_images_here())

        clone = self.boot(image_id)
        self.assertEqual('from-the-api\n',
                         self.exec_in(clone, 'cat', '/root/mark'))
        self.assertEqual(self.docker.inspect_image(
            'nova-docker/glance:%s' % image_id)['Id'],
            self.workload(clone)['Image'])

    def test_shelve_offload_unshelve(self):
        self.flags(shelved_offload_time=-1)   # keep it on the host
        shelved_ids = self.remove_cached_later()
        server = self.boot()
        self.exec_in(server, 'sh', '-c', 'echo before-shelve > /root/mark')

        server = self._shelve_server(server, expected_state='SHELVED')
        self.wait_for_task_done(server)
        self.assertContainerStatus(server, 'exited')
        shelved = self.api.get_server(server['id'])
        shelved_ids.append(self._shelved_image(server))
        image = self.glance.show(None, shelved_ids[0])
        self.assertEqual('docker', image['container_format'])
        self.assertEqual('active', image['status'])

        self._shelve_offload_server(server)
        self.assertNoContainers(server['id'])
        self.assertEqual('SHELVED_OFFLOADED',
                         self.api.get_server(server['id'])['status'])
        self.assertIsNone(shelved.get('fault'))

        server = self._unshelve_server(server)
        self.assertEqual(self.compute_host,
                         server['OS-EXT-SRV-ATTR:host'])
        self.assertContainerStatus(server, 'running')
        self.assertEqual('before-shelve\n',
                         self.exec_in(server, 'cat', '/root/mark'))
        self.assertEqual([], self.snapshot_images_here())
        # The server runs the shelved snapshot, which Nova then deleted
        # from Glance; the cached copy stays while the container uses it.
        self.assertEqual(self.docker.inspect_image(
            images.glance_tag(shelved_ids[0]))['Id'],
            self.workload(server)['Image'])

    def test_shelve_with_immediate_offload_then_unshelve(self):
        self.flags(shelved_offload_time=0)
        shelved_ids = self.remove_cached_later()
        server = self.boot()
        self.exec_in(server, 'sh', '-c', 'echo offloaded > /root/mark')
        server = self._shelve_server(server)   # SHELVED_OFFLOADED
        self.wait_for_task_done(server)
        shelved_ids.append(self._shelved_image(server))
        self.assertNoContainers(server['id'])
        server = self._unshelve_server(server)
        self.assertEqual('offloaded\n',
                         self.exec_in(server, 'cat', '/root/mark'))

    def _shelved_image(self, server) -> str:
        """The snapshot Nova recorded for the shelved server."""
        snapshots = [image_id for image_id in self.glance.ids_with_data()
                     if self.glance.show(None, image_id)['properties'].get(
                         'instance_uuid') == server['id']]
        self.assertEqual(1, len(snapshots))
        return snapshots[0]

    def test_upload_failure_keeps_the_server_running(self):
        server = self.boot()
        real_update = self.glance.update

        def failing_update(context, image_id, metadata, data=None,
                           purge_props=False):
            if data is not None:
                data.read(64 * 1024)
                raise IOError('glance-api connection reset')
            return real_update(context, image_id, metadata,
                               purge_props=purge_props)

        self.glance.update = failing_update
        self.addCleanup(setattr, self.glance, 'update', real_update)
        body = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'doomed'}})
        server = self.wait_for_task_done(server)

        self.assertEqual('ACTIVE', server['status'])
        state = self.assertContainerStatus(server, 'running')['State']
        self.assertFalse(state['Paused'])
        # Nova deleted the half-made image; the driver its local image.
        self.assertNotIn(body['image_id'], self.glance.images)
        self.assertEqual([], self.snapshot_images_here())
        # The driver's readable error is the instance fault Nova records
        # (the server stays ACTIVE, so the API does not show it).
        ctx = nova_context.get_admin_context()
        with nova_context.target_cell(
                ctx, self.cell_mappings['cell1']) as cctx:
            faults = objects.InstanceFaultList.get_by_instance_uuids(
                cctx, [server['id']])
        self.assertEqual(1, len(faults))
        self.assertIn('failed while uploading to Glance: glance-api '
                      'connection reset', faults[0].message)

    def test_image_cache_pass_of_the_compute_manager(self):
        # Nova's own periodic: it lists this host's instances from the
        # database and hands them to manage_image_cache.
        self.flags(remove_unused_original_minimum_age_seconds=0,
                   group='image_cache')

        def distinct():
            return image_fixtures.build_saved_image(
                changes=('CMD ["/bin/sleep", "2147483647"]',),
                extra_files={'etc/unique': uuid.uuid4().hex.encode()})

        kept = self.upload_image(distinct())
        server = self.boot(kept)
        unused = self.upload_image(distinct())
        gone = self.boot(unused)
        # Only this test's images: other tests share the engine, and their
        # images may be unused for a moment between load and boot.
        real_list_cached = imagecache.list_cached
        own = self.useFixture(fixtures.MockPatchObject(
            imagecache, 'list_cached', side_effect=lambda api: [
                image for image in real_list_cached(api)
                if image.glance_id in (kept, unused)]))
        ctx = nova_context.get_admin_context()
        # Both in use: both kept (and touched).
        self.compute.manager._run_image_cache_manager_pass(ctx)
        self.assertTrue(self.docker_image_loaded(unused))
        self.api.delete_server(gone['id'])
        self._wait_until_deleted(gone)
        self.assertTrue(self.docker_image_loaded(unused))

        self.compute.manager._run_image_cache_manager_pass(ctx)

        self.assertTrue(own.mock.called)
        self.assertTrue(self.docker_image_loaded(kept))
        self.assertFalse(self.docker_image_loaded(unused))
        self.assertContainerStatus(server, 'running')
