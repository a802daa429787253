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

"""Cold migration and resize between the host and node 2 of a multi-node
all-in-one, for real: the workload's filesystem travels through a hidden
Glance image (novadocker.virt.docker.migrate), its ports are re-bound on
the destination and keep their addresses, and confirm/revert leave
nothing behind on the host the server left. Skips on a single-node cloud
(see tests.scenario.multinode).
"""

import json
import time

from testtools import content

from tests.scenario import multinode

NODE = multinode.NODE
MARK_PATH = '/migration-mark'
# novadocker.virt.docker.migrate.MIGRATION_PROPERTY (the scenario tests
# never import the driver: they run against the cloud).
MIGRATION_PROPERTY = 'nova_docker_migration_of'
RESIZE_REPOSITORY = 'nova-docker/resize'


class MigrationScenarioTest(multinode.MultinodeTestCase):

    def setUp(self):
        super().setUp()
        router = self.make_router()
        self.net, _ = self.make_network('net', router=router)
        self.sg, _ = self.make_security_group(ssh=False)

    # -- helpers -------------------------------------------------------------

    def write_mark(self, server) -> str:
        """A file in the server's writable layer; its content."""
        text = 'written before moving %s' % server.id
        self.container_exec(server, 'sh', '-c', 'echo "%s" > %s'
                            % (text, MARK_PATH), check=True)
        return text

    def assertMark(self, server, text: str) -> None:
        result = self.container_exec(server, 'cat', MARK_PATH)
        self.assertEqual(0, result.exit_code, result.output)
        self.assertEqual(text, result.output.strip())

    def transfer_images(self, server) -> list:
        """The hidden Glance images carrying the server (any project)."""
        response = self.admin.image.get(
            '/images', params={'os_hidden': 'true', 'limit': 1000})
        response.raise_for_status()
        return [image['id'] for image in response.json()['images']
                if image.get(MIGRATION_PROPERTY) == server.id]

    def resize_commits(self, host: str, server) -> list:
        return self.docker_cli(host, 'images', '-q', '%s:%s' % (
            RESIZE_REPOSITORY, server.id)).stdout.split()

    def move(self, server, action, *args) -> float:
        """Run ``action`` (migrate_server, resize_server), wait for
        VERIFY_RESIZE; the seconds it took."""
        started = time.monotonic()
        action(server, *args)
        self.wait_status(server, 'VERIFY_RESIZE')
        took = time.monotonic() - started
        self.addDetailUniqueName('move-seconds', content.text_content('%.1f' % took))
        return took

    def assertMovedTo(self, host: str, server, addresses) -> None:
        """On ``host``, its ports bound there with the same addresses."""
        self.assertEqual(host, self.host_of(server))
        self.assertEqual(addresses, self.addresses(server))
        self.assertPortsOn(host, server)
        self.assertEqual(1, len(self.containers(server)))

    def assertPingsBothWays(self, one, other) -> None:
        self.assertReachable(self.container_ping, one,
                             self.fixed_ip(other, self.net))
        self.assertReachable(self.container_ping, other,
                             self.fixed_ip(one, self.net))

    # -- tests ---------------------------------------------------------------

    def test_migrate_to_node_and_confirm(self):
        peer = self.boot_on('peer', self.compute_host, self.net, self.sg)
        server = self.boot_on('mover', self.compute_host, self.net, self.sg)
        source = self.compute_host
        ports = self.ports_of(server)
        addresses = self.addresses(server)
        text = self.write_mark(server)

        self.move(server, self.admin.compute.migrate_server)
        # Nothing asked for a host: the scheduler moves it away from the
        # source (migrate never stays), to the only other node.
        self.assertMovedTo(NODE, server, addresses)
        self.assertMark(server, text)
        # The source keeps only the commit a revert would need.
        self.assertNothingOn(source, server, ports)
        self.assertEqual(1, len(self.resize_commits(source, server)))
        self.assertEqual([], self.transfer_images(server))

        self.admin.compute.confirm_server_resize(server)
        server = self.wait_status(server, 'ACTIVE')
        self.assertMovedTo(NODE, server, addresses)
        self.assertMark(server, text)
        # Node 2's engine limits the root disk as the host's did.
        self.assertEqual({'size': '%dG' % self.flavor.disk}, json.loads(
            self.inspect(server, '{{json .HostConfig.StorageOpt}}')))
        self.assertPingsBothWays(peer, server)
        self.assertNothingOn(source, server, ports)
        self.assertEqual([], self.resize_commits(source, server))
        self.assertEqual([], self.transfer_images(server))

    def test_migrate_to_node_and_revert(self):
        peer = self.boot_on('peer', NODE, self.net, self.sg)
        server = self.boot_on('mover', self.compute_host, self.net, self.sg)
        source = self.compute_host
        ports = self.ports_of(server)
        addresses = self.addresses(server)
        text = self.write_mark(server)

        self.move(server, self.admin.compute.migrate_server)
        self.assertMovedTo(NODE, server, addresses)
        self.assertMark(server, text)

        self.admin.compute.revert_server_resize(server)
        server = self.wait_status(server, 'ACTIVE')
        self.assertMovedTo(source, server, addresses)
        self.assertMark(server, text)
        # The peer on node 2 reaches it back on the host, over Geneve.
        self.assertPingsBothWays(peer, server)
        self.assertNothingOn(NODE, server, ports)
        self.assertEqual([], self.resize_commits(NODE, server))
        self.assertEqual([], self.transfer_images(server))
        # As after a revert on one host, the workload runs from the
        # commit, which goes with the server.
        self.assertEqual('%s:%s' % (RESIZE_REPOSITORY, server.id),
                         self.inspect(server, '{{.Config.Image}}').strip())
        self.delete_server(server)
        self.assertNothingOn(source, server, ports)
        self.assertEqual([], self.resize_commits(source, server))

    def test_resize_to_another_host(self):
        # allow_resize_to_same_host is on: the server's different_host
        # hint (an anchor on the host) makes node 2 the only choice. A
        # forced boot skips the filters, so the server starts on the host
        # next to its anchor; the resize (no forced host) applies them.
        anchor = self.boot_on('anchor', self.compute_host, self.net,
                              self.sg)
        server = self.boot_on(
            'resized', self.compute_host, self.net, self.sg,
            scheduler_hints={'different_host': [anchor.id]})
        source = self.compute_host
        ports = self.ports_of(server)
        addresses = self.addresses(server)
        text = self.write_mark(server)
        bigger = self.admin.compute.find_flavor('m1.small',
                                                ignore_missing=False)

        self.move(server, self.admin.compute.resize_server, bigger.id)
        self.assertMovedTo(NODE, server, addresses)
        self.admin.compute.confirm_server_resize(server)
        server = self.wait_status(server, 'ACTIVE')

        self.assertEqual('m1.small', server.flavor['original_name'])
        self.assertEqual(str(bigger.ram * 1024 * 1024),
                         self.inspect(server, '{{.HostConfig.Memory}}')
                         .strip())
        self.assertMark(server, text)
        self.assertPingsBothWays(anchor, server)
        self.assertNothingOn(source, server, ports)
        self.assertEqual([], self.resize_commits(source, server))
        self.assertEqual([], self.transfer_images(server))

