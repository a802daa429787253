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

"""Nova's power-state sync on real instances: its Docker calls do not grow
with the instance count, and it never reads a stale state.

Nova's ``_sync_power_states`` periodic task asks the driver's
``get_info(use_cache=True)`` for every instance of the host; the driver
answers them all from one listing of the host's containers, which its own
operations and the Docker events thread keep from going stale.
"""

from tests.integration import base  # isort:skip  (imports nova first)

import time

import fixtures
from nova.compute import power_state
from nova import context as nova_context
from nova import objects

from novadocker.virt.docker import guest
from tests.fixtures import docker as docker_fixtures


class PowerStateSyncTest(base.IntegrationTestCase):

    def setUp(self):
        super().setUp()
        # Only what the test drives reaches the driver's client: no
        # periodic reaper pass in the middle of a count.
        self.driver._reaper_thread.stop()
        self.requests = self.useFixture(
            docker_fixtures.DockerRequests(self.driver.api))
        self.image_id = self.upload_image()
        self.context = nova_context.get_admin_context()

    def boot_many(self, count: int) -> list:
        """Boot ``count`` servers at once; wait until all are ACTIVE."""
        servers = [self.api.post_server({'server': {
            'name': 'sync-%d' % i, 'imageRef': self.image_id,
            'flavorRef': self.flavor_id, 'networks': 'none'}})
            for i in range(count)]
        for server in servers:
            self.addCleanup(self._delete_if_exists, server)
        return [self._wait_for_state_change(s, 'ACTIVE') for s in servers]

    def sync_power_states(self) -> list:
        """One run of Nova's periodic task, to its end; the Docker
        requests it made."""
        manager = self.compute.manager
        self.requests.reset()
        manager._sync_power_states(self.context)
        for _attempt in range(base.WAIT_RETRIES):
            with manager.syncs_in_progress() as syncs:
                if not syncs:
                    break
            time.sleep(0.1)
        else:
            self.fail('the power-state sync did not finish')
        return self.requests.made()

    def power_state(self, server) -> int:
        return self.api.get_server(server['id'])['OS-EXT-STS:power_state']

    def as_at_a_periodic_sync(self) -> None:
        """As every 10 minutes: the listing is older than its max age, and
        the last changes older than Docker's listing may lag behind them
        (a listing just after a change reads that instance fresh)."""
        self.driver._states.forget()
        time.sleep(guest.REPLICA_LAG)

    def test_sync_calls_are_the_same_for_1_and_5_instances(self):
        self.boot_many(1)
        self.as_at_a_periodic_sync()
        one = self.sync_power_states()
        servers = self.boot_many(4)
        self.as_at_a_periodic_sync()
        five = self.sync_power_states()
        # get_num_instances' list of the workloads, and the one listing
        # of the host's containers every get_info is answered from.
        self.assertEqual([('GET', '/containers/json')] * 2, one)
        self.assertEqual(one, five)
        for server in servers:
            self.assertEqual(power_state.RUNNING, self.power_state(server))

    def test_state_after_own_stop_and_pause_is_fresh(self):
        stopped, paused, untouched = self.boot_many(3)
        # A listing that would serve for an hour: only the invalidation
        # by the driver's operations keeps it from being stale.
        self.useFixture(fixtures.MockPatchObject(
            self.driver._states, '_max_age', 3600))
        self.sync_power_states()
        self.action(stopped, 'os-stop', expected_state='SHUTOFF')
        self.action(paused, 'pause', expected_state='PAUSED')
        infos = {s['id']: self.driver.get_info(self.server_instance(s))
                 for s in (stopped, paused, untouched)}
        self.assertEqual(power_state.SHUTDOWN, infos[stopped['id']].state)
        self.assertEqual(power_state.PAUSED, infos[paused['id']].state)
        self.assertEqual(power_state.RUNNING, infos[untouched['id']].state)
        # The sync agrees with the database: nothing to correct.
        self.sync_power_states()
        self.assertEqual('SHUTOFF',
                         self.api.get_server(stopped['id'])['status'])
        self.assertEqual('PAUSED',
                         self.api.get_server(paused['id'])['status'])
        self.action(stopped, 'os-start', expected_state='ACTIVE')
        self.action(paused, 'unpause', expected_state='ACTIVE')
        for server in (stopped, paused):
            self.assertEqual(
                power_state.RUNNING,
                self.driver.get_info(self.server_instance(server)).state)

    def test_change_behind_the_drivers_back_is_seen_through_events(self):
        server, = self.boot_many(1)
        self.useFixture(fixtures.MockPatchObject(
            self.driver._states, '_max_age', 3600))
        instance = self.server_instance(server)
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(instance).state)
        self.docker.pause(self.workload(server)['Id'])
        for _attempt in range(base.WAIT_RETRIES):
            if self.driver.get_info(instance).state == power_state.PAUSED:
                break
            time.sleep(0.1)
        else:
            self.fail('the cached state stayed RUNNING after docker pause')
        self.docker.unpause(self.workload(server)['Id'])

    def server_instance(self, server) -> objects.Instance:
        return objects.Instance.get_by_uuid(self.context, server['id'])
