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

"""Neutron ports in real containers on a real Open vSwitch bridge.

Each test gets its own userspace-datapath bridge (no uplink) and builds
network_info with nova's network model as Neutron would (VIF type ovs,
bridge = the test bridge). What the tests check is read independently of
the driver: ``ovs-vsctl``, ``/sys/class/net`` and commands run inside the
workload container (busybox ``ip``, ``ping``).
"""

import copy
import ipaddress
import re
import subprocess
import threading
from unittest import mock

from nova.compute import power_state
from nova import exception
from nova.network import model as network_model
import os_vif

from novadocker.virt.docker import guest
from tests.fixtures import network as net_fixtures
from tests.functional import base


class NetworkTestCase(base.DriverTestCase):
    NEEDS_OVS = True

    def setUp(self):
        super().setUp()
        self.bridge = self.useFixture(net_fixtures.OVSBridge()).name
        self.ports = net_fixtures.Ports(self.bridge)
        self.net_leaks = self.useFixture(
            net_fixtures.NetworkLeakCheck(self.ports.ids))
        self.useFixture(net_fixtures.PrivsepInProcess())

    # -- reading the container ---------------------------------------------

    def ip_of(self, vif, version=4) -> str:
        return [ip['address'] for ip in vif.fixed_ips()
                if ip['version'] == version][0]

    def links(self, instance) -> dict:
        """ifname -> {'mac', 'mtu', 'up'} as busybox ip sees it inside."""
        out = self.exec_in(instance, 'ip', '-o', 'link')
        found = {}
        for line in out.splitlines():
            match = re.match(r'\d+: ([^:@]+)[@:].*<([^>]*)>.*mtu (\d+).*'
                             r'link/\w+ ([0-9a-f:]+)', line)
            if match:
                found[match.group(1)] = {
                    'flags': match.group(2).split(','),
                    'mtu': int(match.group(3)), 'mac': match.group(4)}
        return found

    def addresses(self, instance, ifname) -> set:
        out = self.exec_in(instance, 'ip', '-o', 'addr', 'show', 'dev',
                           ifname)
        return {m.group(1) for m in
                re.finditer(r'inet6? ([0-9a-f.:]+/\d+) .*scope global',
                            out)}

    def routes(self, instance, version=4) -> set:
        out = self.exec_in(instance, 'ip', '-%d' % version, 'route')
        return {' '.join(line.split()) for line in out.splitlines()}

    def assertPings(self, instance, address) -> None:
        command = 'ping6' if ':' in address else 'ping'
        self.exec_in(instance, command, '-c', '2', '-w', '10', address)

    def assertNoPing(self, instance, address) -> None:
        command = 'ping6' if ':' in address else 'ping'
        self.assertRaises(AssertionError, self.exec_in, instance, command,
                          '-c', '1', '-w', '2', address)

    def assertUnplugged(self, *vifs) -> None:
        for vif in vifs:
            for name in net_fixtures.device_names(vif['id']):
                self.assertFalse(net_fixtures.link_exists(name), name)
                self.assertIsNone(net_fixtures.port_bridge(name), name)

    def spawn_on(self, network_info, **kwargs):
        return self.spawn(network_info=network_info, **kwargs)


class PlugTest(NetworkTestCase):

    def test_two_instances_ping_each_other(self):
        port = self.ports.network(0)
        vif_a, vif_b = port(), port()
        a = self.spawn_on([vif_a])
        b = self.spawn_on([vif_b])
        self.assertPings(a, self.ip_of(vif_b))
        self.assertPings(b, self.ip_of(vif_a))
        self.assertPings(a, self.ip_of(vif_b, 6))
        # Both host ends are ports of the test bridge, nothing else is.
        self.assertEqual(sorted([vif_a['devname'], vif_b['devname']]),
                         sorted(net_fixtures.bridge_ports(self.bridge)))

    def test_ovs_port_carries_neutron_external_ids(self):
        vif = self.ports.network(0)()
        instance = self.spawn_on([vif])
        self.assertEqual(self.bridge, net_fixtures.port_bridge(vif['devname']))
        self.assertEqual({'iface-id': vif['id'], 'iface-status': 'active',
                          'attached-mac': vif['address'],
                          'vm-uuid': instance.uuid},
                         net_fixtures.interface_external_ids(vif['devname']))
        self.assertEqual(1450, net_fixtures.link_mtu(vif['devname']))

    def test_plain_port_is_the_port_os_vif_makes(self):
        """The driver's one-transaction add leaves the OVS records
        os-vif's own plug of the same port leaves."""
        vif = self.ports.network(0)()
        instance = self.spawn_on([vif])
        dev = vif['devname']

        def records():
            return (net_fixtures.port_bridge(dev),
                    net_fixtures.ovs_vsctl('get', 'Interface', dev,
                                           'external_ids', 'type', 'options',
                                           'mtu_request'),
                    net_fixtures.ovs_vsctl('get', 'Port', dev, 'tag',
                                           'vlan_mode', 'trunks', 'qos'),
                    net_fixtures.link_mtu(dev))
        ours = records()
        net_fixtures.ovs_vsctl('del-port', dev)
        obj, info = self.driver._vifs.os_vif_objects(instance, vif)
        os_vif.plug(obj, info)
        self.assertEqual(ours, records())

    def test_inside_matches_network_info(self):
        first = self.ports.network(0, mtu=1400,
                                   routes=[('10.252.0.0/16', '10.251.0.254')])
        second = self.ports.network(1, mtu=1300, dns=('10.251.1.53',))
        vif0, vif1 = first(), second()
        instance = self.spawn_on([vif0, vif1])

        links = self.links(instance)
        self.assertEqual({'lo', 'eth0', 'eth1'}, set(links))
        self.assertIn('UP', links['lo']['flags'])
        for ifname, vif, mtu in (('eth0', vif0, 1400), ('eth1', vif1, 1300)):
            self.assertEqual(vif['address'], links[ifname]['mac'])
            self.assertEqual(mtu, links[ifname]['mtu'])
            self.assertIn('UP', links[ifname]['flags'])
            self.assertEqual(mtu, net_fixtures.link_mtu(vif['devname']))
            want = set()
            for subnet in vif['network']['subnets']:
                prefix = ipaddress.ip_network(subnet['cidr']).prefixlen
                want |= {'%s/%d' % (ip['address'], prefix)
                         for ip in subnet['ips']}
            self.assertEqual(want, self.addresses(instance, ifname))

        v4 = self.routes(instance, 4)
        # Default route via the first port with a gateway only.
        self.assertIn('default via 10.251.0.1 dev eth0', v4)
        self.assertEqual(1, len([r for r in v4 if r.startswith('default')]))
        self.assertIn('10.252.0.0/16 via 10.251.0.254 dev eth0', v4)
        v6 = self.routes(instance, 6)
        self.assertEqual(
            1, len([r for r in v6 if r.startswith('default via fd00:251::1 '
                                                  'dev eth0')]), v6)
        self.assertFalse([r for r in v6 if r.startswith('default')
                          and 'eth1' in r], v6)

        resolv = self.exec_in(instance, 'cat', '/etc/resolv.conf')
        servers = re.findall(r'^nameserver (\S+)', resolv, re.M)
        self.assertEqual(['10.251.0.53', '10.251.1.53'], servers)

    def test_metadata_route_via_the_subnets_metadata_port(self):
        """169.254.169.254 via the DHCP/metadata port, as DHCP option 121
        would route it on a VM: on the first port with one only."""
        plain = self.ports.network(0)()
        first = self.ports.network(1, dhcp_server=2)()
        second = self.ports.network(2, dhcp_server=3)()
        instance = self.spawn_on([plain, first, second])
        v4 = self.routes(instance, 4)
        self.assertEqual(['169.254.169.254 via 10.251.1.2 dev eth1'],
                         [r for r in v4 if r.startswith('169.254.')])

    def test_hybrid_plug_builds_qbr_and_pings(self):
        port = self.ports.network(0)
        vif_a, vif_b = port(hybrid=True), port()
        self.useFixture(net_fixtures.HybridFirewall(vif_a['devname']))
        a = self.spawn_on([vif_a])
        b = self.spawn_on([vif_b])
        names = dict(zip(('tap', 'qbr', 'qvb', 'qvo'),
                         net_fixtures.device_names(vif_a['id'])))
        self.assertEqual(names['qbr'], net_fixtures.link_master(names['tap']))
        self.assertEqual(names['qbr'], net_fixtures.link_master(names['qvb']))
        self.assertEqual(self.bridge, net_fixtures.port_bridge(names['qvo']))
        self.assertIsNone(net_fixtures.port_bridge(names['tap']))
        self.assertEqual(vif_a['id'], net_fixtures.interface_external_ids(
            names['qvo'])['iface-id'])
        self.assertPings(a, self.ip_of(vif_b))
        self.assertPings(b, self.ip_of(vif_a))
        self.driver.destroy(self.context, a, [vif_a])
        self.assertUnplugged(vif_a)
        self.assertEqual([vif_b['devname']],
                         net_fixtures.bridge_ports(self.bridge))

    def test_destroy_leaves_nothing(self):
        vif = self.ports.network(0)()
        instance = self.spawn_on([vif])
        sandbox = self.driver._guests.get(
            instance, guest.ROLE_SANDBOX).sandbox_id
        self.driver.destroy(self.context, instance, [vif])
        self.assertEqual([], self.net_leaks.leftovers())
        self.assertEqual([], net_fixtures.bridge_ports(self.bridge))
        self.assertEqual([], self.api.containers(
            all=True, filters={'id': sandbox}))

    def test_plug_vifs_is_idempotent(self):
        vif = self.ports.network(0)()
        peer = self.ports.network(0)()
        instance = self.spawn_on([vif])
        other = self.spawn_on([peer])
        before = self.links(instance)['eth0']
        ifindex = open('/sys/class/net/%s/ifindex'
                       % vif['devname']).read()
        self.driver.plug_vifs(instance, [vif])
        # The same device, not a new one.
        self.assertEqual(ifindex, open('/sys/class/net/%s/ifindex'
                                       % vif['devname']).read())
        self.assertEqual(before, self.links(instance)['eth0'])
        self.assertPings(other, self.ip_of(vif))

    def test_stale_host_device_is_replaced(self):
        # A device of the port's name whose peer is not in the sandbox
        # (left by a crash, or a reused name) is replaced, not trusted.
        vif = self.ports.network(0)()
        peer = self.ports.network(0)()
        stale_peer = 'ndst%s' % vif['id'][:8]
        subprocess.run(['ip', 'link', 'add', vif['devname'], 'type', 'veth',
                        'peer', 'name', stale_peer], check=True)
        self.addCleanup(subprocess.run, ['ip', 'link', 'del', stale_peer],
                        capture_output=True)
        instance = self.spawn_on([vif])
        other = self.spawn_on([peer])
        self.assertFalse(net_fixtures.link_exists(stale_peer))
        self.assertPings(other, self.ip_of(vif))
        self.assertEqual(vif['address'], self.links(instance)['eth0']['mac'])

    def test_binding_switch_between_hybrid_and_native(self):
        # Neutron can rebind a port with the other firewall driver; a
        # re-plug (plug_vifs, reboot) must swap the layouts cleanly.
        port = self.ports.network(0)
        vif, peer = port(hybrid=True), port()
        self.useFixture(net_fixtures.HybridFirewall(vif['devname']))
        instance = self.spawn_on([vif])
        other = self.spawn_on([peer])
        tap, qbr, qvb, qvo = net_fixtures.device_names(vif['id'])
        self.assertEqual(qbr, net_fixtures.link_master(tap))

        native = copy.deepcopy(vif)
        for key in (network_model.VIF_DETAILS_OVS_HYBRID_PLUG,
                    network_model.VIF_DETAILS_PORT_FILTER):
            native['details'][key] = False
        self.driver.plug_vifs(instance, [native])
        self.assertEqual(self.bridge, net_fixtures.port_bridge(tap))
        for name in (qbr, qvb, qvo):
            self.assertFalse(net_fixtures.link_exists(name), name)
            self.assertIsNone(net_fixtures.port_bridge(name), name)
        self.assertPings(other, self.ip_of(vif))

        self.driver.plug_vifs(instance, [vif])
        self.assertIsNone(net_fixtures.port_bridge(tap))
        self.assertEqual(qbr, net_fixtures.link_master(tap))
        self.assertEqual(self.bridge, net_fixtures.port_bridge(qvo))
        self.assertPings(other, self.ip_of(vif))
        self.assertEqual(vif['address'], self.links(instance)['eth0']['mac'])


class BadInputTest(NetworkTestCase):

    def test_unsupported_vif_types_leave_nothing(self):
        port = self.ports.network(0)
        for vif_type in (network_model.VIF_TYPE_VHOSTUSER,
                         network_model.VIF_TYPE_HW_VEB, 'binding_failed'):
            good, bad = port(), port(vif_type=vif_type)
            image = self.add_image()
            instance = self.make_instance(image)
            error = self.assertRaises(
                exception.VirtualInterfaceCreateException,
                self.driver.spawn, self.context, instance, image, [], None,
                {}, network_info=[good, bad])
            self.assertIn(vif_type, str(error))
            self.assertIn(bad['id'], str(error))
            self.assertEqual([], self.leaks.leftovers())
            self.assertEqual([], self.net_leaks.leftovers())
            self.assertEqual([], net_fixtures.bridge_ports(self.bridge))

    def test_failed_plug_rolls_back(self):
        # The second port's host route points at a gateway outside its
        # subnet, which the kernel refuses: the spawn fails after the first
        # port was plugged, and nothing of either stays.
        good = self.ports.network(0)()
        bad = self.ports.network(
            1, routes=[('10.253.0.0/16', '192.0.2.1')])()
        image = self.add_image()
        self.leaks.forbid_images()
        instance = self.make_instance(image)
        self.assertRaises(exception.VirtualInterfacePlugException,
                          self.driver.spawn, self.context, instance, image,
                          [], None, {}, network_info=[good, bad])
        self.assertEqual([], self.leaks.leftovers())
        self.assertEqual([], self.net_leaks.leftovers())
        self.assertEqual([], net_fixtures.bridge_ports(self.bridge))


class SpawnOverlapTest(NetworkTestCase):
    """The workload is made while the ports are plugged: a failure of
    either, whenever the other ends, leaves nothing behind."""

    def test_plug_fails_before_the_workload_is_made(self):
        # Fault injection: the workload's creation waits until the plug
        # has failed (a gateway the kernel refuses), so it is created
        # after the failure: the clean-up must wait for it and remove it.
        good = self.ports.network(0)()
        bad = self.ports.network(
            1, routes=[('10.253.0.0/16', '192.0.2.1')])()
        image = self.add_image()
        instance = self.make_instance(image)
        plug_failed = threading.Event()
        real_plug = self.driver._vifs.plug
        real_create = guest.Guests.create_workload

        def plug(*args, **kwargs):
            try:
                return real_plug(*args, **kwargs)
            finally:
                plug_failed.set()

        def create_late(guests, *args, **kwargs):
            self.assertTrue(plug_failed.wait(60))
            return real_create(guests, *args, **kwargs)

        with mock.patch.object(self.driver._vifs, 'plug', autospec=True,
                               side_effect=plug), \
                mock.patch.object(guest.Guests, 'create_workload',
                                  autospec=True, side_effect=create_late):
            self.assertRaises(exception.VirtualInterfacePlugException,
                              self.driver.spawn, self.context, instance,
                              image, [], None, {},
                              network_info=[good, bad])
        self.assertEqual([], self.leaks.leftovers())
        self.assertEqual([], self.net_leaks.leftovers())
        self.assertEqual([], net_fixtures.bridge_ports(self.bridge))

    def test_workload_refused_while_the_ports_are_plugged(self):
        # Docker refuses a 4 MB memory limit; the ports plugged meanwhile
        # are unplugged again.
        vifs = [self.ports.network(0)(), self.ports.network(1)()]
        image = self.add_image()
        instance = self.make_instance(image, memory_mb=4)
        error = self.assertRaises(exception.NovaException,
                                  self.driver.spawn, self.context, instance,
                                  image, [], None, {}, network_info=vifs)
        self.assertIn('create container', str(error))
        self.assertEqual([], self.leaks.leftovers())
        self.assertEqual([], self.net_leaks.leftovers())
        self.assertEqual([], net_fixtures.bridge_ports(self.bridge))


class HotplugTest(NetworkTestCase):

    def test_attach_pings_then_detach_removes_everything(self):
        first = self.ports.network(0)
        second = self.ports.network(1)
        vif0 = first()
        peer = second()
        instance = self.spawn_on([vif0])
        other = self.spawn_on([peer])
        self.assertTrue(self.driver.capabilities['supports_attach_interface'])

        vif1 = second()
        self.driver.attach_interface(self.context, instance, None, vif1)
        links = self.links(instance)
        self.assertEqual({'lo', 'eth0', 'eth1'}, set(links))
        self.assertEqual(vif1['address'], links['eth1']['mac'])
        self.assertEqual(self.bridge,
                         net_fixtures.port_bridge(vif1['devname']))
        self.assertEqual(vif1['id'], net_fixtures.interface_external_ids(
            vif1['devname'])['iface-id'])
        self.assertPings(instance, self.ip_of(peer))
        self.assertPings(other, self.ip_of(vif1, 6))
        # eth0's gateway keeps the default route.
        v4 = self.routes(instance, 4)
        self.assertEqual(['default via 10.251.0.1 dev eth0'],
                         [r for r in v4 if r.startswith('default')])

        self.driver.detach_interface(self.context, instance, vif1)
        self.assertEqual({'lo', 'eth0'}, set(self.links(instance)))
        self.assertUnplugged(vif1)
        self.assertNoPing(other, self.ip_of(vif1))
        self.assertEqual(vif0['address'],
                         self.links(instance)['eth0']['mac'])

        # The freed name is reused by the next attach.
        vif2 = second()
        self.driver.attach_interface(self.context, instance, None, vif2)
        self.assertEqual(vif2['address'], self.links(instance)['eth1']['mac'])
        self.driver.destroy(self.context, instance, [vif0, vif2])
        self.assertUnplugged(vif0, vif1, vif2)

    def test_attach_to_instance_without_ports_gets_default_route(self):
        instance = self.spawn_on([])
        vif = self.ports.network(0)()
        self.driver.attach_interface(self.context, instance, None, vif)
        self.assertIn('default via 10.251.0.1 dev eth0',
                      self.routes(instance, 4))
        self.driver.destroy(self.context, instance, [vif])

    def test_attach_adds_the_metadata_route_only_where_missing(self):
        vif0 = self.ports.network(0)()
        instance = self.spawn_on([vif0])
        vif1 = self.ports.network(1, dhcp_server=2)()
        self.driver.attach_interface(self.context, instance, None, vif1)
        routes = [r for r in self.routes(instance, 4)
                  if r.startswith('169.254.')]
        self.assertEqual(['169.254.169.254 via 10.251.1.2 dev eth1'], routes)
        # A second port with a metadata port keeps the first one's route.
        vif2 = self.ports.network(2, dhcp_server=2)()
        self.driver.attach_interface(self.context, instance, None, vif2)
        self.assertEqual(routes, [r for r in self.routes(instance, 4)
                                  if r.startswith('169.254.')])
        self.driver.destroy(self.context, instance, [vif0, vif1, vif2])
        self.assertUnplugged(vif0, vif1, vif2)

    def test_failed_attach_leaves_nothing(self):
        instance = self.spawn_on([self.ports.network(0)()])
        bad = self.ports.network(1, routes=[('10.253.0.0/16',
                                             '192.0.2.1')])()
        self.assertRaises(exception.InterfaceAttachFailed,
                          self.driver.attach_interface, self.context,
                          instance, None, bad)
        self.assertEqual({'lo', 'eth0'}, set(self.links(instance)))
        self.assertUnplugged(bad)


class LifecycleTest(NetworkTestCase):
    """Power operations keep the network: the sandbox holds it."""

    def setUp(self):
        super().setUp()
        port = self.ports.network(0)
        self.vif, self.peer_vif = port(), port()
        self.instance = self.spawn_on([self.vif])
        self.peer = self.spawn_on([self.peer_vif])
        self.assertPings(self.peer, self.ip_of(self.vif))

    def assertConnected(self):
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(self.instance).state)
        self.assertPings(self.instance, self.ip_of(self.peer_vif))
        self.assertPings(self.peer, self.ip_of(self.vif, 6))
        links = self.links(self.instance)
        self.assertIn('eth0', links, self.exec_in(self.instance, 'ip', 'link'))
        self.assertEqual(self.vif['address'], links['eth0']['mac'])

    def test_reboot_soft_and_hard(self):
        for reboot_type in ('SOFT', 'HARD'):
            started = self.inspect(self.instance)['State']['StartedAt']
            self.driver.reboot(self.context, self.instance, [self.vif],
                               reboot_type)
            self.assertNotEqual(
                started, self.inspect(self.instance)['State']['StartedAt'])
            self.assertConnected()

    def assertNoCarrier(self):
        """Off or frozen: the port stays plugged and bound, but its host
        end is down and the instance's addresses answer nothing (the
        sandbox's kernel would answer ping otherwise)."""
        devname = self.vif['devname']
        self.assertEqual(self.bridge, net_fixtures.port_bridge(devname))
        self.assertFalse(net_fixtures.link_admin_up(devname))
        self.assertNoPing(self.peer, self.ip_of(self.vif))
        self.assertNoPing(self.peer, self.ip_of(self.vif, 6))

    def test_stop_start(self):
        self.driver.power_off(self.instance, timeout=0)
        self.assertEqual(power_state.SHUTDOWN,
                         self.driver.get_info(self.instance).state)
        self.assertNoCarrier()
        self.driver.power_on(self.context, self.instance, [self.vif])
        self.assertTrue(net_fixtures.link_admin_up(self.vif['devname']))
        self.assertConnected()

    def test_pause_unpause_and_suspend_resume(self):
        self.driver.pause(self.instance)
        self.assertEqual(power_state.PAUSED,
                         self.driver.get_info(self.instance).state)
        self.assertNoCarrier()
        self.driver.unpause(self.instance)
        self.assertConnected()
        self.driver.suspend(self.context, self.instance)
        self.assertNoCarrier()
        self.driver.resume(self.context, self.instance, [self.vif])
        self.assertConnected()

    def test_plug_vifs_keeps_a_stopped_instance_without_carrier(self):
        # nova-compute's start-up plugs every instance's ports; a stopped
        # one must not come back answering on its addresses.
        self.driver.power_off(self.instance, timeout=0)
        self.driver.plug_vifs(self.instance, [self.vif])
        self.assertNoCarrier()
        self.driver.power_on(self.context, self.instance, [self.vif])
        self.assertConnected()

    def test_port_attached_while_stopped_has_carrier_only_once_started(self):
        self.driver.power_off(self.instance, timeout=0)
        extra = self.ports.network(0)()
        self.driver.attach_interface(self.context, self.instance, None,
                                     extra)
        self.assertEqual(self.bridge, net_fixtures.port_bridge(
            extra['devname']))
        self.assertFalse(net_fixtures.link_admin_up(extra['devname']))
        self.assertNoPing(self.peer, self.ip_of(extra))
        self.driver.power_on(self.context, self.instance, [self.vif, extra])
        self.assertTrue(net_fixtures.link_admin_up(extra['devname']))
        self.assertPings(self.peer, self.ip_of(extra))
        self.assertConnected()
        self.driver.detach_interface(self.context, self.instance, extra)
        self.assertUnplugged(extra)

    def test_soft_delete_restore(self):
        self.driver.soft_delete(self.instance)
        self.assertEqual(power_state.SHUTDOWN,
                         self.driver.get_info(self.instance).state)
        self.assertNoCarrier()
        self.driver.restore(self.instance)
        self.assertConnected()

    def test_lost_sandbox_is_rebuilt_by_power_on(self):
        # What a dockerd restart does to one instance: both containers
        # stop, the namespace and the veth in it disappear, the OVS port
        # stays behind as a stale record.
        self.api.stop(self.driver._guests.get(
            self.instance).workload_id, timeout=0)
        self.api.stop(self.driver._guests.get(self.instance,
                                              guest.ROLE_SANDBOX).sandbox_id,
                      timeout=0)
        self.assertEqual(self.bridge,
                         net_fixtures.port_bridge(self.vif['devname']))
        self.driver.power_on(self.context, self.instance, [self.vif])
        self.assertConnected()

    def test_lost_sandbox_is_rebuilt_by_plug_vifs_and_resume(self):
        self.api.stop(self.driver._guests.get(
            self.instance).workload_id, timeout=0)
        self.api.stop(self.driver._guests.get(self.instance,
                                              guest.ROLE_SANDBOX).sandbox_id,
                      timeout=0)
        # nova-compute start-up: plug_vifs, then resume_state_on_host_boot.
        self.driver.plug_vifs(self.instance, [self.vif])
        self.assertTrue(net_fixtures.link_exists(self.vif['devname']))
        self.driver.resume_state_on_host_boot(self.context, self.instance,
                                              [self.vif], None)
        self.assertConnected()

    def test_restore_after_lost_sandbox_uses_info_cache(self):
        from nova import objects
        self.driver.soft_delete(self.instance)
        self.api.stop(self.driver._guests.get(self.instance,
                                              guest.ROLE_SANDBOX).sandbox_id,
                      timeout=0)
        self.instance.info_cache = objects.InstanceInfoCache(
            instance_uuid=self.instance.uuid,
            network_info=network_model.NetworkInfo([self.vif]))
        self.driver.restore(self.instance)
        self.assertConnected()
