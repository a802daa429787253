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

"""Cold migration between two Docker engines, through the Glance double.

The source is the test's driver on the shared engine; the destination is a
second DockerDriver, as another compute host, on a private dockerd. The
workload's filesystem crosses only as a hidden Glance image. Both hosts
share this machine's Open vSwitch, which a real pair of hosts would not:
NetworkMigrateTest shows the source unplugs the ports before the
destination plugs the same ones (same devices, MAC and addresses).
"""

import uuid

import fixtures
from nova.compute import power_state
from nova.compute import task_states
from nova import exception
from nova import objects
from nova.virt import fake as fake_virt

from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import guest
from novadocker.virt.docker import migrate
from novadocker.virt.docker import resize
from tests.fixtures import docker as docker_fixtures
from tests.functional import base
from tests.functional import test_network
from tests.functional import test_resize

# What the source's migration sees as dest_host: not one of its names.
DEST_IP = '192.0.2.77'


class TwoHostsMixin(test_resize.ResizeMixin):
    """self.driver is the source; self.dest another host's driver."""

    def setUp(self):
        super().setUp()
        engine = self.useFixture(docker_fixtures.PrivateDockerd())
        self.dest_api = engine.api()
        self.dest_host = 'ndtest-%s' % uuid.uuid4().hex[:10]
        self.dest_leaks = self.useFixture(docker_fixtures.DockerLeakCheck(
            self.dest_host, lambda: list(self.glance.images),
            api=self.dest_api))
        self.dest = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        self.dest._api = self.dest_api
        self.dest._host = self.dest._nodename = self.dest_host

    def migrate(self, instance, power_on=True, network_info=()):
        """The manager's order: migrate_disk_and_power_off on the source,
        then (instance.host now the destination) finish_migration there."""
        migration = objects.Migration(source_compute=self.host,
                                      dest_compute=self.dest_host)
        new_flavor = test_resize.make_flavor(vcpus=2, memory_mb=256)
        network_info = list(network_info)
        disk_info = self.driver.migrate_disk_and_power_off(
            self.context, instance, DEST_IP, new_flavor, network_info)
        # Nothing of it runs here any more; its ports are unplugged.
        self.assertEqual([], [
            c for c in self.leaks.containers()
            if c['Labels'].get(guest.LABEL_INSTANCE) == instance.uuid])
        if network_info:
            self.assertUnplugged(*network_info)
        image_id = migrate.image_of(disk_info)
        record = self.glance.images[image_id]
        self.assertEqual((True, 'private', instance.uuid), (
            record['os_hidden'], record['visibility'],
            record['properties'][migrate.MIGRATION_PROPERTY]))
        instance.old_flavor = instance.flavor
        instance.new_flavor = instance.flavor = new_flavor
        instance.host = self.dest_host
        self.addCleanup(self.dest.destroy, self.context, instance,
                        network_info)
        self.dest.finish_migration(self.context, migration, instance,
                                   disk_info, network_info, None, True, {},
                                   power_on=power_on)
        self.assertNotIn(image_id, self.glance.images)
        return migration

    def dest_exec(self, instance, *cmd) -> str:
        workload = self.dest._guests.get(instance).workload_id
        return docker_fixtures.exec_in(self.dest_api, workload, *cmd).output


class MigrateTest(TwoHostsMixin, base.DriverTestCase):

    def test_migrate_confirm_moves_the_filesystem(self):
        instance = self.spawn()
        self.write(instance, '/marker', 'moved')
        migration = self.migrate(instance)
        self.assertEqual(power_state.RUNNING,
                         self.dest.get_info(instance).state)
        self.assertEqual('moved', self.dest_exec(instance, 'cat',
                                                 '/marker').strip())
        state = self.dest._guests.get(instance).inspect(
            guest.ROLE_WORKLOAD)
        self.assertEqual(256 * 1024 * 1024, state['HostConfig']['Memory'])
        self.driver.confirm_migration(self.context, migration, instance, [])
        self.assertEqual([], self.leaks.leftovers())
        self.assertFalse(self.backup_exists(self.api, instance))
        self.assertEqual([], self.dest_api.images(
            name=resize.RESIZE_REPOSITORY))
        self.assertNotIn(instance.uuid, [
            r['properties'].get(migrate.MIGRATION_PROPERTY)
            for r in self.glance.images.values()])

    def test_migrate_stopped_instance_arrives_stopped(self):
        instance = self.spawn()
        self.write(instance, '/marker', 'still')
        self.driver.power_off(instance, 0)
        migration = self.migrate(instance, power_on=False)
        self.assertEqual(power_state.SHUTDOWN,
                         self.dest.get_info(instance).state)
        self.dest.power_on(self.context, instance, [])
        self.assertEqual('still', self.dest_exec(instance, 'cat',
                                                 '/marker').strip())
        self.driver.confirm_migration(self.context, migration, instance, [])
        self.assertEqual([], self.leaks.leftovers())

    def test_revert_brings_the_source_back(self):
        instance = self.spawn()
        self.write(instance, '/marker', 'old')
        migration = self.migrate(instance)
        self.dest_exec(instance, 'sh', '-c', 'echo new > /marker')
        # revert_resize on the destination, then finish_revert_resize on
        # the source.
        instance.task_state = task_states.RESIZE_REVERTING
        self.dest.destroy(self.context, instance, [], None, True)
        self.assertEqual([], self.dest_leaks.leftovers())
        self.assertEqual([], self.dest_api.images(
            name=resize.RESIZE_REPOSITORY))
        instance.host = self.host
        instance.flavor = instance.old_flavor
        self.driver.finish_revert_migration(self.context, instance, [],
                                            migration)
        instance.task_state = None
        self.assertEqual('old', self.exec_in(instance, 'cat',
                                             '/marker').strip())
        self.assertEqual(128 * 1024 * 1024,
                         self.inspect(instance)['HostConfig']['Memory'])
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(instance).state)

    def test_failed_upload_leaves_the_instance_running_here(self):
        instance = self.spawn()
        self.write(instance, '/marker', 'here')
        before = set(self.glance.images)

        def drop_mid_upload(context, image_id, meta, data=None,
                            purge_props=True):
            data.read(64 * 1024)   # Glance takes a chunk, then fails
            raise IOError('Glance dropped the upload')

        self.useFixture(fixtures.MockPatchObject(
            self.glance, 'update', side_effect=drop_mid_upload))
        raised = self.assertRaises(
            exception.InstanceFaultRollback,
            self.driver.migrate_disk_and_power_off, self.context, instance,
            DEST_IP, test_resize.make_flavor(), [])
        self.assertIn('Glance dropped the upload',
                      str(raised.inner_exception))
        self.assertEqual(before, set(self.glance.images))
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(instance).state)
        self.assertEqual('here', self.exec_in(instance, 'cat',
                                              '/marker').strip())
        self.assertFalse(self.backup_exists(self.api, instance))
        self.assertEqual([], self.dest_leaks.containers())


class NetworkMigrateTest(TwoHostsMixin, test_network.NetworkTestCase):

    def setUp(self):
        super().setUp()
        self.dest._vifs.initialize()
        port = self.ports.network(0)
        self.vif_a, self.vif_b = port(), port()
        self.a = self.spawn_on([self.vif_a])
        self.b = self.spawn_on([self.vif_b])

    def test_ports_follow_the_instance_and_come_back_on_revert(self):
        self.write(self.a, '/marker', 'old')
        migration = self.migrate(self.a, network_info=[self.vif_a])
        links = self.dest_exec(self.a, 'ip', '-o', 'link', 'show', 'eth0')
        self.assertIn(self.vif_a['address'], links)
        self.assertIn(self.ip_of(self.vif_a), self.dest_exec(
            self.a, 'ip', '-o', 'addr', 'show', 'dev', 'eth0'))
        self.dest_exec(self.a, 'ping', '-c', '2', '-w', '10',
                       self.ip_of(self.vif_b))
        self.assertPings(self.b, self.ip_of(self.vif_a))
        # Back: the destination's destroy, then the source's revert.
        self.a.task_state = task_states.RESIZE_REVERTING
        self.dest.destroy(self.context, self.a, [self.vif_a], None, True)
        self.assertUnplugged(self.vif_a)
        self.a.host = self.host
        self.a.flavor = self.a.old_flavor
        self.driver.finish_revert_migration(self.context, self.a,
                                            [self.vif_a], migration)
        self.a.task_state = None
        self.assertEqual(self.vif_a['address'],
                         self.links(self.a)['eth0']['mac'])
        self.assertPings(self.a, self.ip_of(self.vif_b))
        self.assertEqual('old', self.exec_in(self.a, 'cat',
                                             '/marker').strip())
