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

"""Resize and rescue through Nova's API, on the real engine."""

import time

from nova import context
from nova import objects
from oslo_utils import units

from novadocker.virt.docker import guest
from novadocker.virt.docker import rescue
from novadocker.virt.docker import resize
from tests.integration import base

OLD = {'VCPU': 1, 'MEMORY_MB': 128, 'DISK_GB': 1}
NEW = {'VCPU': 2, 'MEMORY_MB': 256, 'DISK_GB': 1}


class ResizeTest(base.IntegrationTestCase):

    def setUp(self):
        super().setUp()
        self.flags(allow_resize_to_same_host=True)
        self.new_flavor_id = self._create_flavor(
            memory_mb=256, vcpu=2, disk=1, ephemeral=0)
        self.rp_uuid = self._get_provider_uuid_by_host(self.compute_host)

    def resize_to(self, server, flavor_id, expected='VERIFY_RESIZE'):
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': flavor_id}})
        self._wait_for_state_change(server, expected)
        return self.wait_for_task_done(server)

    def allocations_here(self) -> dict:
        """consumer -> resources on the node."""
        return {consumer: alloc['resources'] for consumer, alloc in
                self._get_allocations_by_provider_uuid(
                    self.rp_uuid).items()}

    def assertAllocationsBecome(self, expected: dict, timeout: int = 30):
        """Nova removes the migration's allocations after it marks the
        instance ACTIVE and the migration confirmed/reverted: wait."""
        deadline = time.monotonic() + timeout
        while self.allocations_here() != expected and \
                time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(expected, self.allocations_here())

    def assertVerifyResizeAllocations(self, server):
        # Same host: the server holds the new flavor, the migration the
        # old one, on the same provider.
        allocations = self.allocations_here()
        self.assertEqual(NEW, allocations.pop(server['id']))
        self.assertEqual([OLD], list(allocations.values()))

    def test_resize_confirm(self):
        server = self.boot()
        self.exec_in(server, 'sh', '-c', 'echo kept > /marker')
        workload_id = self.workload(server)['Id']
        self.resize_to(server, self.new_flavor_id)
        self.assertVerifyResizeAllocations(server)
        workload = self.assertContainerStatus(server, 'running')
        self.assertEqual(workload_id, workload['Id'])
        self.assertEqual(256 * units.Mi, workload['HostConfig']['Memory'])
        self.assertEqual('kept', self.exec_in(server, 'cat',
                                              '/marker').strip())
        self.api.post_server_action(server['id'], {'confirmResize': None})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.wait_for_task_done(server)
        self._wait_for_migration_status(server, ['confirmed'])
        self.assertAllocationsBecome({server['id']: NEW})
        self.assertFalse(self.docker.images(name=resize.RESIZE_REPOSITORY +
                                            ':' + server['id']))
        self._delete_server(server)
        self.assertAllocationsBecome({})

    def test_resize_revert(self):
        server = self.boot()
        self.resize_to(server, self.new_flavor_id)
        self.api.post_server_action(server['id'], {'revertResize': None})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.wait_for_task_done(server)
        self._wait_for_migration_status(server, ['reverted'])
        self.assertAllocationsBecome({server['id']: OLD})
        workload = self.assertContainerStatus(server, 'running')
        self.assertEqual(128 * units.Mi, workload['HostConfig']['Memory'])
        self.assertEqual(
            self.admin_api.get_server(server['id'])['flavor'][
                'original_name'],
            self.api.get_flavor(self.flavor_id)['name'])
        self._delete_server(server)
        self.assertNoContainers(server['id'])
        self.assertFalse(self.docker.images(name=resize.RESIZE_REPOSITORY +
                                            ':' + server['id']))

    def test_resize_a_stopped_server_stays_stopped(self):
        server = self.boot()
        self.action(server, 'os-stop', expected_state='SHUTOFF')
        self.resize_to(server, self.new_flavor_id)
        self.assertContainerStatus(server, 'exited')
        self.api.post_server_action(server['id'], {'confirmResize': None})
        self._wait_for_state_change(server, 'SHUTOFF')

    def assertResizeRefused(self, server, flavor_id):
        """The resize fails and the server is back as it was: ACTIVE on
        the old flavor's allocations and limits, running."""
        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': flavor_id}})
        self._wait_for_migration_status(server, ['error'])
        server = self.wait_for_task_done(server)
        self.assertEqual('ACTIVE', server['status'])
        self.assertAllocationsBecome({server['id']: OLD})
        self.assertEqual(128 * units.Mi, self.assertContainerStatus(
            server, 'running')['HostConfig']['Memory'])

    def test_resize_to_a_flavor_the_host_cannot_hold(self):
        server = self.boot()
        # More vCPUs than the node has (VCPU max_unit): no valid host.
        self.assertResizeRefused(server, self._create_flavor(
            memory_mb=128, vcpu=16, disk=1, ephemeral=0))
        action = [a for a in self.api.get_instance_actions(server['id'])
                  if a['action'] == 'resize'][0]
        self.assertEqual('Error', action['message'])

    def test_resize_to_an_ephemeral_flavor_is_refused(self):
        server = self.boot()
        self.assertResizeRefused(server, self._create_flavor(
            memory_mb=256, vcpu=2, disk=1, ephemeral=1))
        self._wait_for_action_fail_completion(
            server, 'resize', 'compute_resize_instance')
        # The API shows faults of ERROR servers only: read the record.
        faults = objects.InstanceFaultList.get_by_instance_uuids(
            context.get_admin_context(), [server['id']])
        self.assertIn('ephemeral disk of 1 GB', faults[0].message)


class EphemeralDiskTest(base.IntegrationTestCase):

    def test_boot_with_ephemeral_disk_is_a_readable_fault(self):
        self.flavor_id = self._create_flavor(memory_mb=128, vcpu=1, disk=1,
                                             ephemeral=1)
        image_id = self.upload_image()
        self.leaks.forbid_images()
        server = self.boot(image_id, expected_state='ERROR')
        fault = self.admin_api.get_server(server['id'])['fault']
        # Aborted with the driver's reason, not rescheduled.
        self.assertIn('ephemeral disk of 1 GB', fault['message'])
        self.assertIn('ephemeral_gb = 0', fault['message'])
        self.assertNoContainers(server['id'])
        self.assertFalse(self.docker_image_loaded(image_id))
        self.assertNotIn(image_id, self.glance.download_count)


class RescueTest(base.IntegrationTestCase):

    def test_rescue_unrescue(self):
        server = self.boot()
        self.exec_in(server, 'sh', '-c', 'echo before > /marker')
        server = self._rescue_server(server)
        containers = self.containers_of(server['id'])
        self.assertTrue(containers[rescue.ROLE_RESCUE]['State']['Running'])
        self.assertEqual(
            'container:%s' % containers[guest.ROLE_SANDBOX]['Id'],
            containers[rescue.ROLE_RESCUE]['HostConfig']['NetworkMode'])
        self.assertFalse(containers[guest.ROLE_WORKLOAD]['State']['Running'])
        self.assertEqual('RESCUE',
                         self.api.get_server(server['id'])['status'])
        server = self._unrescue_server(server)
        self.wait_for_task_done(server)
        self.assertNotIn(rescue.ROLE_RESCUE, self.containers_of(server['id']))
        self.assertEqual('before', self.exec_in(server, 'cat',
                                                '/marker').strip())

    def test_delete_a_rescued_server(self):
        server = self.boot()
        server = self._rescue_server(server)
        self._delete_server(server)
        self.assertNoContainers(server['id'])
