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

"""The reaper: which containers go, which never do, and when it runs."""

import threading
from unittest import mock

import docker
import fixtures
from nova import exception
import requests.exceptions
import testtools

from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import events
from novadocker.virt.docker import guest
from novadocker.virt.docker import reaper
from tests.fixtures import network as net_fixtures
from tests.fixtures import objects as obj_fixtures
from tests.unit import test_driver


class ReaperTest(test_driver.DriverTestBase):

    def setUp(self):
        super().setUp()
        self.cfg.config(reap_min_age=0, group='docker')
        self.logs = self.useFixture(fixtures.FakeLogger())
        self.known = set()
        self.driver.nova_instance_uuids = lambda: sorted(self.known)
        self.leftovers = self.useFixture(fixtures.MockPatchObject(
            self.driver._vifs, 'unplug_leftovers', autospec=True,
            return_value=[])).mock
        self.driver._make_reaper('unit-host')
        self.image = self.add_image()

    def spawn_known(self):
        instance = self.spawn(self.image)
        self.known.add(instance.uuid)
        return instance

    def uuids_left(self):
        return sorted({c['labels'].get(guest.LABEL_INSTANCE)
                       for c in self.engine.containers.values()
                       if guest.LABEL_INSTANCE in c['labels']})

    def foreign(self, labels):
        return self.engine.api.create_container(
            'sha256:sandbox', name='foreign-%d' % len(self.engine.containers),
            labels=labels)['Id']

    def test_reaps_only_unknown_instances_of_this_host(self):
        kept = self.spawn_known()
        gone = self.spawn(self.image)      # Nova does not have it here
        other_host = self.foreign({guest.LABEL_INSTANCE: gone.uuid,
                                   guest.LABEL_HOST: 'other-host',
                                   guest.LABEL_ROLE: guest.ROLE_WORKLOAD})
        plain = self.foreign({})
        result = self.driver.reap('test')
        self.assertEqual([gone.uuid], result.reaped)
        self.assertIsNone(result.retry_in)
        self.assertEqual(sorted([kept.uuid, gone.uuid]), self.uuids_left())
        self.assertIn(other_host, self.engine.containers)
        self.assertIn(plain, self.engine.containers)
        self.assertFalse(self.driver._guests.find(gone))
        self.leftovers.assert_called_once_with(gone.uuid)
        # One log line per container, naming it.
        for role in (guest.ROLE_WORKLOAD, guest.ROLE_SANDBOX):
            name = guest.container_name(gone, role)
            self.assertRegex(self.logs.output,
                             r'removing container %s \(\w+, %s\) of '
                             r'instance %s' % (name, role, gone.uuid))
        self.assertEqual([], self.driver.reap('again').reaped)

    def test_young_containers_wait(self):
        self.cfg.config(reap_min_age=3600, group='docker')
        young = self.spawn(self.image)
        result = self.driver.reap('test')
        self.assertEqual([], result.reaped)
        self.assertGreater(result.retry_in, 3500)
        self.assertEqual([young.uuid], self.uuids_left())
        self.leftovers.assert_not_called()

    def test_instance_being_spawned_is_skipped(self):
        instance = self.spawn(self.image)
        with self.driver._spawn_guard(instance.uuid):
            self.assertEqual([], self.driver.reap('test').reaped)
        self.assertEqual([instance.uuid], self.uuids_left())
        self.assertEqual([instance.uuid], self.driver.reap('test').reaped)

    def test_nova_unreachable_reaps_nothing(self):
        self.spawn(self.image)

        def unreachable():
            raise exception.NovaException('MessagingTimeout')
        self.driver.nova_instance_uuids = unreachable
        self.assertEqual([], self.driver.reap('test').reaped)
        self.assertEqual(1, len(self.uuids_left()))
        self.assertIn('MessagingTimeout', self.logs.output)

    def test_no_containers_does_not_ask_nova(self):
        asked = []
        self.driver.nova_instance_uuids = lambda: asked.append(1) or []
        self.assertEqual([], self.driver.reap('test').reaped)
        self.assertEqual([], asked)

    def test_spawn_waits_while_the_reaper_works_on_the_instance(self):
        instance = obj_fixtures.instance()
        entered = threading.Event()
        with self.driver._claim_for_reaping(instance.uuid) as claimed:
            self.assertTrue(claimed)
            guard = self.driver._spawn_guard(instance.uuid)
            spawn = threading.Thread(target=lambda: (
                guard.__enter__(), entered.set()))
            spawn.start()
            spawn.join(0.5)
            self.assertFalse(entered.is_set())
        spawn.join(30)
        self.assertTrue(entered.is_set())
        # And the reaper leaves a spawning instance alone.
        with self.driver._claim_for_reaping(instance.uuid) as claimed:
            self.assertFalse(claimed)
        guard.__exit__(None, None, None)
        with self.driver._claim_for_reaping(instance.uuid) as claimed:
            self.assertTrue(claimed)

    def test_failed_unplug_is_retried_by_the_reaper(self):
        instance = self.spawn_known()
        vif = net_fixtures.make_vif()
        unplug = self.useFixture(fixtures.MockPatchObject(
            self.driver._vifs, 'unplug', autospec=True,
            side_effect=exception.VirtualInterfaceUnplugException(
                reason='OVSDB unreachable'))).mock
        self.driver.destroy(self.context, instance, [vif])
        self.assertEqual({}, self.engine.containers)
        self.driver.reap('OVSDB still down')
        self.assertEqual(2, unplug.call_count)
        unplug.side_effect = None
        self.driver.reap('OVSDB back')
        self.assertEqual(3, unplug.call_count)
        unplug.assert_called_with(instance, [vif])
        self.driver.reap('done')
        self.assertEqual(3, unplug.call_count)

    def test_retry_dropped_when_the_instance_is_spawned_again(self):
        instance = self.spawn_known()
        vif = net_fixtures.make_vif()
        unplug = self.useFixture(fixtures.MockPatchObject(
            self.driver._vifs, 'unplug', autospec=True,
            side_effect=exception.VirtualInterfaceUnplugException(
                reason='OVSDB unreachable'))).mock
        self.driver.destroy(self.context, instance, [vif])
        unplug.side_effect = None
        self.spawn(self.image, instance)     # a rebuild
        self.driver.reap('test')
        self.assertEqual(1, unplug.call_count)   # only the failed one


class LiveRestoreWarningTest(test_driver.DriverTestBase):

    def setUp(self):
        super().setUp()
        self.logs = self.useFixture(fixtures.FakeLogger())

    def test_warns_once_when_off(self):
        self.engine.api.info.return_value = {'LiveRestoreEnabled': False}
        self.driver._warn_without_live_restore()
        self.driver._warn_without_live_restore()
        self.assertEqual(1, self.logs.output.count('without live-restore'))
        self.assertIn('"live-restore": true', self.logs.output)
        self.assertIn('dockerd restarts', self.logs.output)

    def test_silent_when_on(self):
        self.engine.api.info.return_value = {'LiveRestoreEnabled': True}
        self.driver._warn_without_live_restore()
        self.assertNotIn('live-restore', self.logs.output)


class ReaperThreadTest(testtools.TestCase):

    def test_trigger_runs_a_pass_and_stop_ends_it(self):
        passes = []
        ran = threading.Event()

        def run(why):
            passes.append(why)
            ran.set()
            return reaper.Pass([], None)
        thread = reaper.ReaperThread(run, interval=0)
        thread.start()
        self.addCleanup(thread.stop)
        thread.trigger('the Docker engine is back')
        self.assertTrue(ran.wait(30))
        thread.stop()
        self.assertFalse(thread._thread.is_alive())
        self.assertEqual(['the Docker engine is back'], passes)

    def test_periodic_and_retry_after_young_containers(self):
        passes = []
        two = threading.Event()

        def run(why):
            passes.append(why)
            if len(passes) == 2:
                two.set()
            return reaper.Pass([], 0.01 if len(passes) == 1 else None)
        # Interval 0 (periodic off), but a first pass that left young
        # containers comes back for them.
        thread = reaper.ReaperThread(run, interval=0, first_wait=0.01)
        thread.start()
        self.addCleanup(thread.stop)
        self.assertTrue(two.wait(30))
        self.assertEqual(['periodic', 'periodic'], passes)


class ReconnectTest(testtools.TestCase):

    def test_event_stream_reconnect_calls_back(self):
        api = mock.create_autospec(docker.APIClient, instance=True)
        reconnected = threading.Event()
        calls = []

        def factory():
            calls.append(1)
            if len(calls) == 1:
                raise requests.exceptions.ConnectionError('engine down')
            return api
        api.events.return_value = iter(())
        listener = events.EventListener(factory, 'host-1', lambda e: None,
                                        on_reconnect=reconnected.set)
        listener._stopping.wait = lambda t: reconnected.is_set() and \
            listener._stopping.set()
        listener._run()
        self.assertTrue(reconnected.is_set())
        self.assertEqual(2, len(calls))

    def test_first_connection_is_not_a_reconnect(self):
        api = mock.create_autospec(docker.APIClient, instance=True)
        called = []
        api.events.return_value = iter(())
        listener = events.EventListener(lambda: api, 'host-1',
                                        lambda e: None,
                                        on_reconnect=lambda: called.append(1))
        listener._stopping.wait = lambda t: listener._stopping.set()
        listener._run()
        self.assertEqual([], called)


class DriverOwnsTheThreadTest(testtools.TestCase):

    def test_nova_lookup_is_by_host(self):
        driver = docker_driver.DockerDriver(mock.sentinel.virtapi)
        driver._host = 'h1'
        with mock.patch('nova.objects.InstanceList.get_by_host',
                        autospec=True) as get_by_host, \
                mock.patch('nova.objects.MigrationList.get_by_filters',
                           autospec=True, return_value=[]):
            get_by_host.return_value = [mock.Mock(uuid='u1')]
            self.assertEqual(['u1'], driver.nova_instance_uuids())
        self.assertEqual('h1', get_by_host.call_args.args[1])
        context = get_by_host.call_args.args[0]
        self.assertEqual('no', context.read_deleted)


class OVSDBTablesTest(testtools.TestCase):

    def test_shared_connection_has_every_table_os_vif_needs(self):
        """ovsdbapp shares one connection per process between our lookups
        and os-vif: whoever connects first must register os-vif's tables
        (QoS is read when unplugging from a system-datapath bridge)."""
        from vif_plug_ovs.ovsdb import impl_idl as osv_impl_idl

        from novadocker.virt.docker import ovsdb
        self.assertTrue(set(osv_impl_idl.REQUIRED_TABLES) <=
                        set(ovsdb.TABLES))
