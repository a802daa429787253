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

"""Neutron ports through Nova's API, plugged for real.

NeutronFixture ports are bound to a private userspace-datapath OVS bridge
(``binding:vif_details`` bridge_name/datapath_type, as the OVS agent would
report them), so Nova builds network_info as in production and the driver
plugs real veths. Privsep runs in-process (nova's fixtures forbid helpers).
"""

from tests.integration import base  # isort:skip  (imports nova first)

import time

from novadocker.virt.docker import guest
from tests.fixtures import network as net_fixtures

WAIT = 240   # x 0.5 s, bounds waits only


class NetworkIntegrationTest(base.IntegrationTestCase):

    def setUp(self):
        super().setUp()
        ports = self.useFixture(net_fixtures.PortsOnABridge())
        self.bridge, self.port_ids = ports.bridge, ports.port_ids
        self.next_ip = 100

    def make_port(self, status='ACTIVE') -> dict:
        """A Neutron port on network_1 bound to the test bridge."""
        self.next_ip += 1
        port = net_fixtures.bound_port(
            self.neutron, self.bridge, '192.168.1.%d' % self.next_ip,
            net_fixtures.random_mac(), status=status)
        self.port_ids.append(port['id'])
        return port

    @staticmethod
    def ip(port) -> str:
        return port['fixed_ips'][0]['ip_address']

    def devname(self, port) -> str:
        return ('tap' + port['id'])[:14]

    def assertPings(self, server, address):
        self.exec_in(server, 'ping', '-c', '2', '-w', '10', address)

    def wait_for(self, predicate, what):
        for _attempt in range(WAIT):
            if predicate():
                return
            time.sleep(0.5)
        self.fail('timed out waiting for %s' % what)

    def test_two_servers_on_ports_ping_each_other(self):
        port_a, port_b = self.make_port(), self.make_port()
        a = self.boot(networks=[{'port': port_a['id']}])
        b = self.boot(networks=[{'port': port_b['id']}])
        self.assertPings(a, self.ip(port_b))
        self.assertPings(b, self.ip(port_a))
        # The ports carry what Neutron binds by, on the bridge Neutron named.
        for server, port in ((a, port_a), (b, port_b)):
            self.assertEqual(self.bridge,
                             net_fixtures.port_bridge(self.devname(port)))
            self.assertEqual(
                {'iface-id': port['id'], 'iface-status': 'active',
                 'attached-mac': port['mac_address'],
                 'vm-uuid': server['id']},
                net_fixtures.interface_external_ids(self.devname(port)))
        out = self.exec_in(a, 'ip', '-o', 'link', 'show', 'eth0')
        self.assertIn('mtu 1450', out)   # network_1's MTU
        self.assertIn(port_a['mac_address'], out)
        self.assertIn('default via 192.168.1.1 dev eth0',
                      self.exec_in(a, 'ip', 'route'))
        for server in (a, b):
            self.api.delete_server(server['id'])
            self._wait_until_deleted(server)
            self.assertNoContainers(server['id'])
        self.assertEqual([], net_fixtures.bridge_ports(self.bridge))

    def test_interface_attach_detach_through_the_api(self):
        port_a, port_b, port_c = (self.make_port(), self.make_port(),
                                  self.make_port())
        a = self.boot(networks=[{'port': port_a['id']}])
        b = self.boot(networks=[{'port': port_b['id']}])
        self.api.attach_interface(
            a['id'], {'interfaceAttachment': {'port_id': port_c['id']}})
        self.wait_for(lambda: port_c['id'] in [
            i['port_id'] for i in self.api.get_port_interfaces(a['id'])],
            'the interface to be attached')
        out = self.exec_in(a, 'ip', '-o', 'link', 'show', 'eth1')
        self.assertIn(port_c['mac_address'], out)
        self.assertEqual(self.bridge,
                         net_fixtures.port_bridge(self.devname(port_c)))
        self.assertPings(b, self.ip(port_c))

        self.api.detach_interface(a['id'], port_c['id'])
        self.wait_for(lambda: port_c['id'] not in [
            i['port_id'] for i in self.api.get_port_interfaces(a['id'])],
            'the interface to be detached')
        self.wait_task_done_and_unplugged(a, port_c)
        self.assertNotIn('eth1', self.exec_in(a, 'ip', '-o', 'link'))
        self.assertPings(b, self.ip(port_a))

    def wait_task_done_and_unplugged(self, server, port):
        self.wait_for_task_done(server)
        self.assertFalse(net_fixtures.link_exists(self.devname(port)))
        self.assertIsNone(net_fixtures.port_bridge(self.devname(port)))

    def test_boot_waits_for_network_vif_plugged(self):
        port = self.make_port(status='DOWN')
        self.flags(vif_plugging_timeout=300, vif_plugging_is_fatal=True)
        image_id = self.upload_image()
        server = self.api.post_server({'server': {
            'name': 'nd-wait', 'imageRef': image_id,
            'flavorRef': self.flavor_id,
            'networks': [{'port': port['id']}]}})
        self.addCleanup(self._delete_if_exists, server)
        # The port gets plugged into the sandbox; the workload, made
        # meanwhile, waits: created, not started.
        self.wait_for(lambda: net_fixtures.port_bridge(self.devname(port)),
                      'the port to be plugged')
        self.wait_for(lambda: guest.ROLE_WORKLOAD in self.containers_of(
            server['id']), 'the workload to be created')
        self.assertEqual('BUILD', self.api.get_server(server['id'])['status'])
        self.assertContainerStatus(server, 'created')
        self.admin_api.create_server_external_events([{
            'name': 'network-vif-plugged', 'server_uuid': server['id'],
            'tag': port['id'], 'status': 'completed'}])
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertContainerStatus(server, 'running')
        self.assertIn(port['mac_address'],
                      self.exec_in(server, 'ip', '-o', 'link', 'show',
                                   'eth0'))

    def test_vif_plugged_timeout_is_fatal_and_leaves_nothing(self):
        port = self.make_port(status='DOWN')
        self.flags(vif_plugging_timeout=3, vif_plugging_is_fatal=True)
        server = self.boot(networks=[{'port': port['id']}],
                           expected_state='ERROR')
        # nova's wording for VirtualInterfaceCreateException in spawn.
        self.assertIn('Failed to allocate the network(s), not rescheduling',
                      server['fault']['message'])
        self.assertNoContainers(server['id'])
        self.assertFalse(net_fixtures.link_exists(self.devname(port)))
        self.assertEqual([], net_fixtures.bridge_ports(self.bridge))

    def assertNoPing(self, server, address):
        result = self.exec_result(server, 'ping', '-c', '1', '-w', '2',
                                  address, check=False)
        self.assertNotEqual(0, result.exit_code, result.output)

    def test_stopped_paused_suspended_servers_answer_nothing(self):
        # As a stopped or paused VM: its ports stay bound, but nothing
        # answers on its address until it runs again.
        port_a, port_b = self.make_port(), self.make_port()
        a = self.boot(networks=[{'port': port_a['id']}])
        b = self.boot(networks=[{'port': port_b['id']}])
        self.assertPings(b, self.ip(port_a))
        for off, on, state in (('pause', 'unpause', 'PAUSED'),
                               ('suspend', 'resume', 'SUSPENDED'),
                               ('os-stop', 'os-start', 'SHUTOFF')):
            self.action(a, off, expected_state=state)
            self.assertFalse(net_fixtures.link_admin_up(self.devname(port_a)))
            self.assertEqual(self.bridge,
                             net_fixtures.port_bridge(self.devname(port_a)))
            self.assertNoPing(b, self.ip(port_a))
            self.action(a, on, expected_state='ACTIVE')
            self.assertPings(b, self.ip(port_a))
            self.assertPings(a, self.ip(port_b))

    def test_compute_restart_rebuilds_the_network_of_stopped_containers(self):
        # A host reboot, seen by one server: nova-compute is down while its
        # containers exit, their namespace and veth vanish and the OVS
        # record goes stale. nova-compute's start-up (init_host ->
        # plug_vifs -> resume_state_on_host_boot), with a brand-new driver,
        # brings the server back with its network.
        self.flags(resume_guests_state_on_host_boot=True)
        port_a, port_b = self.make_port(), self.make_port()
        a = self.boot(networks=[{'port': port_a['id']}])
        b = self.boot(networks=[{'port': port_b['id']}])
        containers = self.containers_of(a['id'])
        old_driver = self.driver
        self.compute.stop()
        for role in (guest.ROLE_WORKLOAD, guest.ROLE_SANDBOX):
            self.docker.stop(containers[role]['Id'], timeout=0)
        self.assertEqual(self.bridge,
                         net_fixtures.port_bridge(self.devname(port_a)))
        cell = self.host_mappings[self.compute_host].cell_mapping.name
        self.compute = self.start_service('compute', host=self.compute_host,
                                          cell_name=cell)
        self.driver = self.compute.manager.driver
        self.assertIsNot(old_driver, self.driver)
        self.wait_for(lambda: self.workload(a)['State']['Running'],
                      'the server to be resumed')
        self.assertPings(a, self.ip(port_b))
        self.assertPings(b, self.ip(port_a))
        self.assertEqual('ACTIVE', self.api.get_server(a['id'])['status'])
        # Delete while the new service runs (its fixture stops it before
        # the boot() clean-ups would).
        for server in (a, b):
            self.api.delete_server(server['id'])
            self._wait_until_deleted(server)
            self.assertNoContainers(server['id'])
        self.assertEqual([], net_fixtures.bridge_ports(self.bridge))
