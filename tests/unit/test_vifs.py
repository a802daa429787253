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

"""Port plugging logic: network_info -> specs, validation, the os-vif
objects and the order of the plugging steps (privileged steps mocked)."""

from unittest import mock

import fixtures
import os_vif
from os_vif import exception as osv_exception
from os_vif.objects import vif as osv_vif
from nova import exception
from nova import objects
from oslo_config import fixture as config_fixture
import testtools

from novadocker import conf
from novadocker.virt.docker import linux_net
from novadocker.virt.docker import ovsdb
from novadocker.virt.docker import vifs
from tests.fixtures import network as net_fixtures
from tests.fixtures import objects as obj_fixtures

CONF = conf.CONF
objects.register_all()
# nova's os_vif_util needs os-vif's objects, whichever test runs first
# (os_vif.initialize, which registers them, is mocked in PlugOrderTest).
os_vif.objects.register_all()


make_vif = net_fixtures.make_vif


def make_instance():
    return obj_fixtures.instance(
        uuid='11111111-2222-3333-4444-555555555555', project_id='p',
        display_name='x', id=7)


class SpecTest(testtools.TestCase):

    def test_names_follow_network_info_order(self):
        specs = vifs.vif_specs([make_vif(0), make_vif(1), make_vif(2)])
        self.assertEqual(['eth0', 'eth1', 'eth2'],
                         [s['ifname'] for s in specs])

    def test_mtu_comes_from_network_meta(self):
        vif = make_vif(mtu=1442)
        vif['mtu'] = 9000     # the field old nova-docker read; not Neutron's
        spec = vifs.vif_specs([vif])[0]
        self.assertEqual(1442, spec['mtu'])
        self.assertIsNone(vifs.vif_specs([make_vif(mtu=None)])[0]['mtu'])

    def test_every_fixed_ip_with_its_prefix(self):
        spec = vifs.vif_specs([make_vif(v6=True)])[0]
        self.assertEqual([['10.0.0.5', 24], ['10.0.0.6', 24],
                          ['fd00:0::5', 64]], spec['addresses'])
        self.assertEqual('fa:16:3e:00:00:00', spec['mac'])
        self.assertEqual('tap00000000-aa', spec['host_dev'])
        self.assertIsNone(spec['master'])

    def test_default_route_per_version_via_first_port_with_gateway(self):
        nogw = make_vif(0, gateway=False)
        v4only = make_vif(1)
        dual = make_vif(2, v6=True)
        specs = vifs.vif_specs([nogw, v4only, dual])
        defaults = [[(r['dst'], r['gateway']) for r in s['routes']
                     if r['dst'] in ('0.0.0.0/0', '::/0')] for s in specs]
        self.assertEqual([[], [('0.0.0.0/0', '10.0.1.1')],
                          [('::/0', 'fd00:2::1')]], defaults)
        self.assertFalse(any(r['if_missing'] for s in specs
                             for r in s['routes']))

    def test_host_routes(self):
        spec = vifs.vif_specs([make_vif(routes=[('172.16.0.0/12',
                                                 '10.0.0.254')])])[0]
        self.assertIn({'dst': '172.16.0.0/12', 'gateway': '10.0.0.254',
                       'if_missing': False}, spec['routes'])

    def test_metadata_route_via_first_port_with_a_hop(self):
        hops = {'10.0.1.0/24': '10.0.1.2', '10.0.2.0/24': '10.0.2.2'}
        specs = vifs.vif_specs([make_vif(0), make_vif(1), make_vif(2)],
                               hops)
        metadata = [[(r['gateway'], r['if_missing']) for r in s['routes']
                     if r['dst'] == '169.254.169.254/32'] for s in specs]
        self.assertEqual([[], [('10.0.1.2', False)], []], metadata)
        self.assertFalse([r for s in vifs.vif_specs([make_vif(0)])
                          for r in s['routes']
                          if r['dst'] == '169.254.169.254/32'])

    def test_dns_in_order_without_duplicates(self):
        servers, search = vifs.dns_config([
            make_vif(0, dns=('10.0.0.53', '10.0.0.54')),
            make_vif(1, dns=('10.0.0.54', '10.0.1.53'))])
        self.assertEqual(['10.0.0.53', '10.0.0.54', '10.0.1.53'], servers)
        self.assertEqual([], search)


def new_plugger() -> vifs.VIFPlugger:
    """A plugger whose OVSDB is a specced fake."""
    return vifs.VIFPlugger(mock.create_autospec(ovsdb.OVSDB, instance=True))


class ValidateTest(testtools.TestCase):

    def test_only_normal_ovs_ports(self):
        plugger = new_plugger()
        plugger.validate(make_instance(), [make_vif(), make_vif(1)])
        for bad in (make_vif(vif_type='vhostuser'),
                    make_vif(vif_type='hw_veb'),
                    make_vif(vif_type='binding_failed'),
                    make_vif(vnic_type='direct')):
            error = self.assertRaises(
                exception.VirtualInterfaceCreateException,
                plugger.validate, make_instance(), [make_vif(1), bad])
            self.assertIn(bad['id'], str(error))

    def test_only_what_the_privileged_side_accepts(self):
        plugger = new_plugger()
        bad_ports = []
        for devname in ('br-int', 'eth0', 'lo', 'qbr00000000-aa',
                        'tap/../br-int', 'tap00000000-aaaa'):
            vif = make_vif()
            vif['devname'] = devname
            bad_ports.append(vif)
        for mac in ('ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:01', 'fa:16:3e'):
            vif = make_vif()
            vif['address'] = mac
            bad_ports.append(vif)
        bad_ports.append(make_vif(mtu=65536))
        bad_ports.append(make_vif(routes=[('10.9.0.0/16', 'fd00::1')]))
        for bad in bad_ports:
            error = self.assertRaises(
                exception.VirtualInterfaceCreateException,
                plugger.validate, make_instance(), [make_vif(1), bad])
            self.assertIn('refused', str(error))
            self.assertIn(bad['id'], str(error))


class OsVifTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.cfg = self.useFixture(config_fixture.Config(CONF))

    def test_plain_port_always_creates_the_ovs_port(self):
        obj, info = new_plugger().os_vif_objects(
            make_instance(), make_vif(delegate_create=False))
        self.assertIsInstance(obj, osv_vif.VIFOpenVSwitch)
        self.assertTrue(obj.port_profile.create_port)
        self.assertFalse(obj.port_profile.create_tap)
        self.assertEqual('tap00000000-aa', obj.vif_name)
        self.assertEqual(1450, obj.network.mtu)
        self.assertEqual(make_instance().uuid, info.uuid)

    def test_hybrid_port_is_a_vif_bridge(self):
        obj, _info = new_plugger().os_vif_objects(
            make_instance(), make_vif(hybrid=True))
        self.assertIsInstance(obj, osv_vif.VIFBridge)
        self.assertEqual('qbr00000000-aa', obj.bridge_name)

    def test_integration_bridge_option_wins(self):
        self.cfg.config(integration_bridge='br-docker', group='docker')
        obj, _info = new_plugger().os_vif_objects(make_instance(),
                                                  make_vif())
        self.assertEqual('br-docker', obj.bridge_name)
        self.assertEqual('br-docker', obj.network.bridge)


class OsVifConnectionTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.cfg = self.useFixture(config_fixture.Config(CONF))
        os_vif.initialize()
        self.init = self.useFixture(fixtures.MockPatchObject(
            os_vif, 'initialize', autospec=True)).mock

    def test_tcp_default_is_replaced_by_ours(self):
        self.cfg.config(ovsdb_connection='unix:/run/ovs.sock', group='docker')
        plugger = new_plugger()
        plugger.initialize()
        self.assertEqual('unix:/run/ovs.sock',
                         CONF.os_vif_ovs.ovsdb_connection)
        self.init.assert_called_with(reset=True)
        # Loaded once per plugger (the driver's, at init_host), not per
        # plug.
        self.init.reset_mock()
        plugger.initialize()
        plugger.os_vif_objects(make_instance(), make_vif())
        self.assertNotIn(mock.call(reset=True), self.init.call_args_list)
        # Reloaded when the connection changes (OVSDB moved).
        self.cfg.config(ovsdb_connection='unix:/run/other.sock',
                        group='docker')
        CONF.clear_override('ovsdb_connection', group='os_vif_ovs')
        plugger.initialize()
        self.init.assert_called_with(reset=True)
        self.assertEqual('unix:/run/other.sock',
                         CONF.os_vif_ovs.ovsdb_connection)
        # Another plugger (another driver) has its own state.
        self.init.reset_mock()
        new_plugger().initialize()
        self.init.assert_called_with(reset=True)

    def test_operator_setting_is_kept(self):
        self.cfg.config(ovsdb_connection='tcp:192.0.2.9:6640',
                        group='os_vif_ovs')
        new_plugger().initialize()
        self.assertEqual('tcp:192.0.2.9:6640',
                         CONF.os_vif_ovs.ovsdb_connection)
        self.init.assert_called_with(reset=True)


class PlugOrderTest(testtools.TestCase):
    """The order of the steps, with the privileged and OVS calls mocked."""

    def setUp(self):
        super().setUp()
        for name in ('find_peer', 'plug_veth', 'delete_link'):
            self.useFixture(fixtures.MockPatchObject(
                linux_net, name, autospec=True,
                side_effect=getattr(self, '_' + name)))
        for name in ('plug', 'unplug'):
            self.useFixture(fixtures.MockPatchObject(
                os_vif, name, autospec=True))
        self.stale_ports = set()
        self.existing = {}
        self.calls = []
        self.plugger = new_plugger()
        self.plugger._ovsdb.port_exists.side_effect = (
            lambda name: name in self.stale_ports)
        self.useFixture(fixtures.MockPatchObject(
            self.plugger, 'initialize', autospec=True))

    def _find_peer(self, pid, host_dev, mac):
        self.calls.append(('find_peer', host_dev))
        return self.existing.get(host_dev)

    def _plug_veth(self, pid, spec):
        self.calls.append(('plug_veth', spec['host_dev'], spec['master']))
        return spec['ifname'] or 'eth9'

    def _delete_link(self, name):
        self.calls.append(('delete_link', name))
        return True

    def record_order(self):
        order = []
        os_vif.unplug.side_effect = lambda *a: order.append('unplug')
        os_vif.plug.side_effect = lambda *a: order.append('plug')
        linux_net.plug_veth.side_effect = \
            lambda n, s: order.append(('veth', s['master'])) or 'eth0'
        return order

    def test_new_port_veth_then_ovs(self):
        order = self.record_order()
        self.plugger.plug(make_instance(), [make_vif()], 1234)
        self.assertEqual([('veth', None), 'plug'], order)
        # The sandbox's PID crosses, never a path.
        self.assertEqual(1234, linux_net.plug_veth.call_args[0][0])

    def test_stale_ovs_port_is_cleared_first(self):
        # After a sandbox restart the OVS record outlives the veth.
        order = self.record_order()
        self.stale_ports.add('tap00000000-aa')
        self.plugger.plug(make_instance(), [make_vif()], 1234)
        self.assertEqual(['unplug', ('veth', None), 'plug'], order)

    def test_new_netns_asks_for_no_peer_but_clears_a_stale_record(self):
        """A sandbox just made holds no veth of the port: no look inside;
        an OVS record an earlier failed unplug left still goes first."""
        order = self.record_order()
        self.stale_ports.add('tap00000000-aa')
        self.plugger.plug(make_instance(), [make_vif()], 1234,
                          new_netns=True)
        self.assertFalse(linux_net.find_peer.called)
        self.assertEqual(['unplug', ('veth', None), 'plug'], order)

    def test_no_ovs_record_no_look_inside(self):
        # Nothing stale can be without a record: the namespace's links
        # (a netlink dump) are not read.
        self.plugger.plug(make_instance(), [make_vif()], 1234)
        self.assertFalse(linux_net.find_peer.called)
        self.assertFalse(os_vif.unplug.called)

    def test_existing_correct_port_is_not_unplugged(self):
        self.existing['tap00000000-aa'] = 'eth0'
        self.stale_ports.add('tap00000000-aa')   # its record, not stale
        self.plugger.plug(make_instance(), [make_vif()], 1234)
        self.assertFalse(os_vif.unplug.called)
        self.assertTrue(os_vif.plug.called)

    def netdev_vif(self, **kwargs):
        vif = make_vif(**kwargs)
        vif['details']['datapath_type'] = 'netdev'
        return vif

    def test_plain_port_is_one_ovsdb_transaction_not_os_vif(self):
        order = self.record_order()
        add_port = self.plugger._ovsdb.add_port
        add_port.side_effect = lambda *a: order.append('add_port')
        instance = make_instance()
        self.plugger.plug(instance, [self.netdev_vif()], 1234)
        self.assertEqual([('veth', None), 'add_port'], order)
        self.assertFalse(os_vif.plug.called)
        # The external_ids os-vif's generic plug sets.
        add_port.assert_called_once_with(
            'br-int', 'tap00000000-aa', {
                'iface-id': '00000000-aaaa-bbbb-cccc-dddddddddddd',
                'iface-status': 'active',
                'attached-mac': 'fa:16:3e:00:00:00',
                'vm-uuid': instance.uuid})

    def test_os_vif_plugs_when_the_transaction_fails(self):
        # A missing bridge, say: os-vif creates it.
        self.plugger._ovsdb.add_port.side_effect = ovsdb.OVSDBError(
            connection='unix:x', reason='Bridge br-int does not exist')
        self.plugger.plug(make_instance(), [self.netdev_vif()], 1234)
        self.assertEqual(1, os_vif.plug.call_count)

    def test_os_vif_plugs_what_it_does_more_for(self):
        cfg = self.useFixture(config_fixture.Config(CONF))
        # The kernel datapath (os-vif's default when Neutron names none)
        # gets os-vif's QoS row; the dead VLAN, per-port bridges and trunk
        # bridges are os-vif's too.
        cases = [({}, make_vif()),
                 ({'isolate_vif': True}, self.netdev_vif()),
                 ({'per_port_bridge': True}, self.netdev_vif())]
        trunk = self.netdev_vif()
        trunk['network']['bridge'] = 'tbr-00000000-a'
        cases.append(({}, trunk))
        for options, vif in cases:
            os_vif.plug.reset_mock()
            cfg.config(group='os_vif_ovs', **dict(
                {'isolate_vif': False, 'per_port_bridge': False},
                **options))
            self.plugger.plug(make_instance(), [vif], 1234)
            self.assertEqual(1, os_vif.plug.call_count, options)
        self.assertFalse(self.plugger._ovsdb.add_port.called)

    def test_hybrid_builds_qbr_before_the_veth_joins_it(self):
        order = self.record_order()
        self.stale_ports.add('qvo00000000-aa')   # survives restarts: kept
        self.plugger.plug(make_instance(), [make_vif(hybrid=True)], 1234)
        self.assertEqual(['plug', ('veth', 'qbr00000000-aa')], order)

    def test_plug_failure_is_a_nova_exception(self):
        os_vif.plug.side_effect = osv_exception.PlugException(
            vif='x', err='ovsdb down')
        error = self.assertRaises(exception.VirtualInterfacePlugException,
                                  self.plugger.plug, make_instance(),
                                  [make_vif()], 1234)
        self.assertIn('ovsdb down', str(error))

    def test_no_sandbox_no_plug(self):
        self.assertRaises(exception.VirtualInterfacePlugException,
                          self.plugger.plug, make_instance(), [make_vif()],
                          0)
        self.assertFalse(linux_net.plug_veth.called)

    def test_unplug_tries_every_port_then_raises(self):
        os_vif.unplug.side_effect = [
            osv_exception.UnplugException(vif='x', err='boom'), None]
        self.assertRaises(exception.VirtualInterfaceUnplugException,
                          self.plugger.unplug, make_instance(),
                          [make_vif(0), make_vif(1, port_id='1' * 8 +
                                                 '-aaaa-bbbb-cccc-d')])
        self.assertEqual(2, os_vif.unplug.call_count)
        self.assertEqual([('delete_link', 'tap11111111-aa')],
                         [c for c in self.calls if c[0] == 'delete_link'])

    def test_unplug_skips_ports_that_were_never_plugged(self):
        self.plugger.unplug(make_instance(),
                            [make_vif(vif_type='binding_failed')])
        self.assertFalse(os_vif.unplug.called)

    def test_unplug_never_touches_a_foreign_device(self):
        # validate() refused such a port: nothing was plugged, and neither
        # os-vif nor delete_link may remove what carries that name.
        vif = make_vif()
        vif['devname'] = 'br-int'
        self.plugger.unplug(make_instance(), [vif])
        self.plugger.detach(make_instance(), vif)
        self.assertFalse(os_vif.unplug.called)
        self.assertEqual([], self.calls)

    def test_plug_refuses_the_hosts_init(self):
        for pid in (1, -1, True, '1234'):
            self.assertRaises(exception.VirtualInterfacePlugException,
                              self.plugger.plug, make_instance(),
                              [make_vif()], pid)
            self.assertRaises(exception.InterfaceAttachFailed,
                              self.plugger.attach, make_instance(),
                              make_vif(), pid)
        self.assertFalse(os_vif.plug.called)
        self.assertEqual([], self.calls)

    def test_failed_attach_removes_what_it_made(self):
        linux_net.plug_veth.side_effect = OSError(101, 'unreachable')
        self.assertRaises(exception.InterfaceAttachFailed,
                          self.plugger.attach, make_instance(), make_vif(),
                          1234)
        self.assertIn(('delete_link', 'tap00000000-aa'), self.calls)
        self.assertEqual(1, os_vif.unplug.call_count)

    def test_attach_takes_next_free_name_and_default_only_if_missing(self):
        specs = []
        linux_net.plug_veth.side_effect = \
            lambda n, s: specs.append(s) or 'eth3'
        self.assertEqual('eth3', self.plugger.attach(
            make_instance(), make_vif(v6=True), 1234))
        self.assertIsNone(specs[0]['ifname'])
        defaults = [r for r in specs[0]['routes']
                    if r['dst'] in ('0.0.0.0/0', '::/0')]
        self.assertEqual(2, len(defaults))
        self.assertTrue(all(r['if_missing'] for r in defaults))

    def test_attach_adds_metadata_route_only_if_missing(self):
        specs = []
        linux_net.plug_veth.side_effect = \
            lambda n, s: specs.append(s) or 'eth1'
        self.plugger.attach(make_instance(),
                            make_vif(3, dhcp_server='10.0.3.2'), 1234)
        self.assertIn({'dst': '169.254.169.254/32', 'gateway': '10.0.3.2',
                       'if_missing': True}, specs[0]['routes'])

    def test_plug_routes_metadata_via_the_dhcp_port(self):
        specs = []
        linux_net.plug_veth.side_effect = \
            lambda n, s: specs.append(s) or s['ifname']
        self.plugger.plug(make_instance(),
                          [make_vif(0), make_vif(1, dhcp_server='10.0.1.2')],
                          1234)
        self.assertEqual(
            [[], ['10.0.1.2']],
            [[r['gateway'] for r in s['routes']
              if r['dst'] == '169.254.169.254/32'] for s in specs])

    def test_plug_of_a_failed_binding_is_a_plug_exception(self):
        # nova-compute's start-up handles exactly this one for plug_vifs.
        error = self.assertRaises(
            exception.VirtualInterfacePlugException, self.plugger.plug,
            make_instance(), [make_vif(vif_type='binding_failed')], 1234)
        self.assertIn('binding_failed', str(error))
        self.assertFalse(linux_net.plug_veth.called)

    def test_native_leftover_is_removed_before_hybrid_plug(self):
        # The binding switched from native to hybrid: the tap is still an
        # OVS port and must go (with its device) before qbr takes it.
        unplugged = []
        os_vif.unplug.side_effect = lambda obj, info: unplugged.append(obj)
        self.stale_ports.add('tap00000000-aa')
        self.plugger.plug(make_instance(), [make_vif(hybrid=True)], 1234)
        self.assertEqual(1, len(unplugged))
        self.assertIsInstance(unplugged[0], osv_vif.VIFOpenVSwitch)
        self.assertEqual('tap00000000-aa', unplugged[0].vif_name)


class CarrierTest(testtools.TestCase):
    """Ports' carrier on stop/pause and start/unpause: one crossing with
    the host ends of the ports this driver plugs, errors as Nova's."""

    def setUp(self):
        super().setUp()
        self.set_carrier = self.useFixture(fixtures.MockPatchObject(
            linux_net, 'set_carrier', autospec=True)).mock
        self.plugger = new_plugger()

    def test_host_ends_of_plugged_ports_only(self):
        ports = [make_vif(), make_vif(1), make_vif(2, vif_type='vhostuser')]
        self.plugger.set_carrier(make_instance(), ports, False)
        self.set_carrier.assert_called_once_with(
            [ports[0]['devname'], ports[1]['devname']], False)

    def test_failure_is_a_plug_exception(self):
        self.set_carrier.side_effect = linux_net.InvalidArgument('refused')
        error = self.assertRaises(exception.VirtualInterfacePlugException,
                                  self.plugger.set_carrier, make_instance(),
                                  [make_vif()], True)
        self.assertIn('up', str(error))
