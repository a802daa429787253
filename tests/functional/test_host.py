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

"""What the host reports to Nova, checked against the real engine and the
real filesystem, with Nova's own ProviderTree."""

import os
import re
import uuid

import fixtures
from nova.compute import provider_tree
from nova import exception
from nova.virt import driver as nova_driver
from nova.virt import fake as fake_virt
from nova.virt import node as nova_node
import os_resource_classes as orc
import os_traits
from oslo_config import cfg

from novadocker import conf
from novadocker.virt.docker import driver as docker_driver
from tests.functional import base

CONF = conf.CONF
GIB = 1024 ** 3


class HostResourcesTest(base.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.info = self.api.info()

    def test_get_available_resource(self):
        res = self.driver.get_available_resource(self.host)
        # The keys the resource tracker insists on.
        for key in ('vcpus', 'memory_mb', 'local_gb', 'cpu_info',
                    'vcpus_used', 'memory_mb_used', 'local_gb_used',
                    'numa_topology', 'hypervisor_hostname',
                    'hypervisor_type', 'hypervisor_version',
                    'supported_instances', 'disk_available_least'):
            self.assertIn(key, res)
        self.assertEqual(self.info['NCPU'], res['vcpus'])
        self.assertEqual(self.info['MemTotal'] // (1024 * 1024),
                         res['memory_mb'])
        stat = os.statvfs(self.info['DockerRootDir'])
        self.assertEqual(stat.f_blocks * stat.f_frsize // GIB,
                         res['local_gb'])
        self.assertGreater(res['local_gb'], 0)
        self.assertLessEqual(res['local_gb_used'], res['local_gb'])
        self.assertEqual('docker', res['hypervisor_type'])
        major, minor, patch = (int(p) for p in re.findall(
            r'\d+', self.api.version()['Version'])[:3])
        self.assertEqual(major * 1000000 + minor * 1000 + patch,
                         res['hypervisor_version'])
        self.assertEqual(self.host, res['hypervisor_hostname'])
        self.assertEqual('exe', res['supported_instances'][0][2])
        self.assertEqual('docker', res['supported_instances'][0][1])

    def test_nodes_and_stable_node_identity(self):
        self.assertEqual([self.host], self.driver.get_available_nodes())
        self.assertTrue(self.driver.node_is_available(self.host))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.node.LOCAL_NODE_UUID', None))
        if 'config_file' not in CONF:
            # Registered by nova-compute's command line parsing.
            self.conf.register_opt(cfg.ListOpt('config_file', default=[]))
        nodes = self.driver.get_nodenames_by_uuid()
        (node_uuid, name), = nodes.items()
        self.assertEqual(self.host, name)
        with open(os.path.join(CONF.state_path, 'compute_id')) as f:
            self.assertEqual(node_uuid, f.read().strip())
        # A nova-compute restart reads the same identity back.
        nova_node.LOCAL_NODE_UUID = None
        restarted = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        restarted.init_host(self.host)
        self.addCleanup(restarted.cleanup_host, self.host)
        self.assertEqual({node_uuid: self.host},
                         restarted.get_nodenames_by_uuid())

    def _tree(self):
        tree = provider_tree.ProviderTree()
        tree.new_root(self.host, str(uuid.uuid4()))
        return tree

    def test_update_provider_tree_defaults(self):
        tree = self._tree()
        self.driver.update_provider_tree(tree, self.host)
        inventory = tree.data(self.host).inventory
        self.assertEqual({orc.VCPU, orc.MEMORY_MB, orc.DISK_GB},
                         set(inventory))
        vcpu, memory, disk = (inventory[rc] for rc in
                              (orc.VCPU, orc.MEMORY_MB, orc.DISK_GB))
        self.assertEqual(self.info['NCPU'], vcpu['total'])
        self.assertEqual(self.info['MemTotal'] // (1024 * 1024),
                         memory['total'])
        stat = os.statvfs(self.info['DockerRootDir'])
        self.assertEqual(stat.f_blocks * stat.f_frsize // GIB, disk['total'])
        # Nova's initial ratios for a new inventory, reserved from config.
        self.assertEqual(CONF.initial_cpu_allocation_ratio,
                         vcpu['allocation_ratio'])
        self.assertEqual(CONF.initial_ram_allocation_ratio,
                         memory['allocation_ratio'])
        self.assertEqual(CONF.initial_disk_allocation_ratio,
                         disk['allocation_ratio'])
        self.assertEqual(CONF.reserved_host_memory_mb, memory['reserved'])
        self.assertEqual(CONF.reserved_host_cpus, vcpu['reserved'])
        for inv in (vcpu, memory, disk):
            self.assertEqual(inv['total'], inv['max_unit'])
            self.assertEqual(1, inv['min_unit'])

    def test_update_provider_tree_from_config(self):
        self.conf.config(cpu_allocation_ratio=2.5, ram_allocation_ratio=1.5,
                         disk_allocation_ratio=3.0, reserved_host_cpus=1,
                         reserved_host_memory_mb=333,
                         reserved_host_disk_mb=1500)
        tree = self._tree()
        self.driver.update_provider_tree(tree, self.host)
        inventory = tree.data(self.host).inventory
        self.assertEqual(2.5, inventory[orc.VCPU]['allocation_ratio'])
        self.assertEqual(1.5, inventory[orc.MEMORY_MB]['allocation_ratio'])
        self.assertEqual(3.0, inventory[orc.DISK_GB]['allocation_ratio'])
        self.assertEqual(1, inventory[orc.VCPU]['reserved'])
        self.assertEqual(333, inventory[orc.MEMORY_MB]['reserved'])
        self.assertEqual(2, inventory[orc.DISK_GB]['reserved'])   # ceil

    def test_existing_ratio_kept_when_not_configured(self):
        tree = self._tree()
        self.driver.update_provider_tree(tree, self.host)
        inventory = dict(tree.data(self.host).inventory)
        inventory[orc.VCPU] = dict(inventory[orc.VCPU], allocation_ratio=8.0)
        tree.update_inventory(self.host, inventory)
        self.driver.update_provider_tree(tree, self.host)
        self.assertEqual(8.0, tree.data(self.host).inventory[orc.VCPU][
            'allocation_ratio'])

    def test_capabilities_as_traits_are_truthful(self):
        traits = self.driver.capabilities_as_traits()
        # Every capability is present, so the resource tracker also
        # removes traits that are false.
        self.assertEqual(set(nova_driver.CAPABILITY_TRAITS_MAP.values()),
                         set(traits))
        self.assertTrue(traits[os_traits.COMPUTE_IMAGE_TYPE_RAW])
        base_cls = nova_driver.ComputeDriver
        cls = type(self.driver)
        # A trait may be true only where the driver implements the feature.
        truthful = {os_traits.COMPUTE_IMAGE_TYPE_RAW}
        if cls.attach_interface is not base_cls.attach_interface:
            truthful.add(os_traits.COMPUTE_NET_ATTACH_INTERFACE)
        true_traits = {t for t, value in traits.items() if value}
        self.assertLessEqual(true_traits, truthful)
        for image_type in ('QCOW2', 'ISO', 'VMDK', 'AMI', 'VHD'):
            self.assertFalse(traits['COMPUTE_IMAGE_TYPE_' + image_type])
        self.assertFalse(traits[os_traits.COMPUTE_VOLUME_ATTACH_WITH_TAG])
        self.assertFalse(traits[os_traits.COMPUTE_TRUSTED_CERTS])

    def test_host_ip_and_uptime(self):
        self.assertEqual(CONF.my_ip, self.driver.get_host_ip_addr())
        self.assertRegex(self.driver.get_host_uptime(), r'up \d+ seconds')


class InitHostTest(base.DriverTestCase):

    def test_unreachable_engine(self):
        missing = os.path.join(CONF.state_path, 'no-docker.sock')
        self.conf.config(api_url='unix://' + missing, group='docker')
        driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        exc = self.assertRaises(exception.NovaException, driver.init_host,
                                self.host)
        message = str(exc)
        self.assertIn('nova-docker cannot start', message)
        self.assertIn(missing, message)
        self.assertIn('Is dockerd running', message)

    def test_builds_missing_sandbox_image(self):
        name = 'nova-docker-test/sandbox-%s:1' % uuid.uuid4().hex[:8]
        self.conf.config(sandbox_image=name, group='docker')
        self.addCleanup(self.api.remove_image, name, force=True)
        driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        driver.init_host(self.host)
        self.addCleanup(driver.cleanup_host, self.host)
        config = self.api.inspect_image(name)['Config']
        self.assertEqual(['/bin/busybox'], config['Entrypoint'])
        # And a guest can boot with it.
        meta = self.add_image()
        instance = self.make_instance(meta)
        driver.spawn(self.context, instance, meta, [], None, {},
                     network_info=[])
        self.addCleanup(driver.destroy, self.context, instance, [])
        self.assertTrue(driver._guests.get(
            instance, 'sandbox').inspect('sandbox')['State']['Running'])
