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

"""Rescue and unrescue on the real engine."""

import docker.errors
from nova.compute import power_state
from nova import exception

from novadocker.virt.docker import guest
from novadocker.virt.docker import rescue
from tests.functional import base


class RescueTest(base.DriverTestCase):

    def rescue_container(self, instance) -> dict:
        return self.driver._guests.get(
            instance, rescue.ROLE_RESCUE).inspect(rescue.ROLE_RESCUE)

    @staticmethod
    def rescue_volume(container: dict) -> str:
        """The volume holding the instance's filesystem at /rescue (the
        container also has LXCFS and config drive binds)."""
        return [m['Name'] for m in container['Mounts']
                if m['Destination'] == rescue.MOUNT_POINT][0]

    def exec_rescue(self, instance, *cmd) -> str:
        return self.exec_in(instance, *cmd, role=rescue.ROLE_RESCUE)

    def rescue(self, instance, image_meta):
        self.driver.rescue(self.context, instance, [], image_meta, 'pw',
                           None, None)

    def assertVolumeGone(self, name):
        self.assertRaises(docker.errors.NotFound, self.api.inspect_volume,
                          name)

    def test_rescue_mounts_the_instance_and_unrescue_keeps_the_fix(self):
        meta = self.add_image()
        instance = self.spawn(meta)
        workload_id = self.inspect(instance)['Id']
        self.exec_in(instance, 'sh', '-c', 'echo broken > /etc/state')
        self.rescue(instance, meta)
        found = self.rescue_container(instance)
        self.assertTrue(found['State']['Running'])
        self.assertEqual('nova-%s-rescue' % instance.uuid,
                         found['Name'].lstrip('/'))
        # The same network namespace: the instance's ports and addresses.
        sandbox = self.inspect(instance, guest.ROLE_SANDBOX)
        self.assertEqual('container:%s' % sandbox['Id'],
                         found['HostConfig']['NetworkMode'])
        self.assertEqual(instance.flavor.memory_mb * 1024 * 1024,
                         found['HostConfig']['Memory'])
        # The original is stopped, untouched, and still the workload.
        workload = self.inspect(instance)
        self.assertEqual(workload_id, workload['Id'])
        self.assertFalse(workload['State']['Running'])
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(instance).state)
        self.assertEqual('broken', self.exec_rescue(
            instance, 'cat', '/rescue/etc/state').strip())
        self.exec_rescue(instance, 'sh', '-c',
                         'echo fixed > /rescue/etc/state')
        volume = self.rescue_volume(found)
        self.driver.unrescue(self.context, instance)
        self.assertIsNone(self.driver._guests.find(instance,
                                                   rescue.ROLE_RESCUE))
        self.assertVolumeGone(volume)
        workload = self.inspect(instance)
        self.assertEqual(workload_id, workload['Id'])
        self.assertTrue(workload['State']['Running'])
        self.assertEqual('fixed', self.exec_in(instance, 'cat',
                                               '/etc/state').strip())

    def test_rescue_with_another_image(self):
        instance = self.spawn()
        other = self.add_image()
        self.rescue(instance, other)
        self.assertEqual(
            self.api.inspect_image('nova-docker/glance:%s' % other.id)['Id'],
            self.rescue_container(instance)['Image'])
        self.driver.unrescue(self.context, instance)
        self.assertTrue(self.inspect(instance)['State']['Running'])

    def test_destroy_while_rescued_leaves_nothing(self):
        meta = self.add_image()
        instance = self.make_instance(meta)
        self.driver.spawn(self.context, instance, meta, [], None, {})
        self.rescue(instance, meta)
        volume = self.rescue_volume(self.rescue_container(instance))
        self.driver.destroy(self.context, instance, [])
        self.assertEqual([], self.leaks.leftovers())
        self.assertVolumeGone(volume)

    def test_power_off_while_rescued_ends_the_rescue(self):
        meta = self.add_image()
        instance = self.spawn(meta)
        self.rescue(instance, meta)
        self.driver.power_off(instance, 0)
        self.assertIsNone(self.driver._guests.find(instance,
                                                   rescue.ROLE_RESCUE))
        self.assertEqual(power_state.SHUTDOWN,
                         self.driver.get_info(instance).state)
        self.driver.power_on(self.context, instance, [])
        self.assertTrue(self.inspect(instance)['State']['Running'])

    def test_failed_rescue_restarts_the_instance_and_leaves_no_rescue(self):
        instance = self.spawn()
        bad = self.add_image(properties={'os_command_line': '/no/such'})
        self.assertRaises(exception.NovaException, self.rescue, instance,
                          bad)
        self.assertIsNone(self.driver._guests.find(instance,
                                                   rescue.ROLE_RESCUE))
        self.assertTrue(self.inspect(instance)['State']['Running'])
