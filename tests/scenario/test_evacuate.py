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

"""Evacuate off a failed node of a multi-node all-in-one, for real: node
2's nova-compute and dockerd are killed (``tools/aio node-kill 2``; its
containers keep running, as on a host that only lost its services), the
service is forced down, the server is rebuilt on the host from its image
with the same ports; when node 2 comes back (``tools/aio node-restart
2``), nova-compute's init_host removes the stale container and ports.

Node 2 is down for a while: ``tools/aio scenario`` runs this module
alone, after the others (every other multi-node test needs node 2 up).
Skips on a single-node cloud (see tests.scenario.multinode).
"""

import os
import subprocess

from tests.scenario import base
from tests.scenario import multinode

NODE = multinode.NODE
NODE_NUMBER = base.node_number(NODE)
TOOLS_AIO = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'tools/aio')
MARK_PATH = '/evacuate-mark'
# nova-compute's start, init_host and first report, on a busy machine.
RESTART_TIMEOUT = 300


def aio(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TOOLS_AIO] + list(args), capture_output=True,
                          text=True, timeout=RESTART_TIMEOUT)


class EvacuateScenarioTest(multinode.MultinodeTestCase):

    def kill_node(self) -> None:
        """Node 2 fails; whatever happens next, it comes back and its
        service is no longer forced down."""
        self.addCleanup(self.restore_node)
        result = aio('node-kill', str(NODE_NUMBER))
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        self.assertIn('nova-compute', result.stdout)
        self.admin.compute.update_service_forced_down(
            None, host=NODE, binary='nova-compute', forced=True)

    def restore_node(self) -> None:
        # Restarted while still forced down (node-restart waits for its
        # first report, after init_host); Nova unforces it only once
        # init_host has completed the evacuations.
        result = aio('node-restart', str(NODE_NUMBER))
        self.assertEqual(0, result.returncode, result.stdout + result.stderr)
        self.admin.compute.update_service_forced_down(
            None, host=NODE, binary='nova-compute', forced=False)
        self.assertTrue(base.poll(lambda: NODE in self.compute_services_up(),
                                  RESTART_TIMEOUT),
                        '%s nova-compute not up again' % NODE)

    def evacuation_status(self, server) -> list:
        return [m.status for m in self.admin.compute.migrations(
            server_id=server.id, migration_type='evacuation')]

    def test_evacuate_failed_node_then_node_cleans_up(self):
        router = self.make_router()
        net, _ = self.make_network('net', router=router)
        sg, _ = self.make_security_group(ssh=False)
        peer = self.boot_on('peer', self.compute_host, net, sg)
        server = self.boot_on('evacuee', NODE, net, sg)
        ports = self.ports_of(server)
        addresses = self.addresses(server)
        self.container_exec(server, 'touch', MARK_PATH, check=True)
        self.assertReachable(self.container_ping, peer,
                             self.fixed_ip(server, net))

        self.kill_node()
        self.assertNotIn(NODE, self.compute_services_up())
        self.admin.compute.evacuate_server(server)
        # Since microversion 2.95 Nova leaves an evacuated server stopped
        # for its owner to start.
        self.wait_status(server, 'SHUTOFF')
        self.admin.compute.start_server(server)
        server = self.wait_status(server, 'ACTIVE')

        # Rebuilt on the host from its image, with the same ports.
        self.assertEqual(self.compute_host, self.host_of(server))
        self.assertEqual(addresses, self.addresses(server))
        self.assertPortsOn(self.compute_host, server)
        self.assertReachable(self.container_ping, peer,
                             self.fixed_ip(server, net))
        self.assertReachable(self.container_ping, server,
                             self.fixed_ip(peer, net))
        # The writable layer stayed on the failed node (a VM's local disk
        # would too): the file written there is not in the rebuilt one.
        self.assertNotEqual(0, self.container_exec(
            server, 'test', '-e', MARK_PATH).exit_code)
        # Node 2's OVS still has the old port (nothing there runs to
        # remove it); OVN binds the port to the host only.
        for port in ports:
            self.assertEqual(1, len(self.ovs_interfaces(port.id,
                                                        hosts=[NODE])))
        self.assertEqual(['done'], self.evacuation_status(server))

        # Node 2 comes back: init_host destroys what was evacuated away.
        self.restore_node()
        self.assertTrue(base.poll(lambda: not self.all_containers(
            server.id, hosts=[NODE]), RESTART_TIMEOUT),
            'the stale containers of %s are still on %s' % (server.id, NODE))
        self.assertNothingOn(NODE, server, ports)
        self.assertEqual(['completed'], self.evacuation_status(server))
        # The evacuated server is untouched by the clean-up.
        self.assertEqual(self.compute_host, self.host_of(server))
        self.assertPortsOn(self.compute_host, server)
        self.assertReachable(self.container_ping, peer,
                             self.fixed_ip(server, net))
