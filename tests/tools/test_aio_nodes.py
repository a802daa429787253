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

"""``tools/aio up --nodes N``'s compute nodes (ndtools.aio_nodes): their
commands and configuration (unit tests), and the relay that gives a
node's 127.0.0.1 the host's control plane (ndtools.relay), for real
between this process's namespace and a namespace of the test's own
(root; it fails in CI without it, never skips there).
"""

import configparser
import os
import signal
import socket
import subprocess
import threading
import uuid

import fixtures
import testtools

from ndtools import aio
from ndtools import aio_nodes
from ndtools import aio_state
from ndtools import host
from ndtools import relay
from tests.fixtures import docker as docker_fixtures


class NodesArgumentTest(testtools.TestCase):

    def test_parse_nodes(self):
        self.assertEqual(1, aio.parse_nodes([]))
        self.assertEqual(2, aio.parse_nodes(['--nodes', '2']))
        self.assertEqual(3, aio.parse_nodes(['--nodes=3']))
        for bad in (['--nodes'], ['--nodes', 'two'], ['-n', '2'], ['x']):
            self.assertRaises(ValueError, aio.parse_nodes, bad)

    def test_numbers_of_the_extra_nodes(self):
        self.assertEqual([], aio_nodes.numbers(1))
        self.assertEqual([2], aio_nodes.numbers(2))
        self.assertEqual([2, 3], aio_nodes.numbers(3))
        for bad in (0, 4):
            self.assertRaises(ValueError, aio_nodes.numbers, bad)

    def test_marked_numbers(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        state = aio_state.State(aio_state.Settings({'AIO_DIR': tmp}))
        self.assertEqual([], aio_nodes.marked_numbers(state))
        for mark in ('svc:nova-compute', 'node:3', 'node:2', 'node:2',
                     'node:x'):
            state.mark(mark)
        self.assertEqual([2, 3], aio_nodes.marked_numbers(state))
        state.unmark_processes()
        self.assertEqual([2, 3], aio_nodes.marked_numbers(state))
        # down_nodes forgets each node it took down.
        state.unmark('node:3')
        self.assertEqual([2], aio_nodes.marked_numbers(state))
        self.assertTrue(state.marked('node:2'))

    def test_existing_numbers(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        self.assertEqual([], aio_nodes.existing_numbers(tmp))
        for name in ('node3', 'node2', 'node1', 'nodex', 'other'):
            os.makedirs(os.path.join(tmp, 'nodes', name))
        self.assertEqual([2, 3], aio_nodes.existing_numbers(tmp))


HOST_CONF = '''[DEFAULT]
host = myhost
transport_url = rabbit://guest:guest@127.0.0.1:5672/
[api_database]
connection = mysql+pymysql://openstack:x@127.0.0.1/aio_nova_api
[database]
connection = mysql+pymysql://openstack:x@127.0.0.1/aio_nova
my_ip = 127.0.0.1
state_path = /aio/data/nova
[docker]
api_url = unix:///aio/run/docker.sock
ovsdb_connection = unix:/var/run/openvswitch/db.sock
[os_vif_ovs]
ovsdb_connection = unix:/var/run/openvswitch/db.sock
[vif_plug_ovs_privileged]
helper_command = /aio/venv/bin/privsep-helper --config-file /aio/nova.conf
[nova_sys_admin]
helper_command = /aio/venv/bin/privsep-helper --config-file /aio/nova.conf
[neutron]
username = neutron
[docker_net]
helper_command = /aio/venv/bin/privsep-helper --config-file /aio/nova.conf
'''


class ComputeNodeTest(testtools.TestCase):
    """A node's daemons use the node's files and namespace; its
    nova.conf layer points at the node's engine and OVS."""

    def setUp(self):
        super().setUp()
        self.settings = aio_state.Settings({'AIO_DIR': '/aio'})
        self.node = aio_nodes.ComputeNode(2, self.settings, '/top')

    def test_paths(self):
        n = self.node
        self.assertEqual('/aio/nodes/node2', n.dir)
        self.assertEqual('/aio/etc/nova/nova.conf', n.host_nova_conf)
        self.assertEqual('/aio/nodes/node2/etc/nova-compute.conf',
                         n.nova_conf)

    def test_privsep_sections(self):
        self.assertEqual(['vif_plug_ovs_privileged', 'nova_sys_admin',
                          'docker_net'],
                         aio_nodes.privsep_sections(HOST_CONF))

    def test_ovn_controller_in_the_namespace_on_the_nodes_ovs(self):
        argv = self.node.ovn_controller_argv()
        self.assertEqual(['ip', 'netns', 'exec', 'aio-node2', 'env'],
                         argv[:5])
        # br-int.mgmt of the node's ovs-vswitchd, not the host's.
        self.assertIn('OVS_RUNDIR=/aio/nodes/node2/run/ovs', argv)
        self.assertIn('OVN_RUNDIR=/aio/nodes/node2/run/ovn', argv)
        self.assertIn('unix:/aio/nodes/node2/run/ovs/db.sock', argv)
        joined = ' '.join(argv)
        self.assertNotIn('/var/run/openvswitch', joined)
        self.assertNotIn('/var/run/ovn', joined)
        self.assertNotIn('--detach', argv)

    def test_ovn_external_ids(self):
        ids = dict(item.split('=', 1)
                   for item in self.node.ovn_external_ids())
        self.assertEqual('unix:/var/run/ovn/ovnsb_db.sock',
                         ids['external_ids:ovn-remote'])
        self.assertEqual('geneve', ids['external_ids:ovn-encap-type'])
        self.assertEqual('10.250.0.2', ids['external_ids:ovn-encap-ip'])
        self.assertEqual('netdev',
                         ids['external_ids:ovn-bridge-datapath-type'])
        # Never a gateway chassis, no provider bridge.
        self.assertNotIn('external_ids:ovn-cms-options', ids)
        self.assertNotIn('external_ids:ovn-bridge-mappings', ids)

    def test_nova_compute_in_the_nodes_network_with_both_files(self):
        argv = self.node.nova_compute_argv()
        # Only the network: the host's mounts (cgroups, LXCFS).
        self.assertEqual(['nsenter', '--net=/run/netns/aio-node2'],
                         argv[:2])
        self.assertIn('DOCKER_HOST=unix:///aio/nodes/node2/run/docker.sock',
                      argv)
        self.assertIn('/aio/venv/bin/nova-compute', argv)
        self.assertEqual(['--config-file',
                          '/aio/nodes/node2/etc/nova-compute.conf'],
                         argv[-2:])

    def test_relay_argv(self):
        argv = self.node.relay_argv()
        self.assertEqual(['/usr/bin/python3', '/top/tools/ndtools/relay.py',
                          '--netns', '/run/netns/aio-node2'], argv[:4])
        ports = [int(argv[i + 1]) for i, a in enumerate(argv)
                 if a == '--port']
        # Keystone, RabbitMQ, Placement, Glance, Neutron; no database.
        self.assertEqual([5000, 5672, 8778, 9292, 9696], ports)

    def test_nova_conf_from_the_hosts(self):
        text = self.node.nova_conf_text(HOST_CONF)
        # Each option once: what the node sets replaces the host's.
        conf = configparser.RawConfigParser(strict=False)
        conf.read_string(text)
        self.assertEqual('rabbit://guest:guest@127.0.0.1:5672/',
                         conf['DEFAULT']['transport_url'])
        self.assertEqual('neutron', conf['neutron']['username'])
        # No database: nova-compute goes through the conductor.
        self.assertNotIn('connection', conf['database'])
        self.assertNotIn('connection', conf['api_database'])
        self.assertNotIn('mysql', text)
        self.assertNotIn('myhost', text)
        self.assertEqual('aio-node2', conf['DEFAULT']['host'])
        self.assertEqual('10.250.0.2', conf['DEFAULT']['my_ip'])
        self.assertEqual('10.250.0.2',
                         conf['serial_console']['proxyclient_address'])
        self.assertEqual('/aio/nodes/node2/data/nova',
                         conf['DEFAULT']['state_path'])
        self.assertEqual('/aio/nodes/node2/data/nova/instances',
                         conf['DEFAULT']['instances_path'])
        self.assertEqual('/aio/nodes/node2/data/lock',
                         conf['oslo_concurrency']['lock_path'])
        self.assertEqual('/aio/nodes/node2/logs/nova-compute.log',
                         conf['DEFAULT']['log_file'])
        self.assertEqual('unix:///aio/nodes/node2/run/docker.sock',
                         conf['docker']['api_url'])
        for section in ('docker', 'os_vif_ovs'):
            self.assertEqual('unix:/aio/nodes/node2/run/ovs/db.sock',
                             conf[section]['ovsdb_connection'])
        for section in aio_nodes.privsep_sections(HOST_CONF):
            self.assertEqual(
                '/aio/venv/bin/privsep-helper --config-file '
                '/aio/nodes/node2/etc/nova-compute.conf',
                conf[section]['helper_command'])
        self.assertNotIn('/var/run/openvswitch', text)
        self.assertNotIn('/aio/run/docker.sock', text)

    def test_status_names_every_daemon(self):
        self.assertEqual(
            ('ovsdb-server', 'ovs-vswitchd', 'containerd', 'dockerd',
             'relay', 'ovn-controller', 'nova-compute'),
            tuple(self.node.daemon_pids()))


class CrashTest(testtools.TestCase):
    """``tools/aio node-kill K``: nova-compute and dockerd die with their
    process groups (privsep helpers, a shim's children), containerd (and
    with it the live-restored containers) keeps running. For real, with
    stand-ins started as up starts the daemons."""

    def setUp(self):
        super().setUp()
        tmp = self.useFixture(fixtures.TempDir()).path
        self.node = aio_nodes.ComputeNode(
            2, aio_state.Settings({'AIO_DIR': tmp}), '/top')
        os.makedirs(self.node.s.run)
        os.makedirs(self.node.s.logs)

    def start(self, name: str, script: str) -> int:
        pid = self.node.state.start_svc(name, 'sh', '-c', script)
        self.addCleanup(aio_state.signal_group_or_pid, pid, signal.SIGKILL)
        self.addCleanup(host.pid_alive, pid)    # reaps it
        return pid

    def test_kills_compute_and_docker_with_their_groups(self):
        compute = self.start('nova-compute', 'sleep 600 & sleep 600')
        docker = self.start('dockerd', 'sleep 600')
        containerd = self.start('containerd', 'sleep 600')

        self.assertEqual(['nova-compute', 'dockerd'], self.node.crash())

        for pid in (compute, docker):
            self.assertFalse(host.pid_alive(pid))
            self.assertFalse(aio_state.group_alive(pid))
        self.assertTrue(host.pid_alive(containerd))

    def test_nothing_running_kills_nothing(self):
        self.assertEqual([], self.node.crash())


# -- the relay, for real ------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class EchoServer(fixtures.Fixture):
    """127.0.0.1:port in this process's namespace: answers each line with
    'echo ' + the line."""

    def _setUp(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.addCleanup(self.sock.close)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b''
                while not data.endswith(b'\n'):
                    chunk = conn.recv(100)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(b'echo ' + data)


def talk(port: int, line: bytes) -> bytes:
    with socket.create_connection(('127.0.0.1', port), timeout=10) as conn:
        conn.sendall(line)
        conn.shutdown(socket.SHUT_WR)
        answer = b''
        while True:
            chunk = conn.recv(100)
            if not chunk:
                return answer
            answer += chunk


class RelayTest(testtools.TestCase):

    def test_parse_port(self):
        self.assertEqual((5672, 5672), relay.parse_port('5672'))
        self.assertEqual((15672, 5672), relay.parse_port('15672:5672'))
        for bad in ('0', '70000', 'x', '1:0'):
            self.assertRaises(ValueError, relay.parse_port, bad)

    def serve(self, path, ports):
        for sock in relay.serve(path, ports):
            self.addCleanup(sock.close)

    def require_root(self):
        if os.geteuid() != 0:
            docker_fixtures.require_functional_missing(
                self, 'setns needs root')

    def test_relays_in_one_namespace(self):
        self.require_root()
        echo = self.useFixture(EchoServer())
        listen = free_port()
        # Listening "in" this process's own namespace.
        self.serve('/proc/self/ns/net', [(listen, echo.port)])
        self.assertEqual(b'echo hello\n', talk(listen, b'hello\n'))
        self.assertEqual(b'echo again\n', talk(listen, b'again\n'))

    def test_node_loopback_reaches_host_loopback(self):
        """A client in another namespace connects to its own 127.0.0.1
        and is answered by a server on this namespace's 127.0.0.1."""
        self.require_root()
        echo = self.useFixture(EchoServer())
        name = 'ndrelay-%s' % uuid.uuid4().hex[:8]
        subprocess.run(['ip', 'netns', 'add', name], check=True)
        self.addCleanup(subprocess.run, ['ip', 'netns', 'del', name])
        subprocess.run(['ip', '-n', name, 'link', 'set', 'lo', 'up'],
                       check=True)
        path = '/run/netns/' + name
        # Nothing answers there before the relay.
        with relay.inside(path):
            self.assertRaises(OSError, talk, echo.port, b'x\n')
        self.serve(path, [(echo.port, echo.port)])
        with relay.inside(path):
            self.assertEqual(b'echo from the node\n',
                             talk(echo.port, b'from the node\n'))
        # This thread is back in its own namespace.
        self.assertEqual(os.readlink('/proc/self/ns/net'),
                         os.readlink('/proc/thread-self/ns/net'))

    def test_inside_returns_after_an_error(self):
        self.require_root()
        own = os.readlink('/proc/thread-self/ns/net')
        self.assertRaises(FileNotFoundError, relay.inside(
            '/run/netns/no-such-namespace').__enter__)
        self.assertEqual(own, os.readlink('/proc/thread-self/ns/net'))


class AddNodesTest(testtools.TestCase):
    """``tools/aio add-nodes N``: only the nodes the cloud lacks."""

    def setUp(self):
        super().setUp()
        # AllInOne points DOCKER_HOST at the all-in-one's engine: restored
        # after the test, or later tests in this process lose the host's.
        for name in ('DOCKER_HOST', 'NOVA_DOCKER_TEST_API_URL'):
            self.useFixture(fixtures.EnvironmentVariable(name))
        tmp = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.EnvironmentVariable('AIO_DIR', tmp))
        self.aio = aio.AllInOne(aio_state.Settings({'AIO_DIR': tmp}))
        os.makedirs(os.path.dirname(self.aio.s.clouds_yaml), exist_ok=True)
        with open(self.aio.s.clouds_yaml, 'w') as f:
            f.write('clouds: {}\n')
        self.useFixture(fixtures.MockPatchObject(aio.AllInOne, 'need_root'))
        self.start_nodes = self.useFixture(fixtures.MockPatchObject(
            aio.AllInOne, 'start_nodes', autospec=True)).mock
        self.useFixture(fixtures.MockPatchObject(
            aio.AllInOne, 'nodes_summary', autospec=True))

    def compute_running(self):
        # This process stands for a running nova-compute.
        self.aio.state.write_pid('nova-compute', os.getpid())

    def test_starts_only_the_missing_nodes(self):
        self.compute_running()
        self.aio.state.mark(aio_nodes.NODE_MARK + '2')
        self.assertEqual(0, self.aio.add_nodes(['3']))
        self.start_nodes.assert_called_once_with([3])

    def test_nothing_to_add(self):
        self.compute_running()
        self.aio.state.mark(aio_nodes.NODE_MARK + '2')
        self.assertEqual(0, self.aio.add_nodes(['2']))
        self.start_nodes.assert_called_once_with([])

    def test_bad_counts_are_refused_before_anything_starts(self):
        self.compute_running()
        for bad in ([], ['1'], ['4'], ['two'], ['2', '3']):
            exc = self.assertRaises(SystemExit, self.aio.add_nodes, bad)
            self.assertNotEqual(0, exc.code)
        self.start_nodes.assert_not_called()

    def test_refused_without_a_running_cloud(self):
        self.assertRaises(SystemExit, self.aio.add_nodes, ['2'])
        self.start_nodes.assert_not_called()


class EnvironmentRestoredTest(testtools.TestCase):
    """The tests above ran in this process: the host's engine is still the
    one the next test finds (the CI run where it was not failed three
    real-OVSDB tests that came after them in the same worker)."""

    def test_constructing_all_in_one_under_the_fixture_leaks_nothing(self):
        before = {n: os.environ.get(n) for n in ('DOCKER_HOST',
                                                 'NOVA_DOCKER_TEST_API_URL')}
        test = AddNodesTest('test_nothing_to_add')
        result = testtools.TestResult()
        test.run(result)
        self.assertTrue(result.wasSuccessful(), result.errors)
        self.assertEqual(before, {n: os.environ.get(n) for n in before})
