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

"""linux_net helpers and what its privileged side refuses (the
privsep/rootwrap wiring of its context: test_privsep)."""

import os
import subprocess
import sys

import fixtures
import testtools

from novadocker.virt.docker import linux_net
from tests.fixtures import network as net_fixtures


class FakeLink:
    def __init__(self, name):
        self.name = name

    def get_attr(self, attr):
        assert attr == 'IFLA_IFNAME'
        return self.name


class FakeIPRoute:
    def __init__(self, *names):
        self.names = names

    def get_links(self):
        return [FakeLink(n) for n in self.names]


class HelperTest(testtools.TestCase):

    def test_free_ifname(self):
        inside = FakeIPRoute('lo', 'eth0', 'eth2')
        self.assertEqual('eth1', linux_net._free_ifname(inside, 'eth1'))
        self.assertEqual('eth1', linux_net._free_ifname(inside, None))
        self.assertEqual('eth1', linux_net._free_ifname(inside, 'eth0'))
        self.assertEqual('eth3', linux_net._free_ifname(
            FakeIPRoute('lo', 'eth0', 'eth1', 'eth2'), None))

    def test_host_mac_differs_from_the_guest_mac(self):
        self.assertEqual('fe:16:3e:01:02:03',
                         linux_net.host_mac('fa:16:3e:01:02:03'))

    def test_missing_namespace(self):
        self.assertRaises(linux_net.NetnsGone, linux_net._open_netns,
                          '/proc/0/ns/net')


PORT_DEV = 'tap0a1b2c3d-4e'
MAC = 'fa:16:3e:01:02:03'

# Names a caller could send that are no port's host device.
FOREIGN_HOST_DEVS = (
    'eth0', 'br-int', 'br-ex', 'lo', 'docker0', 'ovs-system', 'virbr0',
    'qbr0a1b2c3d-4e', 'qvb0a1b2c3d-4e', 'qvo0a1b2c3d-4e', 'tap',
    'tap0a1b2c3d-4ef',          # 15 characters: longer than nova makes
    'tap/../eth0', '../tap0a1b2c3', 'tap0a1b.c3d', 'tap0a1b:0', 'tap0a 1b',
    'tap0a1b\n', 'tap0a1b\x00', 'TAP0a1b2c3d-4e', ' tap0a1b2c3d', '',
    None, 7, b'tap0a1b2c3d-4e', ['tap0a1b2c3d-4e'])


def good_spec(**changes) -> dict:
    spec = {'host_dev': PORT_DEV, 'mac': MAC, 'mtu': 1450, 'ifname': 'eth0',
            'master': None,
            'addresses': [['10.0.0.5', 24], ['fd00::5', 64]],
            'routes': [{'dst': '0.0.0.0/0', 'gateway': '10.0.0.1',
                        'if_missing': False},
                       {'dst': '172.16.0.0/12', 'gateway': '10.0.0.254',
                        'if_missing': False},
                       {'dst': '::/0', 'gateway': 'fd00::1',
                        'if_missing': True}]}
    spec.update(changes)
    return spec


def safe_spec(**changes) -> dict:
    """A spec that could not hurt the host's namespace even if a check it
    is sent to were broken: no addresses, no routes."""
    return good_spec(**dict({'addresses': [], 'routes': []}, **changes))


class ArgumentTest(testtools.TestCase):
    """What the privileged side accepts: the driver's own values only."""

    def test_pid_is_an_int_other_than_the_hosts_init(self):
        self.assertEqual(1234, linux_net.check_pid(1234))
        for bad in (0, 1, -1, -1234, True, False, '1234', 1234.0, None,
                    '/proc/1/ns/net', '/proc/1234/ns/net', [1234],
                    linux_net.PID_MAX + 1):
            self.assertRaises(linux_net.InvalidArgument,
                              linux_net.check_pid, bad)

    def test_host_device_is_a_tap_name(self):
        for good in (PORT_DEV, 'tap0', 'tap' + 'a' * 11):
            self.assertEqual(good, linux_net.check_host_dev(good))
        for bad in FOREIGN_HOST_DEVS:
            self.assertRaises(linux_net.InvalidArgument,
                              linux_net.check_host_dev, bad)

    def test_bridge_is_a_qbr_name_and_inside_an_eth_name(self):
        self.assertEqual('qbr0a1b2c3d-4e',
                         linux_net.check_bridge('qbr0a1b2c3d-4e'))
        for bad in ('br-int', PORT_DEV, 'qbr', 'qbr0a1b2c3d-4ef', 'qbr/x',
                    'docker0', None):
            self.assertRaises(linux_net.InvalidArgument,
                              linux_net.check_bridge, bad)
        for good in ('eth0', 'eth1', 'eth12', 'eth99999'):
            self.assertEqual(good, linux_net.check_inside(good))
        for bad in ('lo', 'eth', 'eth01', 'eth-1', 'eth0/../../x', 'eth0.5',
                    'eth100000', 'tap0', 'ETH0', 'eth0 ', None, 0):
            self.assertRaises(linux_net.InvalidArgument,
                              linux_net.check_inside, bad)

    def test_mac_is_unicast_and_well_formed(self):
        self.assertEqual(MAC, linux_net.check_mac(MAC.upper()))
        for bad in ('ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:01',
                    '33:33:00:00:00:01', '00:00:00:00:00:00',
                    'fa:16:3e:01:02', 'fa:16:3e:01:02:03:04',
                    'fa-16-3e-01-02-03', 'fa163e010203', 'fa:16:3e:01:02:0g',
                    'fa:16:3e:01:02:03\n', '', None, 0xfa163e010203):
            self.assertRaises(linux_net.InvalidArgument,
                              linux_net.check_mac, bad)

    def test_mtu_is_an_int_in_range(self):
        for good in (None, 68, 1280, 1450, 9000, 65535):
            self.assertEqual(good, linux_net.check_mtu(good))
        for bad in (0, 67, 65536, -1, '1500', 1500.0, True, [1500]):
            self.assertRaises(linux_net.InvalidArgument,
                              linux_net.check_mtu, bad)

    def test_spec_round_trip(self):
        spec = linux_net.VifSpec.from_dict(good_spec())
        self.assertEqual(good_spec(), spec.to_dict())
        self.assertEqual(spec, linux_net.VifSpec.from_dict(spec.to_dict()))
        hybrid = good_spec(master='qbr0a1b2c3d-4e', ifname=None, mtu=None,
                           addresses=[], routes=[])
        self.assertEqual(hybrid,
                         linux_net.VifSpec.from_dict(hybrid).to_dict())
        # Frozen: a parsed value cannot be changed after the checks.
        self.assertRaises(AttributeError, setattr, spec, 'host_dev', 'lo')

    def test_spec_refuses_foreign_values(self):
        bad_specs = [good_spec(host_dev=name) for name in FOREIGN_HOST_DEVS]
        bad_specs += [
            None, [], 'spec', {}, {'host_dev': PORT_DEV},
            good_spec(extra='x'), good_spec(mac='ff:ff:ff:ff:ff:ff'),
            good_spec(mtu=70000), good_spec(mtu='1450'),
            good_spec(ifname='lo'), good_spec(ifname='eth0/../../lo'),
            good_spec(master='br-int'), good_spec(master='docker0'),
            good_spec(master=PORT_DEV),
            good_spec(addresses=[['10.0.0.5', 33]]),
            good_spec(addresses=[['fd00::5', 129]]),
            good_spec(addresses=[['10.0.0.5', -1]]),
            good_spec(addresses=[['10.0.0.5', '24']]),
            good_spec(addresses=[['10.0.0.5', True]]),
            good_spec(addresses=[['10.0.0.300', 24]]),
            good_spec(addresses=[['10.0.0.5/24', 24]]),
            good_spec(addresses=['10.0.0.5/24']),
            good_spec(addresses=[['10.0.0.5', 24, 'x']]),
            good_spec(addresses=[['224.0.0.1', 4]]),
            good_spec(addresses=[['0.0.0.0', 0]]),
            good_spec(addresses=[['::', 0]]),
            good_spec(addresses='10.0.0.5'),
            good_spec(addresses=[['10.0.%d.5' % (n % 256), 24]
                                 for n in range(65)]),
            good_spec(routes=[{'dst': '0.0.0.0/0', 'gateway': 'fd00::1'}]),
            good_spec(routes=[{'dst': '::/0', 'gateway': '10.0.0.1'}]),
            good_spec(routes=[{'dst': '10.0.0.0/33', 'gateway': '10.0.0.1'}]),
            good_spec(routes=[{'dst': 'default', 'gateway': '10.0.0.1'}]),
            good_spec(routes=[{'dst': '0.0.0.0/0', 'gateway': '0.0.0.0'}]),
            good_spec(routes=[{'dst': '0.0.0.0/0', 'gateway': '10.0.0.1',
                               'if_missing': 'yes'}]),
            good_spec(routes=[{'dst': '0.0.0.0/0', 'gateway': '10.0.0.1',
                               'table': 255}]),
            good_spec(routes=[{'dst': '0.0.0.0/0'}]),
            good_spec(routes=['0.0.0.0/0 via 10.0.0.1']),
            good_spec(routes=[{'dst': '10.%d.0.0/16' % (n % 256),
                               'gateway': '10.0.0.1'} for n in range(257)]),
        ]
        for bad in bad_specs:
            self.assertRaises(linux_net.InvalidArgument,
                              linux_net.VifSpec.from_dict, bad)


class RefusedCallTest(testtools.TestCase):
    """The privileged entrypoints (run in-process, as a privsep daemon
    runs them) refuse the host's namespace and foreign names before they
    touch anything; so do the public functions, before crossing."""

    def setUp(self):
        super().setUp()
        self.useFixture(net_fixtures.PrivsepInProcess())
        # A process of the host namespace other than this one.
        self.host_child = subprocess.Popen(
            [sys.executable, '-c', 'import time; time.sleep(600)'])
        self.addCleanup(self.host_child.wait)
        self.addCleanup(self.host_child.kill)
        self.delete_net_dev = self.useFixture(fixtures.MockPatchObject(
            linux_net.ovs_linux_net, 'delete_net_dev', autospec=True)).mock

    def assertRefused(self, func, *args):
        error = self.assertRaises(linux_net.InvalidArgument, func, *args)
        self.assertIn('refused', str(error))
        return error

    def host_pids(self):
        # PID 1 (refused as such), this process, another host process.
        return (1, os.getpid(), self.host_child.pid)

    def test_host_namespace_is_refused(self):
        # No addresses or routes: were the check ever broken, this test
        # must not replace the host's default route on its way to failing.
        harmless = safe_spec()
        for pid in self.host_pids():
            self.assertRefused(linux_net.privileged_find_peer, pid,
                               PORT_DEV, MAC)
            for func in (linux_net.privileged_plug_veth,
                         linux_net.plug_veth):
                self.assertRefused(func, pid, harmless)
            self.assertFalse(net_fixtures.link_exists(PORT_DEV))
        error = self.assertRefused(linux_net.privileged_plug_veth,
                                   os.getpid(), harmless)
        self.assertIn('host', str(error))
        # Without a host veth of that name the public find_peer answers
        # None unprivileged; its PID check still refuses init.
        self.assertIsNone(linux_net.find_peer(os.getpid(), PORT_DEV, MAC))
        self.assertRefused(linux_net.find_peer, 1, PORT_DEV, MAC)

    def test_a_namespace_path_is_not_a_pid(self):
        for target in ('/proc/1/ns/net', '/proc/%d/ns/net' % os.getpid(),
                       '/var/run/netns/x', str(self.host_child.pid), None,
                       float(self.host_child.pid), True):
            self.assertRefused(linux_net.privileged_find_peer, target,
                               PORT_DEV, MAC)
            self.assertRefused(linux_net.privileged_plug_veth, target,
                               safe_spec())

    def test_a_gone_process_is_netns_gone(self):
        gone = subprocess.Popen([sys.executable, '-c', 'pass'])
        gone.wait()
        self.assertRaises(linux_net.NetnsGone,
                          linux_net.privileged_find_peer, gone.pid,
                          PORT_DEV, MAC)

    def test_foreign_device_names_are_refused(self):
        for name in FOREIGN_HOST_DEVS:
            for func in (linux_net.privileged_find_peer, linux_net.find_peer):
                self.assertRefused(func, self.host_child.pid, name, MAC)
            for func in (linux_net.privileged_plug_veth,
                         linux_net.plug_veth):
                self.assertRefused(func, self.host_child.pid,
                                   safe_spec(host_dev=name))
            self.assertRefused(linux_net.delete_link, name)
        self.assertFalse(self.delete_net_dev.called)

    def test_bad_values_are_refused(self):
        for spec in (safe_spec(mac='01:00:5e:00:00:01'), safe_spec(mtu=10),
                     safe_spec(addresses=[['10.0.0.5', 40]]),
                     safe_spec(master='br-int'), safe_spec(ifname='lo')):
            for func in (linux_net.privileged_plug_veth,
                         linux_net.plug_veth):
                self.assertRefused(func, self.host_child.pid, spec)
        self.assertRefused(linux_net.find_peer, self.host_child.pid,
                           PORT_DEV, 'ff:ff:ff:ff:ff:ff')

    def test_public_functions_check_before_crossing(self):
        entrypoint = self.useFixture(fixtures.MockPatchObject(
            linux_net, 'privileged_plug_veth', autospec=True)).mock
        self.assertRefused(linux_net.plug_veth, 1, good_spec())
        self.assertRefused(linux_net.plug_veth, 1234, good_spec(mtu=1))
        self.assertFalse(entrypoint.called)
        # What crosses is the parsed spec in its wire form.
        linux_net.plug_veth(1234, good_spec(mac=MAC.upper()))
        entrypoint.assert_called_once_with(1234, good_spec())

    def test_carrier_change_refuses_foreign_names_and_values(self):
        for name in FOREIGN_HOST_DEVS:
            for func in (linux_net.privileged_set_carrier,
                         linux_net.set_carrier):
                self.assertRefused(func, [PORT_DEV, name], False)
        for up in (0, 1, 'down', None):
            for func in (linux_net.privileged_set_carrier,
                         linux_net.set_carrier):
                self.assertRefused(func, [PORT_DEV], up)
        too_many = ['tap%011d' % i for i in range(linux_net.MAX_PORTS + 1)]
        for names in (too_many, PORT_DEV, {PORT_DEV: 1}):
            self.assertRefused(linux_net.privileged_set_carrier, names, True)

    def test_carrier_change_of_a_missing_device_changes_nothing(self):
        self.assertEqual([], linux_net.set_carrier([PORT_DEV], False))
        self.assertFalse(net_fixtures.link_exists(PORT_DEV))

    def test_carrier_change_of_no_ports_does_not_cross(self):
        entrypoint = self.useFixture(fixtures.MockPatchObject(
            linux_net, 'privileged_set_carrier', autospec=True)).mock
        self.assertEqual([], linux_net.set_carrier([], False))
        self.assertFalse(entrypoint.called)
        linux_net.set_carrier((PORT_DEV,), True)
        entrypoint.assert_called_once_with([PORT_DEV], True)

    def test_delete_link_of_a_missing_device_needs_no_privilege(self):
        self.assertFalse(linux_net.delete_link(PORT_DEV))
        self.assertFalse(self.delete_net_dev.called)
