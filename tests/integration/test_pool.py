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

"""The warm sandbox pool through Nova's REST API: a server boots into a
pool sandbox, has its own hostname across stop/start, and its delete
leaves nothing; nova-compute does not count pool members as instances."""

from tests.integration import base  # isort:skip  (imports nova first)

import docker.errors

from novadocker.virt.docker import guest
from novadocker.virt.docker import pool
from tests.fixtures import network as net_fixtures


class PoolThroughNovaTest(base.IntegrationTestCase):

    def _start_compute(self, host, *args, **kwargs):
        # Before the compute starts: its init_host fills the pool.
        self.flags(sandbox_pool_size=1, group='docker')
        self.useFixture(net_fixtures.PrivsepInProcess())
        compute = super()._start_compute(host, *args, **kwargs)
        driver = compute.manager.driver
        # A real nova-compute keeps its free members for its next start;
        # the leak check wants none: stop refilling, then remove them.
        self.addCleanup(driver._pool.drain)
        self.addCleanup(driver._pool.stop)
        return compute

    def free_ids(self):
        return {c['Id'] for c in self.driver._guests.list_pool()
                if pool.is_free(c)}

    def hostname_in(self, server) -> str:
        return self.exec_in(server, 'cat',
                            '/proc/sys/kernel/hostname').strip()

    def test_server_boots_into_a_pool_sandbox(self):
        self.assertTrue(self.driver._pool.wait_full(60))
        members = self.free_ids()
        self.assertEqual([], self.driver.list_instance_uuids())
        server = self.boot()
        sandbox = self.docker.inspect_container(
            'nova-%s%s' % (server['id'], guest.SANDBOX_SUFFIX))
        self.assertIn(sandbox['Id'], members)
        self.assertEqual('container:%s' % sandbox['Id'],
                         self.workload(server)['HostConfig']['NetworkMode'])
        self.assertEqual(server['name'], self.hostname_in(server))
        self.assertEqual([server['id']], self.driver.list_instance_uuids())
        self.action(server, 'os-stop', expected_state='SHUTOFF')
        self.action(server, 'os-start', expected_state='ACTIVE')
        self.assertEqual(server['name'], self.hostname_in(server))
        self.assertTrue(self.driver._pool.wait_full(60))
        self.api.delete_server(server['id'])
        self._wait_until_deleted(server)
        self.assertNoContainers(server['id'])
        self.assertRaises(docker.errors.NotFound,
                          self.docker.inspect_container, sandbox['Id'])
