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

"""Plugging through real privsep daemons, as nova-compute runs them, and
what the privileged side refuses, on real namespaces and devices.

The other networking tests run the privileged functions in-process (as
nova's test fixtures require); these also start real ``privsep-helper``
daemons, which drop every capability but those their context lists, and
prove those are enough: CAP_NET_ADMIN + CAP_SYS_ADMIN for nova-docker's
netlink/setns work, CAP_NET_ADMIN for os-vif's. The refusals are checked
both ways: in-process, and inside a real daemon (so the checks are on the
privileged side, whatever the caller sends).
"""

import json
import os
import subprocess
import sys
import uuid

import fixtures
from nova import exception
from oslo_config import fixture as config_fixture
import testtools

import novadocker
from novadocker import conf
from novadocker.virt.docker import linux_net
from novadocker.virt.docker import privsep as nd_privsep
from tests.fixtures import docker as docker_fixtures
from tests.fixtures import network as net_fixtures
from tests.functional import test_network
from vif_plug_ovs import privsep as os_vif_privsep

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


def helper_path() -> str:
    return os.path.join(os.path.dirname(sys.executable), 'privsep-helper')


def daemon_pid(context) -> int:
    """PID of the privsep daemon serving this process's context: the one
    started with its channel's socket path (unique per client), so other
    test processes' daemons do not count. (It daemonizes: not our child.)"""
    sock_path = context.channel.writer.writesock.getsockname()
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as cmdline:
                args = cmdline.read().split(b'\0')
        except OSError:
            continue
        if helper_path().encode() in args and \
                context.pypath.encode() in args and \
                sock_path.encode() in args:
            found.append(int(pid))
    if len(found) != 1:
        raise AssertionError('privsep daemons of %s: %s'
                             % (context.pypath, found))
    return found[0]


class RealPrivsepDaemons(fixtures.Fixture):
    """Both contexts through real privsep-helper daemons of this tree."""

    def _setUp(self):
        cfg = self.useFixture(config_fixture.Config(conf.CONF))
        helper = helper_path()
        repo = os.path.dirname(os.path.dirname(novadocker.__file__))
        for context in net_fixtures.PrivsepInProcess.CONTEXTS:
            # Root already: no sudo/rootwrap in front, and the daemon
            # imports this tree's code.
            cfg.config(group=context.cfg_section,
                       helper_command='env PYTHONPATH=%s %s'
                       % (repo, helper))
            context.set_client_mode(True)
            self.addCleanup(context.stop)


class RealPrivsepDaemonTest(test_network.NetworkTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(RealPrivsepDaemons())

    def test_plug_attach_destroy_with_minimal_capabilities(self):
        port = self.ports.network(0)
        vif_a, vif_b, vif_c = port(), port(), port()
        a = self.spawn_on([vif_a])
        b = self.spawn_on([vif_b])
        self.assertPings(a, self.ip_of(vif_b))
        self.driver.attach_interface(self.context, b, None, vif_c)
        self.assertPings(a, self.ip_of(vif_c))

        ours = daemon_pid(nd_privsep.vif_plug)
        self.assertNotEqual(os.getpid(), ours)
        self.assertEqual((1 << CAP_NET_ADMIN) | (1 << CAP_SYS_ADMIN),
                         docker_fixtures.capabilities(ours))
        # Plain ports on a userspace-datapath bridge: one privileged call
        # each (ours), the OVS port one transaction; os-vif's privileged
        # side (its MTU set) was never asked, so its daemon never started.
        self.assertIsNone(os_vif_privsep.vif_plug.channel)

        # os-vif unplugs: its daemon deletes the port's device.
        self.driver.detach_interface(self.context, b, vif_c)
        os_vifs = daemon_pid(os_vif_privsep.vif_plug)
        # os-vif's holds NET_ADMIN (plus, in this release, DAC_OVERRIDE:
        # its test context shares the config section) and not SYS_ADMIN.
        os_vif_caps = docker_fixtures.capabilities(os_vifs)
        self.assertTrue(os_vif_caps & (1 << CAP_NET_ADMIN))
        self.assertFalse(os_vif_caps & (1 << CAP_SYS_ADMIN))
        self.driver.destroy(self.context, a, [vif_a])
        self.driver.destroy(self.context, b, [vif_b])
        self.assertEqual([], self.net_leaks.leftovers())
        self.assertEqual([], net_fixtures.bridge_ports(self.bridge))


class HostilePortTest(test_network.NetworkTestCase):
    """Through the driver: ports naming another host device, or carrying a
    value the privileged side refuses, fail the spawn before anything
    exists, and neither spawn nor destroy touches the named device."""

    def test_foreign_device_names_and_bad_values(self):
        port = self.ports.network(0)
        victim = host_bridge(self, 'br-nd')
        victim_index = open('/sys/class/net/%s/ifindex' % victim).read()
        bad_ports = []
        for devname in (victim, 'eth0', 'lo', 'tap/../' + victim[:6]):
            bad = port()
            bad['devname'] = devname
            bad_ports.append(bad)
        bad = port()
        bad['address'] = 'ff:ff:ff:ff:ff:ff'
        bad_ports.append(bad)
        bad_ports.append(self.ports.network(1, mtu=65536 + 1450)())
        for bad in bad_ports:
            image = self.add_image()
            instance = self.make_instance(image)
            error = self.assertRaises(
                exception.VirtualInterfaceCreateException,
                self.driver.spawn, self.context, instance, image, [], None,
                {}, network_info=[port(), bad])
            self.assertIn(bad['id'], str(error))
            self.assertIn('refused', str(error))
            # The clean-up nova-compute runs after a failed build.
            self.driver.destroy(self.context, instance, [bad])
            self.assertEqual([], self.leaks.leftovers())
            self.assertEqual([], self.net_leaks.leftovers())
            self.assertEqual([], net_fixtures.bridge_ports(self.bridge))
        self.assertEqual(victim_index,
                         open('/sys/class/net/%s/ifindex' % victim).read())


class CaplessProcess(fixtures.Fixture):
    """A sleeping process holding no capability (as the driver's sandbox
    does), in a network namespace of its own or in the host's."""

    def __init__(self, own_netns: bool = True):
        super().__init__()
        self.own_netns = own_netns

    def _setUp(self):
        argv = ['setpriv', '--bounding-set=-all', '--inh-caps=-all', '--',
                'sh', '-c', 'echo ready; exec sleep 600']
        if self.own_netns:
            argv = ['unshare', '--net'] + argv
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                        text=True)
        self.addCleanup(self.process.wait)
        self.addCleanup(self.process.kill)
        # Printed once the namespace exists and the capabilities are gone.
        if self.process.stdout.readline() != 'ready\n':
            raise AssertionError('namespace holder did not start')
        self.pid = self.process.pid

    def ip(self, *args: str):
        """``ip -j`` inside the namespace, read independently of the code
        under test."""
        out = subprocess.run(
            ['nsenter', '--net=/proc/%d/ns/net' % self.pid, 'ip', '-j']
            + list(args), check=True, capture_output=True, text=True).stdout
        return json.loads(out) if out.strip() else []

    def links(self) -> dict:
        return {link['ifname']: link for link in self.ip('link')}

    def offload_flags(self, ifname: str) -> dict:
        """ethtool's offload flags of a device inside the namespace."""
        out = subprocess.run(
            ['nsenter', '--net=/proc/%d/ns/net' % self.pid, sys.executable,
             '-c', 'import json, sys; from pyroute2.ethtool import ioctl; '
             'print(json.dumps(ioctl.IoctlEthtool(sys.argv[1])'
             '.get_offload_flags()))', ifname],
            check=True, capture_output=True, text=True).stdout
        return json.loads(out)


def host_bridge(test, prefix: str) -> str:
    """A Linux bridge on the host that is not a port's device (br-int,
    docker0 or a qbr stand-in); the test removes it."""
    name = prefix + uuid.uuid4().hex[:14 - len(prefix)]
    subprocess.run(['ip', 'link', 'add', name, 'type', 'bridge'],
                   check=True)
    test.addCleanup(subprocess.run, ['ip', 'link', 'del', name],
                    capture_output=True)
    return name


class _PrivilegedSideTests:
    """Run in-process and through a real daemon (the subclasses)."""

    def setUp(self):
        super().setUp()
        docker_fixtures.require_functional(self)
        self.useFixture(self.privsep_mode())
        self.sandbox = self.useFixture(CaplessProcess())
        port_id = str(uuid.uuid4())
        self.tap = ('tap' + port_id)[:linux_net.NIC_NAME_LEN]
        self.addCleanup(subprocess.run, ['ip', 'link', 'del', self.tap],
                        capture_output=True)
        self.mac = 'fa:16:3e:%02x:%02x:%02x' % tuple(uuid.uuid4().bytes[:3])

    def spec(self, **changes) -> dict:
        spec = {'host_dev': self.tap, 'mac': self.mac, 'mtu': 1400,
                'ifname': 'eth0', 'master': None,
                'addresses': [['10.252.0.5', 24], ['fd00:252::5', 64]],
                'routes': [{'dst': '0.0.0.0/0', 'gateway': '10.252.0.1',
                            'if_missing': False},
                           {'dst': '172.31.0.0/16',
                            'gateway': '10.252.0.254', 'if_missing': False},
                           {'dst': '::/0', 'gateway': 'fd00:252::1',
                            'if_missing': False}]}
        spec.update(changes)
        return spec

    def assertRefused(self, func, *args):
        error = self.assertRaises(linux_net.InvalidArgument, func, *args)
        self.assertIn('refused', str(error))

    def test_plug_and_unplug(self):
        self.assertEqual('eth0',
                         linux_net.plug_veth(self.sandbox.pid, self.spec()))
        self.assertEqual(1400, net_fixtures.link_mtu(self.tap))
        inside = self.sandbox.links()['eth0']
        self.assertEqual(self.mac, inside['address'])
        self.assertEqual(1400, inside['mtu'])
        self.assertIn('UP', inside['flags'])
        addresses = {'%s/%d' % (a['local'], a['prefixlen'])
                     for a in self.sandbox.ip('addr', 'show', 'dev', 'eth0')
                     [0]['addr_info'] if a.get('scope') == 'global'}
        self.assertEqual({'10.252.0.5/24', 'fd00:252::5/64'}, addresses)
        routes = {(r['dst'], r.get('gateway'))
                  for r in self.sandbox.ip('route')
                  + self.sandbox.ip('-6', 'route')}
        self.assertTrue({('default', '10.252.0.1'),
                         ('172.31.0.0/16', '10.252.0.254'),
                         ('default', 'fd00:252::1')} <= routes, routes)
        # A correct pair is found, and kept by a second plug.
        index = inside['ifindex']
        self.assertEqual('eth0', linux_net.find_peer(
            self.sandbox.pid, self.tap, self.mac))
        self.assertEqual('eth0',
                         linux_net.plug_veth(self.sandbox.pid, self.spec()))
        self.assertEqual(index, self.sandbox.links()['eth0']['ifindex'])

        self.assertTrue(linux_net.delete_link(self.tap))
        self.assertFalse(net_fixtures.link_exists(self.tap))
        self.assertEqual(['lo'], list(self.sandbox.links()))
        self.assertFalse(linux_net.delete_link(self.tap))
        self.assertIsNone(linux_net.find_peer(self.sandbox.pid, self.tap,
                                              self.mac))

    def test_tx_checksums_filled_in_inside(self):
        # OVS's userspace datapath forwards frames as they are: a partial
        # TCP checksum would reach the receiver unfilled (SSH fails).
        linux_net.plug_veth(self.sandbox.pid, self.spec())
        flags = self.sandbox.offload_flags('eth0')
        self.assertFalse(flags['tx-checksumming'])
        self.assertFalse(flags['tcp-segmentation-offload'])

    def test_foreign_devices_are_untouched(self):
        """What a caller could name instead of a port's tap: a host bridge
        (br-int's stand-in), a qbr, a veth pair of os-vif's names. The old
        plug_veth deleted such a 'stale' host device."""
        foreign = [host_bridge(self, 'br-nd'), host_bridge(self, 'qbr')]
        qvb = 'qvb' + uuid.uuid4().hex[:11]
        qvo = 'qvo' + qvb[3:]
        subprocess.run(['ip', 'link', 'add', qvb, 'type', 'veth', 'peer',
                        'name', qvo], check=True)
        self.addCleanup(subprocess.run, ['ip', 'link', 'del', qvb],
                        capture_output=True)
        foreign += [qvb, qvo]
        before = {name: open('/sys/class/net/%s/ifindex' % name).read()
                  for name in foreign}
        for name in foreign:
            self.assertRefused(linux_net.delete_link, name)
            self.assertRefused(linux_net.privileged_plug_veth,
                               self.sandbox.pid, self.spec(host_dev=name))
            self.assertRefused(linux_net.privileged_find_peer,
                               self.sandbox.pid, name, self.mac)
        # Enslaving the tap to a bridge that is not a qbr.
        self.assertRefused(linux_net.privileged_plug_veth, self.sandbox.pid,
                           self.spec(master=foreign[0]))
        self.assertEqual(before, {
            name: open('/sys/class/net/%s/ifindex' % name).read()
            for name in foreign})
        self.assertIsNone(net_fixtures.link_master(qvb))
        self.assertEqual(['lo'], list(self.sandbox.links()))
        self.assertFalse(net_fixtures.link_exists(self.tap))

    def host_namespace_pids(self):
        """Processes of the host's namespace this mode's privileged side
        can open (a real daemon lacks CAP_SYS_PTRACE: not one holding more
        capabilities than it)."""
        return [1, self.useFixture(CaplessProcess(own_netns=False)).pid]

    @staticmethod
    def host_eths():
        # (Only ethN: other tests add and remove other host devices.)
        return {name for name in os.listdir('/sys/class/net')
                if linux_net.INSIDE_RE.match(name)}

    def test_host_namespace_is_refused(self):
        host_eths = self.host_eths()
        # No addresses or routes: were the check ever broken, this test
        # must not replace the host's default route on its way to failing.
        harmless = self.spec(addresses=[], routes=[])
        for pid in self.host_namespace_pids():
            self.assertRefused(linux_net.privileged_plug_veth, pid, harmless)
            self.assertRefused(linux_net.privileged_find_peer, pid,
                               self.tap, self.mac)
            self.assertRefused(linux_net.plug_veth, pid, harmless)
        self.assertFalse(net_fixtures.link_exists(self.tap))
        self.assertEqual(host_eths, self.host_eths())

    def test_bad_values_are_refused_and_leave_nothing(self):
        for spec in (self.spec(mac='ff:ff:ff:ff:ff:ff'), self.spec(mtu=60),
                     self.spec(mtu=65536), self.spec(ifname='lo'),
                     self.spec(addresses=[['10.252.0.5', 33]]),
                     self.spec(routes=[{'dst': '0.0.0.0/0',
                                        'gateway': 'fd00:252::1'}])):
            self.assertRefused(linux_net.privileged_plug_veth,
                               self.sandbox.pid, spec)
        self.assertFalse(net_fixtures.link_exists(self.tap))
        self.assertEqual(['lo'], list(self.sandbox.links()))


class InProcessPrivilegedSideTest(_PrivilegedSideTests, testtools.TestCase):

    @staticmethod
    def privsep_mode():
        return net_fixtures.PrivsepInProcess()

    def host_namespace_pids(self):
        return super().host_namespace_pids() + [os.getpid()]


class DaemonPrivilegedSideTest(_PrivilegedSideTests, testtools.TestCase):

    @staticmethod
    def privsep_mode():
        return RealPrivsepDaemons()

    def host_namespace_pids(self):
        # The daemon itself: its own namespace is the host's.
        self.assertIsNone(linux_net.privileged_find_peer(
            self.sandbox.pid, self.tap, self.mac))    # starts it
        return super().host_namespace_pids() + [
            daemon_pid(nd_privsep.vif_plug)]
