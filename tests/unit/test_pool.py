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

"""The warm sandbox pool: claims, refills, reconciliation, and that a
claimed sandbox is found, reaped and removed as the instance's."""

import threading

import docker
import fixtures

from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import events
from novadocker.virt.docker import guest
from novadocker.virt.docker import identity
from novadocker.virt.docker import pool
from tests.fixtures import network as net_fixtures
from tests.fixtures import objects as obj_fixtures
from tests.unit import test_driver


class PoolTestBase(test_driver.DriverTestBase):

    def setUp(self):
        super().setUp()
        self.driver._sandbox_image_id = 'sha256:sandbox'
        self.write_files = self.useFixture(fixtures.MockPatchObject(
            identity, 'write_files', autospec=True)).mock
        self.set_hostname = self.useFixture(fixtures.MockPatchObject(
            identity, 'set_hostname', autospec=True)).mock
        self.image = self.add_image()

    def with_size(self, size):
        self.cfg.config(sandbox_pool_size=size, group='docker')
        self.driver._pool.reconcile()

    def free_ids(self):
        return sorted(cid for cid, c in self.engine.containers.items()
                      if c['name'].startswith(pool.POOL_PREFIX))

    def of_instance(self, instance):
        return self.driver._guests.lookup(instance)


class ClaimTest(PoolTestBase):

    def test_size_zero_is_todays_spawn(self):
        self.with_size(0)
        instance = self.spawn(self.image)
        self.assertEqual([], self.free_ids())
        sandbox = self.of_instance(instance)
        self.assertFalse(sandbox.pooled)
        self.assertEqual(instance.uuid, self.engine.containers[
            sandbox.sandbox_id]['labels'][guest.LABEL_INSTANCE])
        self.write_files.assert_not_called()
        self.set_hostname.assert_not_called()

    def test_reconcile_fills_with_labelled_non_instances(self):
        self.with_size(2)
        free = self.free_ids()
        self.assertEqual(2, len(free))
        for cid in free:
            container = self.engine.containers[cid]
            self.assertTrue(container['running'])
            self.assertEqual('1', container['labels'][guest.LABEL_POOL])
            self.assertNotIn(guest.LABEL_INSTANCE, container['labels'])
        self.assertEqual([], self.driver.list_instance_uuids())
        self.assertEqual([], self.driver.list_instances())

    def test_spawn_claims_a_member_and_gives_it_the_identity(self):
        self.with_size(2)
        free = self.free_ids()
        vif = net_fixtures.make_vif(dns=['10.0.0.53'])
        instance = obj_fixtures.instance(hostname='web-1')
        self.useFixture(fixtures.MockPatchObject(
            self.driver._vifs, 'plug', autospec=True))
        self.driver.spawn(self.context, instance, self.image, [], None, {},
                          network_info=[vif])
        found = self.of_instance(instance)
        self.assertTrue(found.pooled)
        self.assertIn(found.sandbox_id, free)
        self.assertEqual(guest.container_name(instance, guest.ROLE_SANDBOX),
                         self.engine.containers[found.sandbox_id]['name'])
        self.write_files.assert_called_once_with(
            '/var/lib/docker/containers/%s' % found.sandbox_id, 'web-1',
            ['10.0.0.53'])
        self.set_hostname.assert_called_once_with(4242, 'web-1')
        # The workload runs in the claimed sandbox's namespace.
        self.assertEqual(
            'container:%s' % found.sandbox_id,
            self.engine.containers[found.workload_id]['host_config'][
                'NetworkMode'])
        self.assertEqual([instance.uuid], self.driver.list_instance_uuids())

    def test_refill_after_claim(self):
        self.with_size(2)
        before = set(self.free_ids())
        instance = self.spawn(self.image)
        self.assertEqual(1, self.driver._pool.free)
        self.driver._pool.reconcile()
        after = set(self.free_ids())
        self.assertEqual(2, len(after))
        self.assertIn(self.of_instance(instance).sandbox_id, before - after)

    def test_empty_pool_falls_back_to_a_new_sandbox(self):
        self.cfg.config(sandbox_pool_size=1, group='docker')
        instance = self.spawn(self.image)   # nothing reconciled yet
        self.assertFalse(self.of_instance(instance).pooled)

    def test_failed_rename_fails_the_spawn_and_leaves_nothing(self):
        self.with_size(1)
        self.engine.api.rename.side_effect = test_driver._api_error(
            500, 'rename failed')
        instance = obj_fixtures.instance()
        self.assertRaises(docker_client.DockerOperationFailed, self.spawn,
                          self.image, instance)
        self.assertEqual([], list(self.engine.containers))
        self.assertEqual(0, self.driver._pool.free)
        self.assertEqual(set(), self.driver._pool._busy)

    def test_identity_is_written_while_the_workload_is_created(self):
        """The claim's rename and files overlap the workload's creation:
        the workload create waits for the rename (done one after the
        other, the wait would go unanswered)."""
        self.with_size(1)
        renamed = threading.Event()
        rename = self.engine.api.rename.side_effect
        create = self.engine.api.create_container.side_effect

        def rename_and_tell(cid, name):
            rename(cid, name)
            renamed.set()

        def create_after_rename(image, **kwargs):
            if kwargs['labels'].get(guest.LABEL_ROLE) == guest.ROLE_WORKLOAD:
                self.assertTrue(renamed.wait(30))
            return create(image, **kwargs)
        self.engine.api.rename.side_effect = rename_and_tell
        self.engine.api.create_container.side_effect = create_after_rename
        instance = self.spawn(self.image)
        self.assertTrue(self.of_instance(instance).pooled)

    def test_destroy_leaves_nothing_of_the_instance(self):
        self.with_size(1)
        instance = self.spawn(self.image)
        self.driver.destroy(self.context, instance, [])
        self.assertEqual([], self.of_instance(instance).containers)
        self.assertEqual([], self.free_ids())
        self.assertEqual([], list(self.engine.containers))

    def test_failed_spawn_removes_the_claimed_sandbox(self):
        self.with_size(1)
        self.set_hostname.side_effect = OSError('no')
        instance = obj_fixtures.instance()
        self.assertRaises(OSError, self.spawn, self.image, instance)
        self.assertEqual([], list(self.engine.containers))

    def test_reboot_sets_the_hostname_again(self):
        self.with_size(1)
        instance = self.spawn(self.image)
        self.set_hostname.reset_mock()
        self.driver.reboot(self.context, instance, [], 'HARD')
        self.set_hostname.assert_called_once_with(4242, instance.hostname)

    def test_restarted_sandbox_gets_its_files_again(self):
        self.with_size(1)
        instance = self.spawn(self.image)
        sandbox_id = self.of_instance(instance).sandbox_id
        self.engine.containers[sandbox_id]['running'] = False
        self.write_files.reset_mock()
        self.driver.power_on(self.context, instance, [])
        self.write_files.assert_called_once_with(
            '/var/lib/docker/containers/%s' % sandbox_id, instance.hostname,
            [])


class ReconcileTest(PoolTestBase):

    def member(self, image='sha256:sandbox', running=True):
        cid = self.engine.api.create_container(
            image, name=pool.POOL_PREFIX + str(len(self.engine.containers)),
            labels={guest.LABEL_HOST: 'unit-host',
                    guest.LABEL_ROLE: guest.ROLE_SANDBOX,
                    guest.LABEL_POOL: '1'})['Id']
        self.engine.containers[cid]['running'] = running
        return cid

    def test_stale_and_extra_members_go(self):
        self.engine.images['old'] = 'sha256:old'
        good = [self.member(), self.member(), self.member()]
        stopped = self.member(running=False)
        old = self.member(image='sha256:old')
        self.with_size(2)
        left = self.free_ids()
        self.assertEqual(2, len(left))
        self.assertTrue(set(left) <= set(good))
        for gone in (stopped, old):
            self.assertNotIn(gone, self.engine.containers)

    def test_size_zero_at_start_up_drains_only_free_members(self):
        self.with_size(1)
        instance = self.spawn(self.image)
        self.member()
        self.cfg.config(sandbox_pool_size=0, group='docker')
        self.driver._start_pool()
        self.assertEqual([], self.free_ids())
        self.assertTrue(self.of_instance(instance).pooled)

    def test_engine_down_at_start_up_is_not_fatal(self):
        self.cfg.config(sandbox_pool_size=1, group='docker')
        self.engine.api.containers.side_effect = \
            docker.errors.DockerException('down')
        self.driver._start_pool()
        self.addCleanup(self.driver._pool.stop)
        self.assertEqual(0, self.driver._pool.free)

    def test_refill_thread_refills_after_a_claim(self):
        self.with_size(2)
        self.driver._pool.start()
        self.addCleanup(self.driver._pool.stop)
        self.spawn(self.image)
        self.assertTrue(self.driver._pool.wait_full(30))
        self.assertEqual(2, len(self.free_ids()))

    def test_wait_full_times_out_while_the_engine_is_away(self):
        self.cfg.config(sandbox_pool_size=1, group='docker')
        self.driver._pool.start()
        self.addCleanup(self.driver._pool.stop)
        self.engine.api.create_container.side_effect = \
            test_driver._api_error(500, 'engine trouble')
        self.assertFalse(self.driver._pool.wait_full(0.3))
        self.assertEqual([], self.free_ids())

    def test_reaper_removes_claimed_sandbox_and_never_free_ones(self):
        self.cfg.config(reap_min_age=0, group='docker')
        self.with_size(2)
        instance = self.spawn(self.image)
        self.driver.nova_instance_uuids = lambda: []
        self.driver._make_reaper('unit-host')
        self.useFixture(fixtures.MockPatchObject(
            self.driver._vifs, 'unplug_leftovers', autospec=True,
            return_value=[]))
        result = self.driver.reap('test')
        self.assertEqual([instance.uuid], result.reaped)
        self.assertEqual([], self.of_instance(instance).containers)
        self.assertEqual(1, len(self.free_ids()))


class InstanceOfTest(test_driver.testtools.TestCase):

    UUID = '8f9a6c1e-4b2d-4e7a-9c3f-0123456789ab'

    def test_owner(self):
        pool_labels = {guest.LABEL_POOL: '1'}
        claimed = ['/nova-%s-sandbox' % self.UUID]
        self.assertEqual(self.UUID, guest.instance_of(
            {guest.LABEL_INSTANCE: self.UUID}, ['/whatever']))
        self.assertEqual(self.UUID, guest.instance_of(pool_labels, claimed))
        self.assertIsNone(guest.instance_of(pool_labels, ['/nova-pool-1']))
        # Only the pool's sandboxes are owned by their name.
        self.assertIsNone(guest.instance_of({}, claimed))
        self.assertIsNone(guest.instance_of(
            pool_labels, ['/nova-%s-sandbox-x' % self.UUID]))

    def test_events_of_a_claimed_sandbox_name_its_instance(self):
        message = {'Type': 'container', 'Action': 'rename', 'Actor': {
            'Attributes': {guest.LABEL_POOL: '1',
                           'name': 'nova-%s-sandbox' % self.UUID}}}
        self.assertEqual(self.UUID, events.changed_instance(message))

