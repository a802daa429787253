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

"""The metadata next hop of each subnet: nova's dhcp_server, else the
network's OVN metadata port from Neutron (a specced fake client)."""

from unittest import mock

from neutronclient.v2_0 import client as neutron_client
from nova.network import neutron
import testtools

from novadocker.virt.docker import metadata_route
from tests.fixtures import network as net_fixtures

make_vif = net_fixtures.make_vif


def metadata_port(network_id: str, *addresses: str) -> dict:
    return {'network_id': network_id,
            'fixed_ips': [{'subnet_id': 'sub-%d' % index, 'ip_address': ip}
                          for index, ip in enumerate(addresses)]}


class NextHopsTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.client = mock.create_autospec(neutron_client.Client,
                                           instance=True)
        self.client.list_ports.return_value = {'ports': []}
        patcher = mock.patch.object(neutron, 'get_client', autospec=True,
                                    return_value=self.client)
        self.get_client = patcher.start()
        self.addCleanup(patcher.stop)

    def test_dhcp_agent_port_needs_no_lookup(self):
        hops = metadata_route.next_hops([make_vif(0, dhcp_server='10.0.0.2')])
        self.assertEqual({'10.0.0.0/24': '10.0.0.2'}, hops)
        self.assertFalse(self.get_client.called)

    def test_ovn_metadata_port_looked_up_per_network(self):
        self.client.list_ports.return_value = {'ports': [
            metadata_port('net-0', '10.0.0.2', 'fd00:0::2'),
            metadata_port('net-1', '10.0.1.2')]}
        hops = metadata_route.next_hops([make_vif(0, v6=True, dhcp=True),
                                         make_vif(1, dhcp=True)])
        self.assertEqual({'10.0.0.0/24': '10.0.0.2',
                          '10.0.1.0/24': '10.0.1.2'}, hops)
        self.client.list_ports.assert_called_once_with(
            network_id=['net-0', 'net-1'],
            device_owner=metadata_route.OVN_METADATA_OWNER,
            fields=['network_id', 'fixed_ips'])
        self.assertTrue(self.get_client.call_args.kwargs['admin'])

    def test_no_dhcp_no_route_and_no_lookup(self):
        """A VM on a subnet without DHCP gets no option 121 either; IPv6
        has no 169.254.169.254."""
        hops = metadata_route.next_hops([make_vif(0, v6=True), make_vif(1)])
        self.assertEqual({}, hops)
        self.assertFalse(self.get_client.called)

    def test_address_outside_the_subnet_is_ignored(self):
        self.client.list_ports.return_value = {'ports': [
            metadata_port('net-0', '192.0.2.2')]}
        self.assertEqual({}, metadata_route.next_hops([make_vif(
            0, dhcp=True)]))

    def test_neutron_failure_boots_without_the_route(self):
        self.client.list_ports.side_effect = Exception('Neutron is down')
        with mock.patch.object(metadata_route.LOG, 'warning',
                               autospec=True) as warning:
            hops = metadata_route.next_hops([
                make_vif(0, dhcp_server='10.0.0.2'), make_vif(1, dhcp=True)])
        self.assertEqual({'10.0.0.0/24': '10.0.0.2'}, hops)
        self.assertIn('Neutron is down', str(warning.call_args))
