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

"""What the tests across compute nodes share (``tools/aio up --nodes 2``):
node 1 is the host, node 2 is aio-node2 (a network namespace with its own
OVS, dockerd, ovn-controller and nova-compute).

Servers are placed with ``availability_zone='nova:HOST'``, which only an
admin may ask for: these tests make their networks, router, security
group, servers and floating IPs in the admin project.

On a single-node cloud (AIO_NODES=1, what ``tools/aio scenario`` says of
a cloud made without --nodes) they skip; on a cloud made with --nodes 2
or more they fail when a node's nova-compute is not up: never skip.
"""

from tests.scenario import base

NODE = 'aio-node2'


class MultinodeTestCase(base.ScenarioTestCase):
    """Two nova-compute services up, the test acting as admin."""

    def setUp(self):
        super().setUp()
        if base.EXPECTED_NODES < 2:
            self.skipTest('a single-node cloud (AIO_NODES=%d): tools/aio '
                          'up --nodes 2 makes a multi-node one'
                          % base.EXPECTED_NODES)
        up = self.compute_services_up()
        missing = [h for h in base.node_hosts() if h not in up]
        self.assertEqual([], missing, 'the cloud was made with %d nodes, '
                         'but the nova-compute services up and enabled are '
                         '%s' % (base.EXPECTED_NODES, up))
        self.assertGreaterEqual(len(up), 2)
        self.assertIsNone(base.node_number(self.compute_host))
        # Forced hosts are an admin's: everything in the admin project.
        self.conn = self.admin

    def compute_services_up(self) -> list:
        return sorted(svc.host for svc in self.admin.compute.services(
            binary='nova-compute')
            if svc.state == 'up' and svc.status == 'enabled')

    def boot_on(self, what, host, net, sg, **extra):
        server = self.boot(what, [net], sg,
                           availability_zone='nova:%s' % host, **extra)
        self.assertEqual(host, self.host_of(server))
        for port in self.ports_of(server):
            self.assertEqual(host, port.binding_host_id)
        # Its workload is in that host's engine, its port in its OVS.
        self.assertEqual(1, len(self.containers(server)))
        return server

    def assertNothingOn(self, host: str, server, ports) -> None:
        """No container of ``server`` in ``host``'s engine, none of its
        ``ports`` in that host's OVS."""
        self.assertEqual([], self.all_containers(server.id, hosts=[host]),
                         'containers of %s left on %s' % (server.name,
                                                          host))
        for port in ports:
            self.assertEqual([], self.ovs_interfaces(port.id, hosts=[host]),
                             'port %s left in the OVS of %s' % (port.id,
                                                                host))

    def assertPortsOn(self, host: str, server) -> None:
        """Neutron binds the server's ports to ``host``, whose OVS has
        them."""
        for port in self.ports_of(server):
            self.assertEqual(host, port.binding_host_id)
            self.assertEqual(1, len(self.ovs_interfaces(port.id,
                                                        hosts=[host])))
