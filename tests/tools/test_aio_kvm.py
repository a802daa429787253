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

"""``tools/aio add-kvm-node`` (ndtools.aio_kvm): the KVM compute node's
commands, configuration and steps (unit tests; tests/scenario/test_mixed.py
boots VMs on the real one)."""

import io
import re
import subprocess
from unittest import mock

import fixtures
import testtools

from ndtools import aio
from ndtools import aio_kvm
from ndtools import aio_nodes
from ndtools import aio_state
from ndtools import host
from ndtools import kvm_node
from ndtools import node
from tests.tools import test_aio_nodes


class KvmComputeNodeTest(testtools.TestCase):
    """A compute node's relay, chassis and nova-compute on a KVM node."""

    def setUp(self):
        super().setUp()
        self.settings = aio_state.Settings({'AIO_DIR': '/aio'})
        self.node = aio_kvm.KvmComputeNode(
            aio_kvm.KVM_NUMBER, self.settings, '/top',
            virt=('qemu', 'no /dev/kvm'))

    def test_names_and_paths_are_not_a_docker_nodes(self):
        n = self.node
        self.assertEqual('aio-kvm10', n.name)
        self.assertEqual('aio-kvm10', n.netns)
        self.assertEqual('10.250.0.10', n.address)
        self.assertEqual('/aio/nodes/kvm10', n.dir)
        self.assertEqual('/aio/nodes/kvm10/etc/nova-compute.conf',
                         n.nova_conf)
        # Docker nodes are 2..MAX_NODES: another underlay address.
        self.assertGreater(aio_kvm.KVM_NUMBER, aio_nodes.MAX_NODES)
        self.assertLessEqual(aio_kvm.KVM_NUMBER, node.MAX_NUMBER)

    def test_node_part_is_the_kvm_nodes(self):
        self.assertIs(kvm_node.KvmNode.up, aio_kvm.KvmComputeNode.up)
        self.assertIs(aio_nodes.ComputeNode.relay_argv,
                      aio_kvm.KvmComputeNode.relay_argv)
        self.assertIn('libvirtd', ' '.join(self.node.libvirtd_argv()))

    def test_nova_compute_without_docker(self):
        argv = self.node.nova_compute_argv()
        self.assertEqual(['nsenter', '--net=/run/netns/aio-kvm10',
                          '/aio/venv/bin/nova-compute', '--config-file',
                          '/aio/nodes/kvm10/etc/nova-compute.conf'], argv)

    def test_nova_conf_runs_libvirt_on_the_node(self):
        text = self.node.nova_conf_text(test_aio_nodes.HOST_CONF)
        options = {}
        section = None
        for line in text.splitlines():
            header = re.match(r'\[([^\]]+)\]', line)
            if header:
                section = header.group(1)
                continue
            found = re.match(r'([a-z_]+) = (.*)', line)
            if found:
                key = (section, found.group(1))
                # Each option once: the last layer replaced the others.
                self.assertNotIn(key, options, line)
                options[key] = found.group(2)
        self.assertEqual('libvirt.LibvirtDriver',
                         options['DEFAULT', 'compute_driver'])
        self.assertEqual('aio-kvm10', options['DEFAULT', 'host'])
        self.assertEqual('10.250.0.10', options['DEFAULT', 'my_ip'])
        self.assertEqual('qemu', options['libvirt', 'virt_type'])
        self.assertEqual('none', options['libvirt', 'cpu_mode'])
        self.assertEqual(
            'qemu:///system?socket=/aio/nodes/kvm10/libvirt/run/libvirt/'
            'libvirt-sock', options['libvirt', 'connection_uri'])
        self.assertEqual('unix:/aio/nodes/kvm10/run/ovs/db.sock',
                         options['os_vif_ovs', 'ovsdb_connection'])
        self.assertEqual('True', options['workarounds',
                                         'disable_deep_image_inspection'])
        self.assertEqual('/aio/nodes/kvm10/data/nova/instances',
                         options['DEFAULT', 'instances_path'])
        # Not the host's engine, nor the node's (it has none).
        self.assertNotIn(('docker', 'api_url'), options)
        self.assertNotIn('docker.sock', text.split('# aio-node')[-1])
        self.assertNotIn('mysql', text)

    def test_conf_options_last_value_first_place(self):
        self.assertEqual(
            [('A', 'x', '3'), ('B', 'y', '2')],
            aio_kvm.conf_options([('A', 'x', '1'), ('B', 'y', '2'),
                                  ('A', 'x', '3')]))

    def test_status_and_usage_name_its_daemons(self):
        # A node number no cloud here uses: nothing of it runs.
        idle = aio_kvm.KvmComputeNode(201, self.settings, '/top')
        self.assertEqual(
            ('ovsdb-server', 'ovs-vswitchd', 'libvirtd', 'relay',
             'ovn-controller', 'nova-compute'),
            tuple(idle.daemon_pids()))
        parts = idle.status()
        for name in ('netns', 'libvirtd', 'br-int', 'relay',
                     'ovn-controller', 'nova-compute'):
            self.assertFalse(parts[name], name)
        self.assertNotIn('dockerd', parts)

    def test_virt_type_found_once(self):
        virt = self.useFixture(fixtures.MockPatch(
            'ndtools.kvm_node.virt_type', autospec=True,
            return_value=('kvm', ''))).mock
        n = aio_kvm.KvmComputeNode(10, self.settings, '/top')
        self.assertEqual(('kvm', ''), n.virt)
        self.assertEqual(('kvm', ''), n.virt)
        self.assertEqual(1, virt.call_count)


    def test_guests_qemu_counted_in_the_usage(self):
        n = aio_kvm.KvmComputeNode(201, self.settings, '/top')
        self.useFixture(fixtures.MockPatchObject(
            n, 'qemu_pids', autospec=True, return_value=[4242]))
        self.assertEqual(4242, n.daemon_pids()['qemu 4242'])
        lines = n.usage_lines()
        self.assertIn('qemu 4242', lines[-2])
        self.assertIn('total', lines[-1])


class InstallTest(testtools.TestCase):
    """The packages a KVM node needs, and libvirt-python in the venv."""

    def setUp(self):
        super().setUp()
        self.settings = aio_state.Settings({'AIO_DIR': '/aio'})
        self.installed = mock.create_autospec(host.dpkg_installed)
        self.apt = mock.create_autospec(host.apt_install, return_value=True)
        self.run = self.useFixture(fixtures.MockPatch(
            'ndtools.aio_kvm.subprocess.run', autospec=True)).mock
        self.sh = self.useFixture(fixtures.MockPatch(
            'ndtools.aio_state.sh', autospec=True)).mock

    def test_installs_what_is_missing_without_recommends(self):
        self.installed.side_effect = lambda p: p != 'qemu-utils'
        self.run.return_value = subprocess.CompletedProcess([], 0)
        self.assertTrue(aio_kvm.install_kvm(self.settings, self.installed,
                                            self.apt))
        self.apt.assert_called_once_with(['qemu-utils'], recommends=False)
        self.sh.assert_not_called()
        for package in ('libvirt-daemon-driver-qemu', 'qemu-system-x86',
                        'libvirt-dev', 'pkg-config'):
            self.assertIn(package, aio_kvm.KVM_DEBS)

    def test_builds_libvirt_python_when_it_does_not_import(self):
        self.installed.return_value = True
        self.run.return_value = subprocess.CompletedProcess([], 1)
        self.assertTrue(aio_kvm.install_kvm(self.settings, self.installed,
                                            self.apt))
        self.apt.assert_not_called()
        self.assertEqual(
            [mock.call('/aio/venv/bin/pip', 'install',
                       aio_kvm.LIBVIRT_PYTHON),
             mock.call('/aio/venv/bin/python', '-c', 'import libvirt')],
            self.sh.call_args_list)

    def test_apt_failure_fails(self):
        self.installed.return_value = False
        self.apt.return_value = False
        self.assertFalse(aio_kvm.install_kvm(self.settings, self.installed,
                                             self.apt))
        self.run.assert_not_called()


class AioKvmCommandsTest(testtools.TestCase):
    """add-kvm-node's steps, scenario --mixed, down."""

    def setUp(self):
        super().setUp()
        for name in ('DOCKER_HOST', 'NOVA_DOCKER_TEST_API_URL', 'AIO_NODES',
                     'NOVA_DOCKER_AIO_SCENARIO', 'AIO_KVM_NODE'):
            self.useFixture(fixtures.EnvironmentVariable(name))
        tmp = self.useFixture(fixtures.TempDir()).path
        self.aio = aio.AllInOne(aio_state.Settings({'AIO_DIR': tmp}))
        with open(self.aio.s.clouds_yaml, 'w') as f:
            f.write('clouds: {}\n')
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', io.StringIO()))
        self.useFixture(fixtures.MockPatch(
            'ndtools.kvm_node.virt_type', autospec=True,
            return_value=('qemu', 'no /dev/kvm')))

    def test_steps_in_order_docker_images_tagged_before_the_node(self):
        steps = []
        marked_at_node = []

        def run_step(name, desc, func, *args):
            steps.append(name)
            if name == 'kvm-node':
                marked_at_node.append(
                    self.aio.state.marked(aio_kvm.KVM_MARK))
        self.useFixture(fixtures.MockPatchObject(
            aio_state.State, 'run_step', autospec=True,
            side_effect=run_step))
        self.aio.start_kvm_node()
        self.assertEqual(['kvm-packages', 'docker-hv-type', 'underlay',
                          'kvm-node', 'discover-kvm', 'vm-image'], steps)
        # Marked first: a failed step's down still removes the node.
        self.assertEqual([True], marked_at_node)

    def test_scenario_mixed_runs_the_mixed_module(self):
        run_suite = self.useFixture(fixtures.MockPatchObject(
            aio.AllInOne, 'run_suite', autospec=True,
            return_value=aio.SuiteResult(4, 0))).mock
        self.aio.state.mark(aio_kvm.KVM_MARK)
        self.assertEqual(0, self.aio.scenario(['--mixed']))
        (call,) = run_suite.call_args_list
        self.assertEqual([aio.MIXED_SCENARIOS], call[0][-1])
        self.assertEqual('aio-kvm10', call[1]['AIO_KVM_NODE'])
        self.assertEqual('scenario-mixed', call[1]['log'])
        name = 'tests.scenario.test_mixed.MixedScenarioTest.test_x'
        self.assertTrue(re.search(aio.MIXED_SCENARIOS, name))
        # Never in the run of everything.
        self.assertTrue(re.search(aio.NOT_BY_DEFAULT, name))
        self.assertFalse(re.search(aio.NOT_BY_DEFAULT,
                                   'tests.scenario.test_ssh.SshTest.x'))

    def test_without_a_kvm_node_scenario_names_none(self):
        run_suite = self.useFixture(fixtures.MockPatchObject(
            aio.AllInOne, 'run_suite', autospec=True,
            return_value=aio.SuiteResult(4, 0))).mock
        self.aio.scenario(['--mixed'])
        self.assertEqual('', run_suite.call_args[1]['AIO_KVM_NODE'])

    def test_down_nodes_takes_the_kvm_node_down_first(self):
        order = []
        self.useFixture(fixtures.MockPatchObject(
            aio_kvm.KvmComputeNode, 'down', autospec=True,
            side_effect=lambda *a: order.append('kvm')))
        self.useFixture(fixtures.MockPatchObject(
            aio_nodes.ComputeNode, 'down', autospec=True,
            side_effect=lambda *a: order.append('docker')))
        release = self.useFixture(fixtures.MockPatchObject(
            aio.AllInOne, 'release_underlay', autospec=True)).mock
        self.aio.state.mark('node:2')
        self.aio.state.mark(aio_kvm.KVM_MARK)
        self.aio.down_nodes()
        self.assertEqual(['kvm', 'docker'], order)
        self.assertFalse(self.aio.state.marked(aio_kvm.KVM_MARK))
        release.assert_called_once_with()

    def test_remove_keeps_the_underlay_for_docker_nodes(self):
        clean = self.useFixture(fixtures.MockPatchObject(
            aio_kvm.KvmComputeNode, 'clean', autospec=True)).mock
        release = self.useFixture(fixtures.MockPatchObject(
            aio.AllInOne, 'release_underlay', autospec=True)).mock
        self.aio.state.mark(aio_kvm.KVM_MARK)
        self.aio.state.mark('node:2')
        self.aio.down_kvm_node()
        clean.assert_called_once_with()
        self.assertFalse(self.aio.state.marked(aio_kvm.KVM_MARK))
        release.assert_not_called()
        self.aio.state.unmark('node:2')
        self.aio.down_kvm_node()
        release.assert_called_once_with()

    def test_up_arguments(self):
        self.assertEqual((1, False), aio.parse_up([]))
        self.assertEqual((1, True), aio.parse_up(['--kvm-node']))
        self.assertEqual((2, True), aio.parse_up(['--nodes', '2',
                                                  '--kvm-node']))
        self.assertEqual((3, True), aio.parse_up(['--kvm-node',
                                                  '--nodes=3']))
        for bad in (['--kvm'], ['--kvm-node', 'x']):
            self.assertRaises(ValueError, aio.parse_up, bad)

    def test_up_takes_kvm_node(self):
        self.assertEqual(['--image=vm-tiny', '--image=vm-tiny-kernel',
                          '--image=vm-tiny-ramdisk'], aio.vm_image_args())
        self.useFixture(fixtures.MockPatchObject(
            aio.AllInOne, 'need_root', autospec=True))
        self.assertRaises(SystemExit, self.aio.up, ['--kvm', '--nodes', '2'])
