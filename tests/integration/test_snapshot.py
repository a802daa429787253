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
import warnings

from nova import context as nova_context
from nova import objects
from sqlalchemy import exc as sqla_exc

from novadocker.virt.docker import snapshot


class SnapshotThroughAPITest(base.IntegrationTestCase):

    def setUp(self):
        super().setUp()
        # nova's WarningsFixture makes SQLAlchemy deprecations raised from
        # nova errors; with SQLAlchemy 2.1, nova 34's lazy load of
        # instance.image_meta (the shelve API path) uses the deprecated
        # noload(). Not a driver matter: let that one warning pass.
        warnings.filterwarnings(
            'ignore', message=r'The noload\(\) option is deprecated',
            category=sqla_exc.SADeprecationWarning)

    def snapshot_images_here(self) -> list:
        suffix = snapshot.snapshot_tag('x', self.compute_host).split(
            '-', 1)[1]
        return [tag for image in self.docker.images(
                    name=snapshot.SNAPSHOT_REPOSITORY)
                for tag in image.get('RepoTags') or []
                if tag.endswith(suffix)]

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
        server = self.boot()
        self.exec_in(server, 'sh', '-c', 'echo before-shelve > /root/mark')

        server = self._shelve_server(server, expected_state='SHELVED')
        self.wait_for_task_done(server)
        self.assertContainerStatus(server, 'exited')
        shelved = self.api.get_server(server['id'])
        image = self.glance.show(None, self._shelved_image(server))
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

    def test_shelve_with_immediate_offload_then_unshelve(self):
        self.flags(shelved_offload_time=0)
        server = self.boot()
        self.exec_in(server, 'sh', '-c', 'echo offloaded > /root/mark')
        server = self._shelve_server(server)   # SHELVED_OFFLOADED
        self.wait_for_task_done(server)
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
