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

"""Resize and rescue decisions, against specced fakes."""

from unittest import mock

import docker
import docker.errors
import fixtures
from nova.compute import task_states
from nova import exception
from nova.virt import fake as fake_virt
from oslo_config import fixture as config_fixture
from oslo_utils import units
import testtools

from novadocker import conf
from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import guest
from novadocker.virt.docker import hostinfo
from novadocker.virt.docker import rescue
from novadocker.virt.docker import resize
from tests.fixtures import fake_docker
from tests.fixtures import objects as obj_fixtures

CONF = conf.CONF


def _flavor(**kwargs):
    return obj_fixtures.flavor(flavor_id=2, name='m1.new', **kwargs)


HOST = hostinfo.HostResources(
    vcpus=4, memory_mb=8192, memory_mb_used=0, disk_gb=100, disk_gb_used=0,
    arch='x86_64', docker_version='20.10.24', docker_root='/var/lib/docker')


class CheckTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.api = mock.create_autospec(docker.APIClient, instance=True)
        self.api.containers.return_value = [{'Id': 'c1',
                                             'SizeRootFs': 10 * units.Mi}]
        self.instance = obj_fixtures.instance()

    def check(self, flavor):
        return self.assertRaises(
            exception.InstanceFaultRollback, resize.check_new_flavor,
            self.api, self.instance, flavor, HOST, 'c1').inner_exception

    def test_destination_names(self):
        names = ('10.0.0.1', None, 'host1')
        for dest in ('10.0.0.1', 'host1'):
            self.assertTrue(resize.is_local_destination(dest, names))
        for dest in ('10.0.0.9', None, ''):
            self.assertFalse(resize.is_local_destination(dest, names))

    def test_another_host_is_not_checked_against_this_one(self):
        resize.check_new_flavor(self.api, self.instance,
                                _flavor(vcpus=64, memory_mb=10 ** 6,
                                        root_gb=1000), None, 'c1')

    def test_another_host_still_refuses_a_disk_smaller_than_the_data(self):
        self.api.containers.return_value = [{'Id': 'c1',
                                             'SizeRootFs': 3 * units.Gi}]
        raised = self.assertRaises(
            exception.InstanceFaultRollback, resize.check_new_flavor,
            self.api, self.instance, _flavor(root_gb=2), None, 'c1')
        self.assertIn('smaller than the instance', str(
            raised.inner_exception))

    def test_a_fitting_flavor_passes(self):
        resize.check_new_flavor(self.api, self.instance,
                                _flavor(vcpus=4, memory_mb=8192), HOST, 'c1')
        self.api.containers.assert_called_once_with(
            all=True, size=True, filters={'id': 'c1'})

    def test_more_memory_or_cpus_than_the_host(self):
        for flavor in (_flavor(memory_mb=8193), _flavor(vcpus=5)):
            inner = self.check(flavor)
            self.assertIsInstance(inner, exception.ResizeError)
            self.assertIn('does not fit this host', str(inner))

    def test_root_disk_larger_than_the_host(self):
        self.assertIn('larger than this host', str(
            self.check(_flavor(root_gb=101))))

    def test_root_disk_smaller_than_the_data(self):
        self.api.containers.return_value = [{'Id': 'c1',
                                             'SizeRootFs': 3 * units.Gi}]
        self.assertIn('smaller than the instance\'s data (3072 MB)', str(
            self.check(_flavor(root_gb=2))))

    def test_root_gb_zero_is_unlimited(self):
        self.api.containers.return_value = [{'Id': 'c1',
                                             'SizeRootFs': 300 * units.Gi}]
        resize.check_new_flavor(self.api, self.instance, _flavor(root_gb=0),
                                HOST, 'c1')

    def test_ephemeral_disk_refused_before_anything_is_read(self):
        inner = self.check(_flavor(root_gb=1, ephemeral_gb=1))
        self.assertIsInstance(inner, exception.ResizeError)
        self.assertIn('ephemeral disk of 1 GB', str(inner))
        self.api.containers.assert_not_called()

    def test_probe_says_no_when_the_engine_refuses(self):
        self.api.create_host_config.return_value = {}
        self.api.create_container.side_effect = docker.errors.APIError(
            'bad', response=mock.Mock(status_code=500),
            explanation='--storage-opt is supported only for overlay over '
                        'xfs with \'pquota\' mount option')
        self.useFixture(fixtures.FakeLogger())
        self.assertFalse(resize.probe_root_quota(self.api))
        self.api.remove_container.assert_not_called()

    def test_probe_removes_its_container(self):
        self.api.create_host_config.return_value = {}
        self.api.create_container.return_value = {'Id': 'probe'}
        self.assertTrue(resize.probe_root_quota(self.api))
        self.api.remove_container.assert_called_once_with(
            'probe', force=True, v=True)

    def test_storage_opt_only_with_quota(self):
        engine = fake_docker.FakeEngine()
        self.instance.flavor.root_gb = 3
        for quota, expected in ((False, None), (True, {'size': '3G'})):
            guests = guest.Guests(engine.api, 'h', root_quota=quota)
            config = guests.workload_host_config(self.instance, 's1')
            self.assertEqual(expected, config.get('StorageOpt'))

    def test_swap_adds_to_memswap(self):
        engine = fake_docker.FakeEngine()
        self.instance.flavor.swap = 64
        config = guest.Guests(engine.api, 'h').workload_host_config(
            self.instance, 's1')
        self.assertEqual((256 + 64) * units.Mi, config['MemorySwap'])


class DriverResizeTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(config_fixture.Config(CONF)).config(host='unit-host')
        self.useFixture(fixtures.FakeLogger())
        self.engine = fake_docker.FakeEngine()
        self.driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        self.driver._api = self.engine.api
        self.driver._host = 'unit-host'
        self.instance = obj_fixtures.instance()

    def test_destroy_keeps_the_backup_for_a_revert(self):
        self.engine.images[resize.backup_tag(self.instance)] = 'sha256:b'
        self.instance.task_state = task_states.RESIZE_REVERTING
        self.driver.destroy(None, self.instance, [])
        self.assertIn(resize.backup_tag(self.instance), self.engine.images)
        self.instance.task_state = task_states.DELETING
        self.driver.destroy(None, self.instance, [])
        self.assertNotIn(resize.backup_tag(self.instance),
                         self.engine.images)

    def test_failed_commit_restarts_the_workload_and_rolls_back(self):
        guests = mock.create_autospec(guest.Guests, instance=True)
        found = mock.create_autospec(guest.Guest, instance=True)
        found.workload_id = 'w1'
        found.power_state = 1                 # RUNNING
        found.has.return_value = False        # no rescue container
        guests.get.return_value = guests.lookup.return_value = found
        self.useFixture(fixtures.MockPatchObject(
            docker_driver.DockerDriver, '_guests',
            new_callable=mock.PropertyMock, return_value=guests))
        self.useFixture(fixtures.MockPatch(
            'novadocker.virt.docker.hostinfo.read_host', return_value=HOST))
        self.engine.api.containers.side_effect = None
        self.engine.api.containers.return_value = [{'Id': 'w1',
                                                    'SizeRootFs': 1}]
        self.engine.api.commit.side_effect = docker.errors.APIError(
            'disk full', response=mock.Mock(status_code=500),
            explanation='no space left on device')
        start = self.useFixture(fixtures.MockPatchObject(
            self.driver, '_start_workload')).mock
        raised = self.assertRaises(
            exception.InstanceFaultRollback,
            self.driver.migrate_disk_and_power_off, None, self.instance,
            CONF.my_ip, _flavor(), [])
        self.assertIn('no space left', str(raised.inner_exception))
        found.stop.assert_called_once_with(0)
        start.assert_called_once_with(found)


class RescueUnitTest(testtools.TestCase):

    def test_rescue_needs_overlay2_or_btrfs(self):
        guests = mock.create_autospec(guest.Guests, instance=True)
        found = mock.create_autospec(guest.Guest, instance=True)
        found.instance = obj_fixtures.instance()
        found.inspect.return_value = {'GraphDriver': {'Name': 'zfs',
                                                      'Data': None}}
        api = mock.create_autospec(docker.APIClient, instance=True)
        raised = self.assertRaises(
            exception.InstanceNotRescuable,
            rescue.Rescuer(api, guests)._root_mount, found)
        self.assertIn('zfs', str(raised))

    def test_overlay_mount_uses_the_workload_layers(self):
        guests = mock.create_autospec(guest.Guests, instance=True)
        found = mock.create_autospec(guest.Guest, instance=True)
        found.instance = obj_fixtures.instance()
        found.inspect.return_value = {'GraphDriver': {
            'Name': 'overlay2', 'Data': {'LowerDir': '/l1:/l2',
                                         'UpperDir': '/u', 'WorkDir': '/w',
                                         'MergedDir': '/m'}}}
        api = mock.create_autospec(docker.APIClient, instance=True)
        mount = rescue.Rescuer(api, guests)._root_mount(found)
        self.assertEqual(rescue.MOUNT_POINT, mount['Target'])
        self.assertEqual(
            {'type': 'overlay', 'device': 'overlay',
             'o': 'lowerdir=/l1:/l2,upperdir=/u,workdir=/w'},
            mount['VolumeOptions']['DriverConfig']['Options'])
