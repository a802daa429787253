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

"""Same-host resize and the root disk, on the real engine.

The shared engine (overlay2 on ext4) cannot limit a container's disk: the
resize there updates the limits in place. The root-disk tests run a private
dockerd whose data root is a btrfs loop file, where ``storage_opt size`` is
a real btrfs quota.
"""

import subprocess

from nova.compute import power_state
from nova.compute import task_states
from nova import exception
from nova import objects
from oslo_utils import units

from novadocker import conf
from novadocker.virt.docker import guest
from novadocker.virt.docker import rescue
from novadocker.virt.docker import resize
from tests.fixtures import docker as docker_fixtures
from tests.fixtures import objects as obj_fixtures
from tests.functional import base

CONF = conf.CONF


def make_flavor(flavor_id=2, vcpus=2, memory_mb=256,
                **kwargs) -> objects.Flavor:
    """The flavor a resize goes to (not the instance's flavor 1)."""
    return obj_fixtures.flavor(flavor_id, vcpus, memory_mb, **kwargs)


class ResizeMixin:
    """Nova's calls of a same-host resize, in the manager's order."""

    def resize(self, instance, new_flavor, power_on=True, network_info=()):
        network_info = list(network_info)
        self.driver.migrate_disk_and_power_off(
            self.context, instance, CONF.my_ip, new_flavor, network_info)
        instance.old_flavor = instance.flavor
        instance.new_flavor = new_flavor
        instance.flavor = new_flavor
        self.driver.finish_migration(
            self.context, None, instance, '[]', network_info, None, True,
            {}, power_on=power_on)

    def revert(self, instance, network_info=()):
        """revert_resize destroys first, then finish_revert_migration."""
        network_info = list(network_info)
        instance.task_state = task_states.RESIZE_REVERTING
        self.driver.destroy(self.context, instance, network_info, None,
                            False)
        instance.flavor = instance.old_flavor
        self.driver.finish_revert_migration(self.context, instance,
                                            network_info, None)
        instance.task_state = None

    def backup_exists(self, api, instance) -> bool:
        return bool(api.images(name=resize.backup_tag(instance)))

    def write(self, instance, path, text='x'):
        self.exec_in(instance, 'sh', '-c', 'echo %s > %s' % (text, path))


class ResizeTest(ResizeMixin, base.DriverTestCase):

    def test_resize_confirm_keeps_the_filesystem_and_applies_the_flavor(self):
        instance = self.spawn()
        before = self.inspect(instance)
        self.write(instance, '/marker', 'kept')
        self.resize(instance, make_flavor(vcpus=2, memory_mb=256, swap=64))
        after = self.inspect(instance)
        # The same container: updated in place, filesystem untouched.
        self.assertEqual(before['Id'], after['Id'])
        self.assertTrue(after['State']['Running'])
        self.assertEqual(256 * units.Mi, after['HostConfig']['Memory'])
        self.assertEqual((256 + 64) * units.Mi,
                         after['HostConfig']['MemorySwap'])
        self.assertEqual(2 * 1024, after['HostConfig']['CpuShares'])
        self.assertEqual(2 * CONF.docker.cpu_period_us,
                         after['HostConfig']['CpuQuota'])
        self.assertEqual(CONF.docker.pids_limit,
                         after['HostConfig']['PidsLimit'])
        self.assertEqual('kept', self.exec_in(instance, 'cat',
                                              '/marker').strip())
        self.assertTrue(self.backup_exists(self.api, instance))
        self.driver.confirm_migration(self.context, None, instance, [])
        self.assertFalse(self.backup_exists(self.api, instance))
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(instance).state)

    def test_resize_revert_restores_old_limits_and_old_filesystem(self):
        instance = self.spawn()
        self.write(instance, '/marker', 'old')
        self.resize(instance, make_flavor(vcpus=2, memory_mb=256))
        self.write(instance, '/marker', 'new')
        self.write(instance, '/only-after-resize')
        self.revert(instance)
        state = self.inspect(instance)
        self.assertTrue(state['State']['Running'])
        self.assertEqual(128 * units.Mi, state['HostConfig']['Memory'])
        self.assertEqual(1 * CONF.docker.cpu_period_us,
                         state['HostConfig']['CpuQuota'])
        # As libvirt brings the old disk back: the pre-resize filesystem.
        self.assertEqual('old', self.exec_in(instance, 'cat',
                                             '/marker').strip())
        self.assertIn('missing', self.exec_in(
            instance, 'sh', '-c', 'test -e /only-after-resize && echo '
            'present || echo missing'))
        sandbox = self.inspect(instance, guest.ROLE_SANDBOX)
        self.assertEqual('container:%s' % sandbox['Id'],
                         state['HostConfig']['NetworkMode'])
        # Kept while the reverted workload is made from it; the instance's
        # destroy removes it.
        self.assertTrue(self.backup_exists(self.api, instance))
        self.driver.destroy(self.context, instance, [])
        self.assertFalse(self.backup_exists(self.api, instance))

    def test_resize_of_a_stopped_instance_stays_stopped(self):
        instance = self.spawn()
        self.driver.power_off(instance, 0)
        self.resize(instance, make_flavor(memory_mb=192), power_on=False)
        state = self.inspect(instance)
        self.assertFalse(state['State']['Running'])
        self.assertEqual(192 * units.Mi, state['HostConfig']['Memory'])
        self.driver.confirm_migration(self.context, None, instance, [])
        self.assertFalse(self.backup_exists(self.api, instance))

    def assertRolledBack(self, instance, raised, inner):
        self.assertIsInstance(raised.inner_exception, inner)
        self.assertTrue(self.inspect(instance)['State']['Running'])
        self.assertEqual(128 * units.Mi,
                         self.inspect(instance)['HostConfig']['Memory'])
        self.assertFalse(self.backup_exists(self.api, instance))

    def test_what_no_host_can_take_is_refused_before_a_migration(self):
        # Another host's capacity is the scheduler's; an ephemeral disk
        # fits nowhere (tests/functional/test_migrate.py moves the rest).
        instance = self.spawn()
        images_before = set(self.glance.images)
        raised = self.assertRaises(
            exception.InstanceFaultRollback,
            self.driver.migrate_disk_and_power_off, self.context, instance,
            '192.0.2.77', make_flavor(ephemeral_gb=1), [])
        self.assertRolledBack(instance, raised, exception.ResizeError)
        self.assertIn('ephemeral disk', str(raised.inner_exception))
        self.assertEqual(images_before, set(self.glance.images))

    def test_resize_to_a_flavor_the_host_cannot_hold_fails_clearly(self):
        instance = self.spawn()
        raised = self.assertRaises(
            exception.InstanceFaultRollback,
            self.driver.migrate_disk_and_power_off, self.context, instance,
            CONF.my_ip, make_flavor(memory_mb=64 * 1024 * 1024), [])
        self.assertRolledBack(instance, raised, exception.ResizeError)
        self.assertIn('does not fit this host',
                      str(raised.inner_exception))

    def test_root_gb_not_enforced_on_this_engine(self):
        # overlay2 on ext4: the probe says no, and nothing asks for it.
        self.assertFalse(self.driver._root_quota)
        instance = self.spawn()
        self.assertIsNone(self.inspect(instance)['HostConfig'].get(
            'StorageOpt'))


class BtrfsDataRoot(docker_fixtures.LoopFilesystem):
    """A sparse btrfs loop file for a private dockerd's data root, with
    quotas enabled (what ``storage_opt size`` is made of)."""

    def __init__(self, size_mb: int = 4096):
        super().__init__(size_mb, fstype='btrfs')

    def _setUp(self):
        super()._setUp()
        subprocess.run(['btrfs', 'quota', 'enable', self.path], check=True)


class RootDiskTest(ResizeMixin, base.DriverTestCase):
    """storage_opt size on a private btrfs engine: a real quota."""

    def private_dockerd(self):
        for binary in ('mkfs.btrfs', 'btrfs'):
            try:
                docker_fixtures.which(binary)
            except RuntimeError:
                docker_fixtures.require_functional_missing(
                    self, '%s (btrfs-progs) is needed' % binary)
        root = self.useFixture(BtrfsDataRoot())
        return self.useFixture(docker_fixtures.PrivateDockerd(
            '--storage-driver', 'btrfs', data_root=root.path))

    def setUp(self):
        super().setUp()
        self.private = self.api
        self.addCleanup(self.assertNothingLeft)

    def assertNothingLeft(self):
        left = self.private.containers(all=True, filters={
            'label': '%s=%s' % (guest.LABEL_HOST, self.host)})
        self.assertEqual([], left)
        self.assertEqual([], self.private.images(
            name=resize.RESIZE_REPOSITORY))

    def fill(self, instance, megabytes: int) -> str:
        """dd that many MB into the root; dd's output (empty if it fit)."""
        return self.exec_in(
            instance, 'sh', '-c',
            'dd if=/dev/zero of=/fill bs=1M count=%d 2>&1 >/dev/null '
            '| grep -i "space\\|quota"; rm -f /fill; sync; true' % megabytes)

    def test_root_disk_is_the_flavor_root_gb_and_resize_grows_it(self):
        self.assertTrue(self.driver._root_quota)
        instance = self.spawn()
        self.assertEqual({'size': '1G'},
                         self.inspect(instance)['HostConfig']['StorageOpt'])
        self.write(instance, '/marker', 'kept')
        # Past root_gb: the kernel refuses (btrfs qgroups: EDQUOT).
        self.assertIn('Disk quota exceeded', self.fill(instance, 1200))
        self.resize(instance, make_flavor(root_gb=2))
        state = self.inspect(instance)
        self.assertEqual({'size': '2G'}, state['HostConfig']['StorageOpt'])
        self.assertEqual(256 * units.Mi, state['HostConfig']['Memory'])
        self.assertEqual('kept', self.exec_in(instance, 'cat',
                                              '/marker').strip())
        self.assertEqual('', self.fill(instance, 1200))
        self.driver.confirm_migration(self.context, None, instance, [])

    def test_disk_inventory_is_the_data_root_filesystem(self):
        # The 4 GiB btrfs data root, not the host's own disk.
        local_gb = self.driver.get_available_resource(self.host)['local_gb']
        self.assertIn(local_gb, (3, 4))

    def test_ephemeral_gb_refused_leaving_nothing(self):
        meta = self.add_image()
        instance = self.make_instance(meta)
        instance.flavor.ephemeral_gb = 1
        self.leaks.forbid_images()
        exc = self.assertRaises(guest.EphemeralDiskUnsupported,
                                self.driver.spawn, self.context, instance,
                                meta, [], None, {})
        self.assertIn('ephemeral disk of 1 GB', str(exc))
        self.assertEqual([], self.leaks.containers())
        self.assertEqual([], self.leaks.loaded_images())

    def test_resize_to_an_ephemeral_flavor_leaves_the_instance(self):
        instance = self.spawn()
        self.write(instance, '/marker', 'kept')
        raised = self.assertRaises(
            exception.InstanceFaultRollback,
            self.driver.migrate_disk_and_power_off, self.context, instance,
            self.host, make_flavor(root_gb=1, ephemeral_gb=1), [])
        self.assertIn('ephemeral', str(raised.inner_exception))
        state = self.inspect(instance)
        self.assertTrue(state['State']['Running'])
        self.assertEqual({'size': '1G'}, state['HostConfig']['StorageOpt'])
        self.assertEqual('kept', self.exec_in(instance, 'cat',
                                              '/marker').strip())

    def test_revert_brings_back_the_old_root_disk(self):
        instance = self.spawn()
        self.write(instance, '/marker', 'old')
        self.resize(instance, make_flavor(root_gb=2))
        self.write(instance, '/marker', 'new')
        self.revert(instance)
        state = self.inspect(instance)
        self.assertEqual({'size': '1G'}, state['HostConfig']['StorageOpt'])
        self.assertEqual(128 * units.Mi, state['HostConfig']['Memory'])
        self.assertEqual('old', self.exec_in(instance, 'cat',
                                             '/marker').strip())

    def test_resize_below_the_data_fails_and_leaves_the_instance(self):
        meta = self.add_image()
        instance = self.make_instance(meta)
        instance.flavor.root_gb = 2
        self.driver.spawn(self.context, instance, meta, [], None, {})
        self.addCleanup(self.driver.destroy, self.context, instance, [])
        self.exec_in(instance, 'sh', '-c',
                     'dd if=/dev/zero of=/data bs=1M count=1100 2>/dev/null')
        raised = self.assertRaises(
            exception.InstanceFaultRollback,
            self.driver.migrate_disk_and_power_off, self.context, instance,
            CONF.my_ip, make_flavor(root_gb=1), [])
        self.assertIsInstance(raised.inner_exception, exception.ResizeError)
        self.assertIn('smaller than the instance\'s data',
                      str(raised.inner_exception))
        state = self.inspect(instance)
        self.assertTrue(state['State']['Running'])
        self.assertEqual({'size': '2G'}, state['HostConfig']['StorageOpt'])
        self.assertEqual([], self.private.images(
            name=resize.backup_tag(instance)))

    def inspect(self, instance, role=guest.ROLE_WORKLOAD) -> dict:
        return self.driver._guests.get(instance, role).inspect(role)

    def test_rescue_binds_the_btrfs_subvolume(self):
        # Rescue on the quota-enforcing storage driver too.
        meta = self.add_image()
        instance = self.spawn(meta)
        self.write(instance, '/etc/state', 'broken')
        self.driver.rescue(self.context, instance, [], meta, 'pw', None,
                           None)
        found = self.inspect(instance, rescue.ROLE_RESCUE)
        self.assertTrue(found['State']['Running'])
        self.assertEqual('bind', found['Mounts'][0]['Type'])
        self.assertEqual('broken', self.exec_in(
            instance, 'sh', '-c', 'cat /rescue/etc/state && '
            'echo fixed > /rescue/etc/state',
            role=rescue.ROLE_RESCUE).strip())
        self.driver.unrescue(self.context, instance)
        self.assertEqual('fixed', self.exec_in(instance, 'cat',
                                               '/etc/state').strip())
