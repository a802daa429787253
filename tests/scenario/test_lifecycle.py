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

"""Server lifecycle on the live cloud: power, snapshots, interfaces,
deletion, each checked on the host (containers, OVS) and in Neutron."""

import json
import uuid

from tests.scenario import base


class LifecycleScenarioTest(base.ScenarioTestCase):

    def _reachable_server(self):
        router = self.make_router()
        net, subnet = self.make_network('net', router=router)
        sg, _ = self.make_security_group()
        server = self.boot('srv', [net], sg)
        fip = self.add_floating_ip(server)
        self.assertReachable(self.host_ping, fip)
        return server, subnet, fip

    def _state(self, server) -> dict:
        return json.loads(self.inspect(server, '{{json .State}}'))

    def test_stop_start_keeps_addresses_and_reachability(self):
        server, subnet, fip = self._reachable_server()
        before = self.addresses(server)

        self.conn.compute.stop_server(server)
        self.wait_status(server, 'SHUTOFF')
        self.assertFalse(self._state(server)['Running'],
                         'workload container still running while SHUTOFF')

        self.conn.compute.start_server(server)
        self.wait_status(server, 'ACTIVE')
        self.assertTrue(self._state(server)['Running'])
        self.assertEqual(before, self.addresses(server))
        self.assertReachable(self.host_ping, fip)
        self.assertReachable(self.container_ping, server,
                             subnet.gateway_ip)

    def test_reboot_keeps_addresses_and_reachability(self):
        server, subnet, fip = self._reachable_server()
        before = self.addresses(server)
        for reboot_type in ('SOFT', 'HARD'):
            started = self._state(server)['StartedAt']
            self.conn.compute.reboot_server(server, reboot_type)
            self.wait_status(server, 'ACTIVE')
            state = self._state(server)
            self.assertTrue(state['Running'])
            self.assertNotEqual(started, state['StartedAt'],
                                '%s reboot did not restart the workload'
                                % reboot_type)
            self.assertEqual(before, self.addresses(server))
            self.assertReachable(self.host_ping, fip)
            self.assertReachable(self.container_ping, server,
                                 subnet.gateway_ip)

    def test_snapshot_and_boot_from_snapshot(self):
        router = self.make_router()
        net, subnet = self.make_network('net', router=router)
        sg, _ = self.make_security_group()
        server = self.boot('orig', [net], sg)
        token = uuid.uuid4().hex
        self.container_exec(server, 'sh', '-c',
                            'echo %s > /root/marker' % token, check=True)

        image = self.conn.compute.create_server_image(
            server, self.name('snap'), wait=True, timeout=base.BOOT_TIMEOUT)
        self.addCleanup(self.conn.image.delete_image, image,
                        ignore_missing=True)
        # The Docker copy the driver loads when booting from it (cleaned
        # after the server, as cleanups run in reverse).
        self.addCleanup(base.run, 'docker', 'rmi',
                        'nova-docker/glance:%s' % image.id, check=False)
        image = self.conn.image.get_image(image.id)
        self.assertEqual('active', image.status)
        self.assertEqual('docker', image.container_format)

        clone = self.boot('clone', [net], sg, image=image)
        result = self.container_exec(clone, 'cat', '/root/marker')
        self.assertEqual(0, result.exit_code, result.output)
        self.assertEqual(token, result.output.strip())
        fip = self.add_floating_ip(clone)
        self.assertReachable(self.host_ping, fip)
        self.assertReachable(self.container_ping, clone,
                             self.fixed_ip(server, net))

    def test_attach_and_detach_interface(self):
        net_a, _ = self.make_network('neta')
        net_b, _ = self.make_network('netb', gateway=False)
        sg, _ = self.make_security_group()
        # Made before the servers, so it is deleted after them.
        port = self.conn.network.create_port(
            network_id=net_b.id, name=self.name('port'),
            security_groups=[sg.id])
        self.addCleanup(self.admin.network.delete_port, port,
                        ignore_missing=True)
        server = self.boot('srv', [net_a], sg)
        peer = self.boot('peer', [net_b], sg)
        peer_ip = self.fixed_ip(peer, net_b)
        self.assertUnreachable(self.container_ping, server, peer_ip,
                               timeout=10)

        port_ip = port.fixed_ips[0]['ip_address']
        self.conn.compute.create_server_interface(server, port_id=port.id)

        def has_ip():
            out = self.container_exec(server, 'ip', '-4', 'addr').output
            return (port_ip + '/') in out
        self.assertTrue(base.poll(has_ip, base.NET_TIMEOUT),
                        '%s did not appear in the container' % port_ip)
        self.assertEqual(1, len(self.ovs_interfaces(port.id)))
        self.assertReachable(self.container_ping, server, peer_ip)
        self.assertTrue(base.poll(
            lambda: self.admin.network.get_port(port.id).status == 'ACTIVE',
            base.NET_TIMEOUT), 'attached port never became ACTIVE')

        self.conn.compute.delete_server_interface(port.id, server=server)

        def detached():
            p = self.admin.network.get_port(port.id)
            return not p.device_id and not p.binding_host_id
        self.assertTrue(base.poll(detached, base.NET_TIMEOUT),
                        'port still bound after detach')
        self.assertTrue(base.poll(lambda: not has_ip(), base.NET_TIMEOUT),
                        '%s still in the container' % port_ip)
        self.assertEqual([], self.ovs_interfaces(port.id))
        self.assertUnreachable(self.container_ping, server, peer_ip)
        self.assertEqual('ACTIVE', self.conn.compute.get_server(
            server.id).status)

    def test_delete_leaves_nothing_behind(self):
        net_a, _ = self.make_network('neta')
        net_b, _ = self.make_network('netb', gateway=False)
        own_port = self.conn.network.create_port(network_id=net_b.id,
                                                 name=self.name('port'))
        self.addCleanup(self.admin.network.delete_port, own_port,
                        ignore_missing=True)
        server = self.boot('srv', [net_a, own_port])
        ports = self.ports_of(server)
        self.assertEqual(2, len(ports))
        nova_port = [p for p in ports if p.id != own_port.id][0]
        self.assertEqual(2, len(self.all_containers(server.id)))
        for port in ports:
            self.assertEqual(1, len(self.ovs_interfaces(port.id)),
                             'port %s not on OVS' % port.id)
            self.assertEqual(self.host_of(server), port.binding_host_id)

        self.delete_server(server)

        self.assertEqual([], self.all_containers(server.id))
        for port in ports:
            self.assertEqual([], self.ovs_interfaces(port.id))
        self.assertIsNone(self.admin.network.find_port(nova_port.id))
        kept = self.admin.network.get_port(own_port.id)
        self.assertEqual('', kept.device_id)
        self.assertEqual('', kept.binding_host_id or '')

    def test_root_disk_is_the_flavor_root_gb(self):
        # The all-in-one's engines (the host's and each node's) have a
        # btrfs data root with quotas: the flavor's root_gb (m1.tiny:
        # 1 GB) is a real limit wherever the server lands.
        self.assertEqual(1, self.flavor.disk)
        net, _ = self.make_network('net')
        server = self.boot('srv', [net])
        state = json.loads(self.inspect(
            server, '{{json .HostConfig.StorageOpt}}'))
        self.assertEqual({'size': '1G'}, state)
        filled = self.container_exec(
            server, 'sh', '-c', 'dd if=/dev/zero of=/fill bs=1M count=1200 '
            '2>&1; rm -f /fill')
        self.assertIn('Disk quota exceeded', filled.output)
        small = self.container_exec(
            server, 'sh', '-c', 'dd if=/dev/zero of=/fill bs=1M count=100 '
            '&& rm /fill')
        self.assertEqual(0, small.exit_code, small.output)
