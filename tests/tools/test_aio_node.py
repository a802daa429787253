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

"""The multi-node all-in-one's nodes (ndtools.node): their commands and
files (unit tests), and two real nodes brought up and down (TwoNodesTest:
root, the host's Open vSwitch, dockerd/containerd binaries; it fails in CI
when they are missing, it never skips there).

The real test touches only what the nodes make: namespaces aio-node2 and
aio-node3, the veths aio-node2-u and aio-node3-u, the host OVS bridge
aio-underlay with 10.250.0.1/24, and, inside the nodes, a test bridge with
a Geneve port and a veth into a container of each node's own dockerd
(192.168.77.K/24). Nothing is routed out; nothing is pulled (the image is
novadocker.rootfs's busybox tarball, imported into each node's engine).
"""

import os
import re
import shutil
import subprocess
import tempfile
import time

import docker
import fixtures
import testtools

from ndtools import host
from ndtools import node
from novadocker import rootfs
from tests.fixtures.commands import run
from tests.fixtures import docker as docker_fixtures
from tests.fixtures import host as host_fixtures


def value(argv, flag):
    return argv[argv.index(flag) + 1]


class NodeCommandsTest(testtools.TestCase):
    """Each node's daemons use the node's files only, never the host's."""

    def setUp(self):
        super().setUp()
        self.node = node.Node(2, base_dir='/srv/nodes')

    def test_names_and_addresses(self):
        self.assertEqual('aio-node2', self.node.netns)
        self.assertEqual('aio-node2-u', self.node.host_link)
        self.assertEqual('10.250.0.2', self.node.address)
        self.assertEqual('/srv/nodes/node2', self.node.dir)
        # Link names are at most 15 characters (IFNAMSIZ - 1).
        self.assertLessEqual(len(node.Node(254).host_link), 15)
        self.assertLessEqual(len(node.UNDERLAY_BRIDGE), 15)
        for number in (0, 1, 255):
            self.assertRaises(ValueError, node.Node, number)

    def test_default_base_dir_is_under_the_aio_dir(self):
        self.useFixture(
            fixtures.EnvironmentVariable('AIO_DIR', '/x/aio'))
        self.assertEqual('/x/aio/nodes/node3', node.Node(3).dir)

    def test_ovs_runs_in_the_namespace_on_the_nodes_files(self):
        n = self.node
        for argv in (n.ovsdb_argv(), n.vswitchd_argv()):
            self.assertEqual(['ip', 'netns', 'exec', 'aio-node2', 'env'],
                             argv[:5])
            self.assertIn('OVS_RUNDIR=/srv/nodes/node2/run/ovs', argv)
            self.assertNotIn('--mlockall', argv)
            self.assertNotIn('--detach', argv)
            self.assertNotIn('/var/run/openvswitch', ' '.join(argv))
            self.assertNotIn('/etc/openvswitch', ' '.join(argv))
        self.assertIn('/srv/nodes/node2/data/ovs/conf.db', n.ovsdb_argv())
        self.assertIn('--remote=punix:/srv/nodes/node2/run/ovs/db.sock',
                      n.ovsdb_argv())
        self.assertIn('unix:/srv/nodes/node2/run/ovs/db.sock',
                      n.vswitchd_argv())
        self.assertIn('--db=unix:/srv/nodes/node2/run/ovs/db.sock',
                      n.vsctl_argv('show'))
        self.assertEqual('/srv/nodes/node2/run/ovs/ovs-vswitchd.ctl',
                         value(n.appctl_argv('version'), '-t'))

    def test_dockerd_is_private_and_in_the_nodes_network(self):
        argv = self.node.dockerd_argv()
        # Only the network namespace: the host's mounts (cgroups).
        self.assertEqual(['nsenter', '--net=/run/netns/aio-node2',
                          'dockerd'], argv[:3])
        joined = ' '.join(argv)
        self.assertNotIn('/var/run/docker.sock', joined)
        self.assertNotIn('/var/lib/docker', joined)
        self.assertEqual('unix:///srv/nodes/node2/run/docker.sock',
                         value(argv, '--host'))
        self.assertEqual('/srv/nodes/node2/data/docker',
                         value(argv, '--data-root'))
        self.assertEqual('/srv/nodes/node2/run/docker-exec',
                         value(argv, '--exec-root'))
        self.assertEqual(self.node.containerd_socket,
                         value(argv, '--containerd'))
        self.assertEqual('none', value(argv, '--bridge'))
        # Its data root is a btrfs file with quotas (root_gb a limit).
        self.assertEqual('btrfs', value(argv, '--storage-driver'))
        self.assertEqual('/srv/nodes/node2/docker.btrfs',
                         self.node.docker_btrfs)
        for flag in ('--iptables=false', '--ip-masq=false', '--live-restore',
                     '--userland-proxy=false'):
            self.assertIn(flag, argv)
        self.assertEqual(['nsenter', '--net=/run/netns/aio-node2',
                          'containerd', '--config',
                          '/srv/nodes/node2/run/containerd.toml'],
                         self.node.containerd_argv())

    def test_containerd_keeps_its_state_in_the_node(self):
        config = self.node.containerd_config()
        self.assertIn('root = "/srv/nodes/node2/data/containerd"', config)
        self.assertIn('state = "/srv/nodes/node2/run/containerd"', config)
        self.assertIn('address = "/srv/nodes/node2/run/containerd.sock"',
                      config)

    def test_unix_sockets_fit_under_the_default_dir(self):
        n = node.Node(254)
        for path in (n.docker_socket, n.containerd_socket, n.ovs_socket,
                     n.ctl('ovs-vswitchd')):
            self.assertLess(len(path), 100, path)

    def test_mounts_under_deepest_first_not_siblings(self):
        path = self.useFixture(
            fixtures.TempDir()).join('mountinfo')
        with open(path, 'w') as f:
            for point in ('/srv/nodes/node2/data/docker',
                          '/srv/nodes/node22/data/docker',
                          '/srv/nodes/node2/run/docker-exec/netns/a\\040b',
                          '/srv/nodes/node2', '/proc'):
                f.write('60 27 254:0 / %s rw - ext4 /dev/vda rw\n' % point)
        self.assertEqual(['/srv/nodes/node2/run/docker-exec/netns/a b',
                          '/srv/nodes/node2/data/docker',
                          '/srv/nodes/node2'],
                         node.mounts_under('/srv/nodes/node2/', path))

    def test_leftovers_are_the_nodes_daemons_not_a_log_reader(self):
        marker = '/srv/nodes/node2/'
        for cmdline in ('dockerd --host unix:///srv/nodes/node2/run/d.sock',
                        '/usr/bin/containerd-shim-runc-v2 -namespace moby '
                        '-address /srv/nodes/node2/run/containerd.sock',
                        'ovs-vswitchd unix:/srv/nodes/node2/run/ovs/db.sock'):
            self.assertTrue(node.is_node_daemon(cmdline, marker), cmdline)
        for cmdline in ('tail -f /srv/nodes/node2/logs/dockerd.out',
                        'dockerd --host unix:///srv/nodes/node22/run/d.sock',
                        'dockerd'):
            self.assertFalse(node.is_node_daemon(cmdline, marker), cmdline)

    def test_descendants_of_leftovers(self):
        table = {10: (1, 'net:[1]', 'shim'), 11: (10, 'net:[2]', 'sleep'),
                 12: (11, 'net:[2]', 'sh'), 13: (1, 'net:[1]', 'other')}
        self.assertEqual({10, 11, 12}, node.with_descendants([10], table))

    def test_unexplained_differences_are_ours_or_unknown(self):
        before = {'lo', 'br-int', 'br-int:tap1'}
        after = {'lo', 'br-int', 'kvt-underlay', 'kvt-underlay:aio-kvm250-u',
                 'aio-kvm250-u', 'tapabc', 'aio-node2-u', 'stranger0',
                 'ndst1234abcd', 'br-nd0123456789', 'ndbr1a2b:ndo3c4d',
                 'ovs-netdev'}
        # The KVM node test's underlay and veth, instance taps, the
        # functional and unit tests' devices and bridges and OVS's datapath
        # device, made by tests beside this one, are theirs; node and
        # unknown names count.
        self.assertEqual(['aio-node2-u', 'br-int:tap1', 'stranger0'],
                         unexplained(before, after))
        self.assertEqual(['aio-node2-u'],
                         unexplained(before, after, strict=False))


# -- the real thing -----------------------------------------------------------

NUMBERS = (2, 3)
TENANT_NET = '192.168.77'
IMAGE = 'aio-node-test/busybox:latest'
LOCK_FILE = '/tmp/nova-docker-aio-node-test.lock'
# Links, OVS bridges and ports that tests running beside this one make and
# remove meanwhile: a difference in those is theirs, not ours. Instance
# ports and bridges (tap, qbr, qvb, qvo), Docker's veths, the functional
# and unit tests' bridges, ports and stand-in devices (nd*: ndbr, ndo,
# ndst; br-nd*), the KVM node test's and the all-in-one KVM node's
# underlay (kvt-underlay, aio-kvmN-u), and OVS's own ovs-netdev, made and
# removed with the first and last userspace bridge of any test.
FOREIGN = re.compile(
    r'(tap|qbr|qvb|qvo|nd|br-nd|veth|kvt-|aio-kvm|vmt-)[0-9A-Za-z_-]*\Z'
    r'|ovs-netdev\Z')
OURS = re.compile(r'aio-node|aio-underlay|br-phy|br-test|gnv|tnt|tin|ul0')


def host_snapshot() -> dict:
    """The host's links, OVS bridges and ports, and namespaces."""
    links = set()
    for line in subprocess.run(['ip', '-o', 'link'], stdout=subprocess.PIPE,
                               text=True, check=True).stdout.splitlines():
        links.add(line.split(':', 2)[1].strip().split('@')[0])
    ovs = set()
    for bridge in subprocess.run(['ovs-vsctl', '--timeout=30', 'list-br'],
                                 stdout=subprocess.PIPE, text=True,
                                 check=True).stdout.split():
        ovs.add(bridge)
        ovs.update('%s:%s' % (bridge, port) for port in subprocess.run(
            ['ovs-vsctl', '--timeout=30', 'list-ports', bridge],
            stdout=subprocess.PIPE, text=True).stdout.split())
    netns = {line.split()[0] for line in subprocess.run(
        ['ip', 'netns', 'list'], stdout=subprocess.PIPE,
        text=True).stdout.splitlines() if line.strip()}
    return {'links': links, 'ovs': ovs, 'netns': netns}


def unexplained(before: set, after: set, strict: bool = True) -> list:
    """Differences that are ours, or (``strict``) not another run's
    instance ports or bridges."""
    return sorted(name for name in before ^ after
                  if OURS.search(name) or strict and not all(
                      FOREIGN.match(part) for part in name.split(':')))


def daemon_usage(pids: dict, seconds: float) -> str:
    """RSS now and CPU over ``seconds`` of each daemon, and the total."""
    tick = os.sysconf('SC_CLK_TCK')

    def cpu(pid):
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return int(fields[11]) + int(fields[12])   # utime + stime

    def rss_kb(pid):
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
        return 0
    start = {name: cpu(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    lines, total_rss, total_cpu = [], 0, 0.0
    for name, pid in pids.items():
        rss = rss_kb(pid)
        percent = 100.0 * (cpu(pid) - start[name]) / tick / seconds
        total_rss += rss
        total_cpu += percent
        lines.append('  %-13s pid %-7d RSS %7.1f MiB  CPU %5.2f %%'
                     % (name, pid, rss / 1024.0, percent))
    lines.append('  %-13s             RSS %7.1f MiB  CPU %5.2f %%'
                 % ('total', total_rss / 1024.0, total_cpu))
    return '\n'.join(lines)


class TwoNodesTest(testtools.TestCase):
    """Nodes 2 and 3 up for real: their engines run containers, their
    userspace OVS carry a Geneve tunnel, and down leaves nothing."""

    def require(self):
        host_fixtures.require(
            self, commands=('ip', 'nsenter', 'ovsdb-tool', 'ovsdb-server',
                            'ovs-vswitchd', 'ovs-vsctl', 'ovs-appctl',
                            'containerd', 'dockerd', 'docker'),
            paths=(node.OVS_SCHEMA, rootfs.BUSYBOX), host_ovs=True)
        # Someone else's nodes (a tools/aio with --nodes) must not be
        # taken over or torn down by this test.
        for number in NUMBERS:
            self.assertFalse(os.path.exists('/run/netns/aio-node%d' % number),
                             'aio-node%d exists already: not ours' % number)
        self.assertFalse(node.Underlay().exists(),
                         '%s exists already: not ours' % node.UNDERLAY_BRIDGE)

    def setUp(self):
        super().setUp()
        # The node numbers and aio-underlay are one per host: this class's
        # tests, run by parallel workers, take turns.
        self.useFixture(host_fixtures.HostLock(LOCK_FILE))
        self.require()
        self.base = tempfile.mkdtemp(prefix='aio-nodes-', dir='/var/tmp')
        self.addCleanup(shutil.rmtree, self.base, ignore_errors=True)
        self.before = host_snapshot()
        self.nodes = {}
        for number in NUMBERS:
            n = node.Node(number, base_dir=self.base)
            # Whatever happens below, nothing stays.
            self.addCleanup(n.clean)
            self.nodes[number] = n

    def api(self, number) -> docker.APIClient:
        return docker.APIClient(base_url=self.nodes[number].docker_host,
                                version='auto', timeout=120)

    def test_two_nodes(self):
        for number, n in self.nodes.items():
            n.up()
            self.assertEqual({k: True for k in n.status()}, n.status())
        # up again: it uses what runs, starts nothing twice.
        pids = {d: self.nodes[2].state.pid(d) for d in node.DAEMONS}
        self.nodes[2].up()
        self.assertEqual(pids, {d: self.nodes[2].state.pid(d)
                                for d in node.DAEMONS})
        self.check_daemons_in_their_namespaces()
        self.measure_idle_node(self.nodes[2])
        self.check_underlay()
        containers = {number: self.run_container(number)
                      for number in NUMBERS}
        self.check_geneve(containers)
        for n in self.nodes.values():
            n.down()
            n.down()   # idempotent
        self.check_nothing_left()

    def test_down_after_a_partial_up(self):
        """up stopped after OVS (dockerd never started): down still
        leaves nothing."""
        n = self.nodes[2]
        n.up_to_ovs()
        self.assertEqual({'netns': True, 'veth': True, 'ovsdb-server': True,
                          'ovs-vswitchd': True, 'underlay-ip': True,
                          'dockerd': False}, n.status())
        self.assertFalse(n.ok())
        n.down()
        self.check_nothing_left()

    # -- (a) each node's engine ----------------------------------------------

    def check_daemons_in_their_namespaces(self):
        for n in self.nodes.values():
            inode = os.stat(n.netns_path).st_ino
            for daemon in node.DAEMONS:
                pid = n.state.pid(daemon)
                self.assertTrue(host.pid_alive(pid), daemon)
                self.assertEqual('net:[%d]' % inode,
                                 os.readlink('/proc/%d/ns/net' % pid),
                                 '%s of %s' % (daemon, n.name))
                self.assertIn(n.dir, open('/proc/%d/cmdline' % pid).read())

    def measure_idle_node(self, n):
        """The figures of one idle node (no containers, no tunnel yet)."""
        pids = {daemon: n.state.pid(daemon) for daemon in node.DAEMONS}
        print('idle %s (no containers), over 30 s:\n%s'
              % (n.name, daemon_usage(pids, 30)), flush=True)

    def run_container(self, number) -> str:
        """The busybox image imported (never pulled) and a container of
        it, network none, on node ``number``'s own engine."""
        api = self.api(number)
        repository, tag = IMAGE.rsplit(':', 1)
        api.import_image_from_data(
            rootfs.busybox_rootfs(rootfs.BUSYBOX), repository=repository,
            tag=tag, changes=['CMD ["/bin/sleep", "2147483647"]'])
        container = api.create_container(
            IMAGE, name='aio-node-test-%d' % number,
            host_config=api.create_host_config(network_mode='none'))['Id']
        api.start(container)
        out = docker_fixtures.exec_in(api, container, 'echo',
                                      'hello from node %d' % number).output
        self.assertEqual('hello from node %d' % number, out.strip())
        # The engine is the node's: the host's engine has no such
        # container.
        names = [c['Names'][0] for c in api.containers()]
        self.assertEqual(['/aio-node-test-%d' % number], names)
        return container

    # -- (b) Geneve between the two nodes' userspace OVS --------------------

    def check_underlay(self):
        n2, n3 = self.nodes[2], self.nodes[3]
        for n in (n2, n3):
            routes = n.appctl('ovs/route/show')
            print('%s ovs/route/show:\n%s' % (n.name, routes), flush=True)
            self.assertIn('10.250.0.0/24 dev br-phy SRC %s' % n.address,
                          routes)
        # The host's userspace OVS routes the underlay out of
        # aio-underlay: the host can be a Geneve end too (OVN, later).
        routes = run('ovs-appctl', '--timeout=30', 'ovs/route/show')
        self.assertIn('10.250.0.0/24 dev %s SRC %s' % (
            node.UNDERLAY_BRIDGE, node.UNDERLAY_HOST_IP), routes)
        # The nodes' kernels reach each other and the host over br-phy.
        for target in (n3.address, node.UNDERLAY_HOST_IP):
            self.assertTrue(host.wait_for(host.succeeds(*n2.in_netns(
                'ping', '-c', '1', '-W', '2', target)), 60),
                'node 2 cannot ping %s on the underlay' % target)

    def plug_tenant(self, number, container, peer) -> None:
        """br-test (netdev) with a Geneve port to the other node and a
        veth into the container, which gets 192.168.77.K/24."""
        n = self.nodes[number]
        n.vsctl('add-br', 'br-test', '--', 'set', 'bridge', 'br-test',
                'datapath_type=netdev', '--', 'add-port', 'br-test', 'gnv0',
                '--', 'set', 'interface', 'gnv0', 'type=geneve',
                'options:remote_ip=%s' % peer.address)
        pid = self.api(number).inspect_container(container)['State']['Pid']
        n.ip('link', 'add', 'tnt0', 'type', 'veth', 'peer', 'name', 'tin0')
        n.ip('link', 'set', 'tin0', 'netns', str(pid))
        inside = ['nsenter', '-t', str(pid), '-n', 'ip']
        run(*inside, 'link', 'set', 'tin0', 'mtu', '1400', 'up')
        run(*inside, 'addr', 'add', '%s.%d/24' % (TENANT_NET, number), 'dev',
            'tin0')
        n.ip('link', 'set', 'tnt0', 'up')
        n.vsctl('add-port', 'br-test', 'tnt0')

    def geneve_stats(self, n) -> dict:
        out = n.vsctl('get', 'interface', 'gnv0', 'statistics')
        return {k: int(v) for k, v in re.findall(r'(\w+)=(\d+)', out)}

    def check_geneve(self, containers):
        n2, n3 = self.nodes[2], self.nodes[3]
        self.plug_tenant(2, containers[2], n3)
        self.plug_tenant(3, containers[3], n2)
        api2 = self.api(2)
        target = '%s.3' % TENANT_NET

        def pings() -> bool:
            return docker_fixtures.exec_in(
                api2, containers[2], 'ping', '-c', '1', '-W', '2', target,
                check=False).exit_code == 0
        # The first packets go while OVS resolves the peer's MAC.
        self.assertTrue(host.wait_for(pings, 120),
                        'no ping from %s.2 to %s over Geneve in 120 s'
                        % (TENANT_NET, target))
        out = docker_fixtures.exec_in(api2, containers[2], 'ping', '-c', '5',
                                      '-W', '5', target).output
        print(out, flush=True)
        self.assertIn('bytes from %s' % target, out)
        flows2 = n2.appctl('dpctl/dump-flows')
        flows3 = n3.appctl('dpctl/dump-flows')
        # Fresh ports: any count is this test's traffic. ovs-vswitchd
        # writes interface statistics to its database every 5 s.
        for n in (n2, n3):
            def counted(n=n) -> bool:
                stats = self.geneve_stats(n)
                return stats.get('tx_packets', 0) > 0 and stats.get(
                    'rx_packets', 0) > 0
            host.wait_for(counted, 60)
            stats = self.geneve_stats(n)
            print('%s gnv0 statistics: %s' % (n.name, stats), flush=True)
            self.assertTrue(counted(), '%s gnv0 sent or received nothing: %s'
                            % (n.name, stats))
        self.check_tcp(containers)
        neigh = n2.appctl('tnl/neigh/show')
        print('%s tnl/neigh/show:\n%s\n%s tnl/ports/show:\n%s\n'
              '%s datapath flows:\n%s\n%s datapath flows:\n%s' % (
                  n2.name, neigh, n2.name, n2.appctl('tnl/ports/show'),
                  n2.name, flows2, n3.name, flows3), flush=True)
        self.assertRegex(neigh, r'%s\s+\S+\s+br-phy'
                         % re.escape(n3.address))
        self.assertIn('tnl_push(', flows2)
        self.assertIn('dst=%s' % n3.address, flows2)
        self.assertIn('tnl_pop(', flows3)

    def check_tcp(self, containers):
        """TCP over the tunnel, once the containers' kernels fill in TX
        checksums (as the driver has instances do: a userspace datapath
        forwards a veth's partial checksums as they are, and the receiver
        drops the segment; ping works either way)."""
        for number, container in containers.items():
            pid = self.api(number).inspect_container(container)['State'][
                'Pid']
            run('nsenter', '-t', str(pid), '-n',
                *host_fixtures.checksums_in_software_argv('tin0'))
        api2, api3 = self.api(2), self.api(3)
        target = '%s.3' % TENANT_NET

        ports = iter(range(5000, 6000))

        def sent() -> bool:
            # A new port each try: a listener of a failed try stays.
            port = next(ports)
            listen = api3.exec_create(containers[3], [
                'sh', '-c', 'nc -l -p %d > /tmp/got-%d' % (port, port)])
            api3.exec_start(listen, detach=True)
            time.sleep(1)
            docker_fixtures.exec_in(
                api2, containers[2], 'sh', '-c',
                'echo hello-over-geneve | nc -w 5 %s %d' % (target, port),
                check=False)
            got = docker_fixtures.exec_in(api3, containers[3], 'cat',
                                          '/tmp/got-%d' % port,
                                          check=False).output
            return 'hello-over-geneve' in got
        self.assertTrue(host.wait_for(sent, 120, interval=2),
                        'no TCP from %s.2 to %s over Geneve'
                        % (TENANT_NET, target))

    # -- (c) down leaves nothing ---------------------------------------------

    def check_nothing_left(self):
        after = host_snapshot()
        for n in self.nodes.values():
            self.assertEqual({'netns': False, 'veth': False,
                              'ovsdb-server': False, 'ovs-vswitchd': False,
                              'underlay-ip': False, 'dockerd': False},
                             n.status())
            self.assertEqual(set(), n.leftover_pids(), n.name)
        self.assertEqual([], node.mounts_under(self.base))
        self.assertEqual([], [
            pid for pid, (_, _, cmdline) in node.processes().items()
            if self.base in cmdline])
        self.assertFalse(node.Underlay().exists())
        self.assertEqual('', run('ip', 'route', 'show', '10.250.0.0/24'))
        self.assertEqual([], [ns for ns in after['netns']
                              if ns.startswith('aio-node')])
        for kind in ('links', 'ovs', 'netns'):
            foreign = sorted(self.before[kind] ^ after[kind])
            if foreign:
                print('%s changed by others meanwhile: %s'
                      % (kind, foreign), flush=True)
            # Named namespaces of other runs may have any name.
            self.assertEqual([], unexplained(
                self.before[kind], after[kind], strict=kind != 'netns'),
                kind)
