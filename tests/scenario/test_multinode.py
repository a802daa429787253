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

"""Servers on two compute nodes (``tools/aio up --nodes 2``): node 1 is
the host, node 2 is aio-node2 (a network namespace with its own OVS,
dockerd, ovn-controller and nova-compute).

The servers are placed with ``availability_zone='nova:HOST'``, which only
an admin may ask for: these tests make their networks, router, security
group, servers and floating IPs in the admin project. Tenant traffic
between the nodes crosses a Geneve tunnel between the host's OVS
(10.250.0.1 on aio-underlay) and node 2's (10.250.0.2 on its br-phy).

On a single-node cloud (AIO_NODES=1, what ``tools/aio scenario`` says of
a cloud made without --nodes) they skip; on a cloud made with --nodes 2
or more they fail when a node's nova-compute is not up: never skip.
"""

import subprocess

from tests.scenario import base
from tests.scenario import multinode

NODE = multinode.NODE


class MultinodeScenarioTest(multinode.MultinodeTestCase):

    def node_tunnels(self) -> list:
        """Node 2's Geneve ports on its br-int: their remote IPs."""
        out = base.run('ovs-vsctl', *base.ovsdb_args(NODE), '--bare',
                       '--columns=options', 'find', 'Interface',
                       'type=geneve').stdout
        return [part.split('=', 1)[1].strip('"')
                for line in out.splitlines() for part in line.split()
                if part.startswith('remote_ip=')]

    def test_servers_on_two_nodes_ping_fip_and_security_group(self):
        router = self.make_router()
        net, _ = self.make_network('net', router=router)
        sg, icmp_rule = self.make_security_group(ssh=False)
        first = self.boot_on('n1', self.compute_host, net, sg)
        second = self.boot_on('n2', NODE, net, sg)
        ip_first = self.fixed_ip(first, net)
        ip_second = self.fixed_ip(second, net)
        # OVN made node 2's end of the tunnel to the host's chassis.
        self.assertIn('10.250.0.1', self.node_tunnels())

        # Node 1 -> node 2 and back, over Geneve.
        self.assertReachable(self.container_ping, first, ip_second)
        self.assertReachable(self.container_ping, second, ip_first)

        # The node-2 server's floating IP from the host: the router's
        # gateway is on the host's chassis, the server on node 2's.
        fip = self.add_floating_ip(second)
        self.assertReachable(self.host_ping, fip)

        # The security group holds on node 2's OVS: without its ICMP rule
        # neither the node-1 server nor the host gets an answer...
        self.conn.network.delete_security_group_rule(icmp_rule)
        self.assertUnreachable(self.container_ping, first, ip_second)
        self.assertUnreachable(self.host_ping, fip)
        # ...and node 1's too (the node-2 server pinging the node-1 one).
        self.assertUnreachable(self.container_ping, second, ip_first)

        # Allowed again, both answer again.
        self.allow_icmp(sg)
        self.assertReachable(self.container_ping, first, ip_second)
        self.assertReachable(self.host_ping, fip)
        self.assertReachable(self.container_ping, second, ip_first)

    def test_delete_leaves_nothing_on_either_node(self):
        net, _ = self.make_network('net')
        sg, _ = self.make_security_group(ssh=False)
        servers = [self.boot_on('n1', self.compute_host, net, sg),
                   self.boot_on('n2', NODE, net, sg)]
        ports = {server.id: self.ports_of(server) for server in servers}
        for server, host in zip(servers, (self.compute_host, NODE)):
            self.assertEqual(2, len(self.all_containers(
                server.id, hosts=[host])), 'sandbox and workload on %s'
                % host)
            for port in ports[server.id]:
                self.assertEqual(1, len(self.ovs_interfaces(
                    port.id, hosts=[host])), 'port %s in %s OVS'
                    % (port.id, host))

        for server in servers:
            self.delete_server(server)

        hosts = [self.compute_host, NODE]
        for server in servers:
            self.assertEqual([], self.all_containers(server.id,
                                                     hosts=hosts))
            for port in ports[server.id]:
                self.assertEqual([], self.ovs_interfaces(port.id,
                                                         hosts=hosts))
                self.assertIsNone(self.admin.network.find_port(port.id))

    def test_node_engine_is_the_nodes_own(self):
        """Node 2's engine answers on its own socket and is not the
        host's (what every check of node 2 above relies on)."""
        # (Not the engine ID: both take it from /etc/docker/key.json.)
        host_root = self.docker.info()['DockerRootDir']
        node_info = subprocess.run(
            ['docker', '-H', base.engine_url(NODE), 'info', '-f',
             '{{.DockerRootDir}}'],
            capture_output=True, text=True, timeout=60, check=True)
        self.assertEqual(base.node_dir(2) + '/data/docker',
                         node_info.stdout.strip())
        self.assertNotEqual(host_root, node_info.stdout.strip())
