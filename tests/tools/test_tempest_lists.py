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

"""tools/tempest: the selection files and the driver flags tempest.conf
states stay well-formed and truthful (the Tempest run itself is in CI)."""

import importlib.util
import os
import re
from unittest import mock

import testtools

from novadocker.virt.docker import driver

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
TEMPEST = os.path.join(TOP, 'tools', 'tempest')

# Tests the issue says must keep running: suspend/resume and snapshots.
MUST_RUN = (
    'tempest.api.compute.servers.test_server_actions.ServerActionsTestJSON.'
    'test_suspend_resume_server',
    'tempest.api.compute.servers.test_server_actions.ServerActionsTestJSON.'
    'test_pause_unpause_server',
    'tempest.api.compute.images.test_images.ImagesTestJSON.'
    'test_create_image_from_suspended_server',
    'tempest.api.compute.images.test_images.ImagesTestJSON.'
    'test_create_server_from_snapshot',
    'tempest.api.compute.servers.test_server_actions.ServerActionsTestOtherB.'
    'test_shelve_unshelve_server',
    'tempest.scenario.test_server_advanced_ops.TestServerAdvancedOps.'
    'test_server_sequence_suspend_resume',
)
# Scenario modules that log in over SSH: back in the selection since the
# all-in-one has an image with an SSH server (issue 11, item 5).
SSH_SCENARIOS = ('test_network_basic_ops', 'test_security_groups_basic_ops',
                 'test_network_v6', 'test_network_advanced_server_ops',
                 'test_snapshot_pattern', 'test_shelve_instance')
# nova-docker's historic exclusion regex had eight alternatives.
HISTORIC = 'boto|volume|resize|suspend|rescue|cinder|migrate|object_storage'


def read_entries(name):
    """(regex, comment lines just above it) for each regex line."""
    entries, comment = [], []
    with open(os.path.join(TEMPEST, name)) as f:
        for line in f:
            line = line.strip()
            if line.startswith('#'):
                comment.append(line)
            elif line:
                entries.append((line, comment))
                comment = []
            else:
                comment = []
    return entries


def load_tempest_py():
    spec = importlib.util.spec_from_file_location(
        'aio_tempest',
        os.path.join(TOP, 'tools', 'ndtools', 'tempest_conf.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestSelection(testtools.TestCase):

    def test_every_regex_compiles(self):
        for name in ('include.txt', 'exclude.txt'):
            for regex, _ in read_entries(name):
                re.compile(regex)

    def test_every_exclusion_has_a_reason(self):
        for regex, comment in read_entries('exclude.txt'):
            self.assertTrue(comment, 'no reason above %s' % regex)

    def test_shorter_than_historic_list(self):
        self.assertLess(len(read_entries('exclude.txt')),
                        len(HISTORIC.split('|')))

    def test_suspend_and_snapshot_tests_selected_not_excluded(self):
        include = [re.compile(r) for r, _ in read_entries('include.txt')]
        exclude = [re.compile(r) for r, _ in read_entries('exclude.txt')]
        for test in MUST_RUN:
            self.assertTrue(any(r.search(test) for r in include), test)
            self.assertFalse(any(r.search(test) for r in exclude), test)

    def test_ssh_scenarios_and_compute_admin_selected_not_excluded(self):
        include = [re.compile(r) for r, _ in read_entries('include.txt')]
        exclude = [re.compile(r) for r, _ in read_entries('exclude.txt')]
        tests = ['tempest.scenario.%s.Test.test_x' % m for m in SSH_SCENARIOS]
        tests.append('tempest.api.compute.admin.test_auto_allocate_network.'
                     'AutoAllocateNetworkTest.test_server_create_no_allocate')
        for test in tests:
            self.assertTrue(any(r.search(test) for r in include), test)
            self.assertFalse(any(r.search(test) for r in exclude), test)

    def test_tempest_pinned(self):
        with open(os.path.join(TEMPEST, 'constraints.txt')) as f:
            pins = [line.strip() for line in f]
        self.assertEqual(1, len([p for p in pins
                                 if re.match(r'^tempest==[0-9.]+$', p)]))


class TestValidation(testtools.TestCase):
    """SSH validation as the all-in-one can do it: root's key, through a
    floating IP, Nova's own (RSA) keypairs."""

    def test_validation_on_with_keypair_over_floating_ip(self):
        validation = load_tempest_py().VALIDATION
        self.assertEqual(
            {'run_validation': 'true', 'connect_method': 'floating',
             'auth_method': 'keypair', 'image_ssh_user': 'root',
             'ssh_key_type': 'rsa'},
            {k: validation[k] for k in ('run_validation', 'connect_method',
                                        'auth_method', 'image_ssh_user',
                                        'ssh_key_type')})


class TestFeatureFlags(testtools.TestCase):
    """tempest.conf's flags agree with what DockerDriver declares/has."""

    def setUp(self):
        super().setUp()
        self.features = load_tempest_py().COMPUTE_FEATURES

    def test_interface_attach_matches_capability(self):
        self.assertEqual(
            driver.DockerDriver.capabilities['supports_attach_interface'],
            self.features['interface_attach'])

    def test_enabled_features_are_implemented(self):
        # A flag on is a promise: the driver must override the method.
        base = driver.driver.ComputeDriver
        methods = {'pause': ('pause', 'unpause'),
                   'suspend': ('suspend', 'resume'),
                   'snapshot': ('snapshot',),
                   'console_output': ('get_console_output',),
                   'interface_attach': ('attach_interface',
                                        'detach_interface'),
                   'resize': ('migrate_disk_and_power_off',
                              'finish_migration'),
                   'rescue': ('rescue', 'unrescue'),
                   'serial_console': ('get_serial_console',),
                   'change_password': ('set_admin_password',)}
        # Implemented, but off for a reason the flag's comment gives.
        off_anyway = {'change_password'}   # the image needs chpasswd
        for flag, names in methods.items():
            implemented = all(
                getattr(driver.DockerDriver, n) is not getattr(base, n)
                for n in names)
            if flag in off_anyway:
                self.assertTrue(implemented, flag)
                self.assertFalse(self.features[flag], flag)
                continue
            self.assertEqual(implemented, self.features[flag], flag)


class TestMultinodeConf(testtools.TestCase):
    """tempest.conf on a multi-node all-in-one: multi-node tests and cold
    migration on; a single node keeps them off."""

    def test_single_node(self):
        compute, features = load_tempest_py().multinode_overrides(['vm'])
        self.assertEqual({'min_compute_nodes': '1'}, compute)
        self.assertEqual({}, features)
        self.assertFalse(load_tempest_py().COMPUTE_FEATURES['cold_migration'])

    def test_two_nodes(self):
        compute, features = load_tempest_py().multinode_overrides(
            ['aio-node2', 'vm'])
        self.assertEqual({'min_compute_nodes': '2',
                          'migration_source_host': 'vm',
                          'migration_dest_host': 'aio-node2'}, compute)
        self.assertEqual({'cold_migration': 'true'}, features)
        self.assertNotIn('live_migration', features)

    def test_three_nodes(self):
        compute, _ = load_tempest_py().multinode_overrides(
            ['aio-node3', 'vm', 'aio-node2'])
        self.assertEqual('3', compute['min_compute_nodes'])
        self.assertEqual('vm', compute['migration_source_host'])
        self.assertEqual('aio-node2', compute['migration_dest_host'])


class TestSharedNetwork(testtools.TestCase):
    """The one network Tempest's servers boot on (tempest_conf's
    SHARED_NETWORK): made once with its subnet and router, found after."""

    def setUp(self):
        super().setUp()
        from openstack.network.v2 import _proxy
        self.module = load_tempest_py()
        self.conn = mock.Mock()
        self.network = self.conn.network = mock.create_autospec(
            _proxy.Proxy, instance=True)
        self.public = mock.Mock(id='public-id')

    def test_made_when_missing(self):
        self.network.find_network.return_value = None
        self.network.find_subnet.return_value = None
        self.network.find_router.return_value = None
        self.network.ports.return_value = []
        net = self.module.ensure_shared_network(self.conn, self.public)
        self.assertIs(self.network.create_network.return_value, net)
        self.network.create_network.assert_called_once_with(
            name='tempest-shared', shared=True)
        self.network.create_subnet.assert_called_once_with(
            name='tempest-shared', network_id=net.id, ip_version=4,
            cidr=self.module.SHARED_CIDR)
        self.network.create_router.assert_called_once_with(
            name='tempest-shared',
            external_gateway_info={'network_id': 'public-id'})
        self.network.add_interface_to_router.assert_called_once_with(
            self.network.create_router.return_value,
            subnet=self.network.create_subnet.return_value.id)

    def test_found_when_present(self):
        router = self.network.find_router.return_value
        self.network.ports.return_value = [mock.Mock(device_id=router.id)]
        net = self.module.ensure_shared_network(self.conn, self.public)
        self.assertIs(self.network.find_network.return_value, net)
        for made in (self.network.create_network, self.network.create_subnet,
                     self.network.create_router,
                     self.network.add_interface_to_router):
            made.assert_not_called()

    def test_router_without_its_interface_gets_it(self):
        self.network.ports.return_value = [mock.Mock(device_id='other')]
        self.module.ensure_shared_network(self.conn, self.public)
        self.network.add_interface_to_router.assert_called_once_with(
            self.network.find_router.return_value,
            subnet=self.network.find_subnet.return_value.id)

    def test_not_apart_from_the_other_networks(self):
        # Neither Tempest's project networks nor the all-in-one's own
        # (private, the auto-allocation pool, public).
        import ipaddress
        from ndtools import aio_state
        from ndtools import cloud
        settings = aio_state.Settings({})
        shared = ipaddress.ip_network(self.module.SHARED_CIDR)
        for other in ('10.100.0.0/16', settings.private_cidr,
                      cloud.DEFAULT_POOL[1], settings.ext_cidr):
            self.assertFalse(shared.overlaps(ipaddress.ip_network(other)),
                             other)


class TestLibvirtHosts(testtools.TestCase):
    """A KVM node's compute host is not one of Tempest's compute nodes."""

    def test_only_libvirt_hypervisors(self):
        from openstack.compute.v2 import _proxy
        conn = mock.Mock()
        conn.compute = mock.create_autospec(_proxy.Proxy, instance=True)
        conn.compute.hypervisors.return_value = [
            mock.Mock(hypervisor_type='docker',
                      service_details={'host': 'vm'}),
            mock.Mock(hypervisor_type='QEMU',
                      service_details={'host': 'aio-kvm10'}),
            mock.Mock(hypervisor_type='docker',
                      service_details={'host': 'aio-node2'})]
        self.assertEqual({'aio-kvm10'},
                         load_tempest_py().libvirt_hosts(conn))
        conn.compute.hypervisors.assert_called_once_with(details=True)

    def test_multinode_test_avoids_them(self):
        avoid = load_tempest_py().avoid_hosts
        self.assertEqual({}, avoid(set()))
        self.assertEqual({'target_hosts_to_avoid': 'aio-kvm10'},
                         avoid({'aio-kvm10'}))
        # Several KVM nodes: what their names share, which no docker
        # node's name (aio-nodeK, the host's) contains.
        prefix = avoid({'aio-kvm11', 'aio-kvm10'})['target_hosts_to_avoid']
        self.assertEqual('aio-kvm1', prefix)
        self.assertNotIn(prefix, 'aio-node2')
