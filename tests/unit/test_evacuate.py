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

"""Evacuate: Nova's default rebuild on the new host, and the clean-up on
the old one when it starts again (nova-compute's
_destroy_evacuated_instances calling destroy, the reaper leaving those
instances to it, the shared-storage check deciding about the config
drive)."""

import os
from unittest import mock

import fixtures
from nova import objects
from nova.objects import fields
from nova.virt import driver as nova_driver
from nova.virt import fake as fake_virt

from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import configdrive
from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import guest
from novadocker.virt.docker import vifs
from tests.fixtures import network as net_fixtures
from tests.fixtures import objects as obj_fixtures
from tests.unit import test_driver

OTHER_HOST = 'unit-other-host'


class CapabilityTest(test_driver.DriverTestBase):

    def test_evacuate_is_supported_by_nova_s_default_rebuild(self):
        self.assertTrue(
            docker_driver.DockerDriver.capabilities['supports_evacuate'])
        # No rebuild of its own: the manager's _rebuild_default_impl
        # spawns on the new host from the image...
        self.assertIs(nova_driver.ComputeDriver.rebuild,
                      docker_driver.DockerDriver.rebuild)
        # ...never from a writable layer on shared storage.
        self.assertFalse(self.driver.instance_on_disk(
            obj_fixtures.instance()))

    def test_the_new_host_has_no_container_of_it(self):
        """rebuild_instance checks instance_exists before spawning: the
        old host's containers are not the new one's."""
        instance = self.spawn(self.add_image())
        self.driver._host = OTHER_HOST
        self.assertFalse(self.driver.instance_exists(instance))
        self.assertEqual([], self.driver.list_instance_uuids())


class EngineURLTest(test_driver.DriverTestBase):
    """A driver given an engine URL (two compute services in one test
    process) opens every client there."""

    def test_every_client_uses_it(self):
        driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        driver.api_url = 'unix:///other.sock'
        with mock.patch.object(docker_client, 'connect',
                               autospec=True) as connect:
            self.assertIs(connect.return_value, driver.api)
            driver._consoles._connect()
        self.assertEqual([
            mock.call(timeout=-1, url='unix:///other.sock'),
            mock.call(timeout=None, url='unix:///other.sock')],
            connect.call_args_list)


class SourceCleanupTest(test_driver.DriverTestBase):
    """destroy on the old host of an instance Nova moved away: instance.host
    names the new host, network_info the ports bound there."""

    def setUp(self):
        super().setUp()
        self.instances_path = self.useFixture(fixtures.TempDir()).path
        self.cfg.config(instances_path=self.instances_path)
        self.instance = self.spawn(self.add_image())
        os.makedirs(configdrive.host_path(self.instance))
        self.instance.host = self.instance.node = OTHER_HOST
        self.driver._vifs = mock.create_autospec(vifs.VIFPlugger,
                                                 instance=True)
        self.vifs = [net_fixtures.make_vif()]

    def test_listed_then_destroyed(self):
        self.assertEqual([self.instance.uuid],
                         self.driver.list_instance_uuids())
        self.assertEqual([self.instance.name], self.driver.list_instances())
        self.driver.destroy(self.context, self.instance, self.vifs, {},
                            True)
        self.assertEqual({}, self.engine.containers)
        self.assertEqual([], self.driver.list_instance_uuids())
        # Only the local side of the ports: the plugger deletes devices
        # and OVS ports of this host, it has no Neutron client.
        self.driver._vifs.unplug.assert_called_once_with(self.instance,
                                                         self.vifs)
        self.assertEqual([], os.listdir(self.instances_path))

    def test_shared_instances_path_keeps_the_config_drive(self):
        self.driver.destroy(self.context, self.instance, self.vifs, {},
                            False)
        self.assertEqual({}, self.engine.containers)
        self.assertTrue(os.path.isdir(configdrive.host_path(self.instance)))

    def test_shared_storage_check(self):
        """The old host makes a file, the new host looks for it (here the
        same directory: shared), the old host removes it."""
        data = self.driver.check_instance_shared_storage_local(
            self.context, self.instance)
        self.assertTrue(self.driver.check_instance_shared_storage_remote(
            self.context, data))
        self.driver.check_instance_shared_storage_cleanup(self.context,
                                                          data)
        self.assertFalse(self.driver.check_instance_shared_storage_remote(
            self.context, data))
        self.assertEqual(['config-drive'], os.listdir(
            os.path.join(self.instances_path, self.instance.uuid)))
        # Idempotent.
        self.driver.check_instance_shared_storage_cleanup(self.context,
                                                          data)

    def test_no_instance_directory_nothing_to_check(self):
        self.assertIsNone(self.driver.check_instance_shared_storage_local(
            self.context, obj_fixtures.instance()))


class ReaperLeavesEvacuatedTest(test_driver.DriverTestBase):
    """At start-up the reaper runs before nova-compute's
    _destroy_evacuated_instances: it must not remove the containers first
    (Nova would no longer see the instance here, and the config drive
    would stay)."""

    def setUp(self):
        super().setUp()
        self.cfg.config(reap_min_age=0, group='docker')
        self.instance = self.spawn(self.add_image())
        self.driver._vifs = mock.create_autospec(vifs.VIFPlugger,
                                                 instance=True)
        self.driver._vifs.unplug_leftovers.return_value = []
        self.driver._make_reaper('unit-host')
        self.by_host = self.useFixture(fixtures.MockPatchObject(
            objects.InstanceList, 'get_by_host', autospec=True,
            return_value=[])).mock
        self.migrations = self.useFixture(fixtures.MockPatchObject(
            objects.MigrationList, 'get_by_filters', autospec=True)).mock
        self.alive = self.useFixture(fixtures.MockPatchObject(
            objects.InstanceList, 'get_by_filters', autospec=True)).mock

    def evacuations(self, *uuids, alive=True):
        self.migrations.return_value = [
            objects.Migration(instance_uuid=uuid) for uuid in uuids]
        self.alive.return_value = [
            objects.Instance(uuid=uuid) for uuid in uuids] if alive else []

    def workloads(self):
        return [c['labels'][guest.LABEL_INSTANCE]
                for c in self.engine.containers.values()
                if c['labels'][guest.LABEL_ROLE] == guest.ROLE_WORKLOAD]

    def test_evacuated_instance_is_left_to_nova(self):
        self.evacuations(self.instance.uuid)
        result = self.driver.reap('start-up')
        self.assertEqual([], result.reaped)
        self.assertEqual([self.instance.uuid], self.workloads())
        _context, filters = self.migrations.call_args[0]
        self.assertEqual({
            'source_compute': 'unit-host',
            'status': ['accepted', 'pre-migrating', 'done'],
            'migration_type': fields.MigrationType.EVACUATION}, filters)
        self.assertEqual({'uuid': [self.instance.uuid], 'deleted': False},
                         self.alive.call_args[0][1])

    def test_reaped_once_nova_completed_the_evacuation(self):
        """A left-over (a sandbox Nova does not list) goes at the next
        pass once Nova marked the evacuation completed."""
        self.evacuations()
        self.assertEqual([self.instance.uuid],
                         self.driver.reap('periodic').reaped)
        self.assertEqual({}, self.engine.containers)
        self.alive.assert_not_called()

    def test_deleted_instance_is_reaped(self):
        """Nova never completes a deleted instance's evacuation."""
        self.evacuations(self.instance.uuid, alive=False)
        self.assertEqual([self.instance.uuid],
                         self.driver.reap('start-up').reaped)
        self.assertEqual({}, self.engine.containers)
