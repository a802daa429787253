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

"""Connectivity of container servers through Neutron/OVN."""

from tests.scenario import base


class NetworkScenarioTest(base.ScenarioTestCase):

    def test_two_servers_on_one_network_reach_each_other(self):
        net, _ = self.make_network('net')
        sg, _ = self.make_security_group()
        first = self.boot('a', [net], sg)
        second = self.boot('b', [net], sg)
        ip_first = self.fixed_ip(first, net)
        ip_second = self.fixed_ip(second, net)
        self.assertNotEqual(ip_first, ip_second)
        self.assertReachable(self.container_ping, first, ip_second)
        self.assertReachable(self.container_ping, second, ip_first)

    def test_floating_ip_reachable_from_host(self):
        router = self.make_router()
        net, _ = self.make_network('net', router=router)
        sg, _ = self.make_security_group()
        server = self.boot('fip', [net], sg)
        fip = self.add_floating_ip(server)
        self.assertReachable(self.host_ping, fip)
        # Detached, the address answers no more: it was the server's. (Kept
        # allocated: released, a test beside this one could get it.)
        fip_obj = next(self.conn.network.ips(floating_ip_address=fip))
        self.conn.network.update_ip(fip_obj, port_id=None)
        self.assertUnreachable(self.host_ping, fip)

    def test_icmp_rule_removed_blocks_ping_and_restored_allows_it(self):
        router = self.make_router()
        net, _ = self.make_network('net', router=router)
        sg, icmp_rule = self.make_security_group()
        server = self.boot('sg', [net], sg)
        fip = self.add_floating_ip(server)
        self.assertReachable(self.host_ping, fip)

        self.conn.network.delete_security_group_rule(icmp_rule)
        self.assertUnreachable(self.host_ping, fip)

        self.allow_icmp(sg)
        self.assertReachable(self.host_ping, fip)

    def test_second_network_isolated_until_routed(self):
        router = self.make_router()
        net_a, _ = self.make_network('neta', router=router)
        net_b, subnet_b = self.make_network('netb')
        sg, _ = self.make_security_group()
        server_a = self.boot('a', [net_a], sg)
        server_b = self.boot('b', [net_b], sg)
        ip_a = self.fixed_ip(server_a, net_a)
        ip_b = self.fixed_ip(server_b, net_b)
        # Isolated now; that they answer once routed proves both were up.
        self.assertUnreachable(self.container_ping, server_a, ip_b)
        self.assertUnreachable(self.container_ping, server_b, ip_a)

        self.route(router, subnet_b)
        self.assertReachable(self.container_ping, server_a, ip_b)
        self.assertReachable(self.container_ping, server_b, ip_a)
