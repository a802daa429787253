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

"""Recovery on the real engine (and OVS): the reaper removes containers of
instances Nova no longer has on this host, at start-up, periodically and
when the event stream reconnects; a delete whose unplug fails still
removes the containers, and the unplug is finished later."""

from unittest import mock
import uuid

import fixtures
from nova import exception

from novadocker import conf
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import guest
from novadocker.virt.docker import vifs
from tests.fixtures import network as net_fixtures
from tests.functional import base
from tests.functional import test_lifecycle
from tests.functional import test_network

CONF = conf.CONF
wait_for = test_lifecycle.wait_for


class ReaperTest(base.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.conf.config(reap_min_age=0, group='docker')
        self.logs = self.useFixture(fixtures.FakeLogger())

    def containers_of(self, instance) -> list:
        return self.api.containers(all=True, filters={'label': [
            '%s=%s' % (guest.LABEL_INSTANCE, instance.uuid),
            '%s=%s' % (guest.LABEL_HOST, self.host)]})

    def foreign(self, labels) -> str:
        created = self.api.create_container(
            CONF.docker.sandbox_image,
            name='ndtest-foreign-%s' % uuid.uuid4().hex[:8], labels=labels,
            host_config=self.api.create_host_config(network_mode='none'))
        self.addCleanup(self.api.remove_container, created['Id'], force=True)
        self.api.start(created['Id'])
        return created['Id']

    def test_start_up_reaps_instances_nova_no_longer_has(self):
        kept = self.spawn()
        gone = self.spawn()
        before = self.inspect(kept)
        plain = self.foreign({})
        other_host = self.foreign({
            guest.LABEL_INSTANCE: gone.uuid,
            guest.LABEL_HOST: 'ndtest-other-%s' % uuid.uuid4().hex[:8],
            guest.LABEL_ROLE: guest.ROLE_WORKLOAD})
        self.nova_forgets(gone)    # deleted while nova-compute was down

        driver = self.new_driver()

        self.assertEqual([], self.containers_of(gone))
        self.assertEqual([kept.uuid], driver.list_instance_uuids())
        after = self.inspect(kept)
        self.assertEqual(before['Id'], after['Id'])
        self.assertEqual(before['State']['StartedAt'],
                         after['State']['StartedAt'])
        for container in (plain, other_host):
            self.assertTrue(
                self.api.inspect_container(container)['State']['Running'])
        for name in (guest.container_name(gone),
                     guest.container_name(gone, guest.ROLE_SANDBOX)):
            self.assertIn('Reaper (start-up): removing container %s '
                          % name, self.logs.output)
        self.assertIn(gone.uuid, self.logs.output)
        self.assertNotIn(kept.uuid, self.logs.output.split(
            'Reaper')[-1])

    def test_failed_build_whose_clean_up_missed_the_engine(self):
        """The issue's case: the spawn failed, its clean-up ran while the
        engine was away (removed nothing), the build lost its host. The
        next pass (here: the engine is back) removes what it left."""
        meta = self.add_image()
        instance = self.make_instance(meta, memory_mb=4)   # refused
        with mock.patch.object(
                self.driver, '_remove_instance', autospec=True,
                side_effect=docker_client.DockerUnavailable(
                    url=CONF.docker.api_url, reason='engine restarting')):
            self.assertRaises(exception.NovaException, self.driver.spawn,
                              self.context, instance, meta, [], None, {},
                              network_info=[])
        self.assertEqual([guest.ROLE_SANDBOX], [
            c['Labels'][guest.LABEL_ROLE]
            for c in self.containers_of(instance)])
        self.nova_forgets(instance)
        result = self.driver.reap('the Docker engine is back')
        self.assertEqual([instance.uuid], result.reaped)
        self.assertEqual([], self.containers_of(instance))

    def test_periodic_pass(self):
        self.conf.config(reap_interval=1, group='docker')
        driver = self.new_driver()
        gone = self.spawn()
        self.nova_forgets(gone)
        wait_for(lambda: not self.containers_of(gone), 'the periodic pass')
        self.assertIn('Reaper (periodic): removing container %s'
                      % guest.container_name(gone), self.logs.output)
        self.assertEqual([], driver.list_instance_uuids())

    def test_event_stream_reconnect_triggers_a_pass(self):
        self.conf.config(reap_interval=0, group='docker')
        driver = self.new_driver()
        gone = self.spawn()
        self.nova_forgets(gone)
        listener = driver._events
        wait_for(lambda: listener._stream is not None, 'the event stream')
        # What the engine going away does to the stream.
        listener._stream.close()
        wait_for(lambda: not self.containers_of(gone), 'the reconnect pass')
        self.assertIn('Reaper (the Docker engine is back): removing '
                      'container %s' % guest.container_name(gone),
                      self.logs.output)

    def test_young_containers_and_spawning_instances_are_left_alone(self):
        self.conf.config(reap_min_age=3600, group='docker')
        young = self.spawn()
        self.nova_forgets(young)
        result = self.driver.reap('test')
        self.assertEqual([], result.reaped)
        self.assertGreater(result.retry_in, 3000)
        self.assertEqual(2, len(self.containers_of(young)))
        self.conf.config(reap_min_age=0, group='docker')
        with self.driver._spawn_guard(young.uuid):
            self.assertEqual([], self.driver.reap('test').reaped)
        self.assertEqual(2, len(self.containers_of(young)))
        self.assertEqual([young.uuid], self.driver.reap('test').reaped)


class NetworkRecoveryTest(test_network.NetworkTestCase):

    def setUp(self):
        super().setUp()
        self.conf.config(reap_min_age=0, group='docker')

    def test_unplug_failure_still_removes_the_containers(self):
        """OVSDB down during delete (fault injected into os-vif): the
        delete succeeds, the containers are gone, and the next reaper
        pass unplugs the port once OVSDB answers again."""
        vif = self.ports.network(0)()
        instance = self.spawn_on([vif])
        with mock.patch.object(vifs.os_vif, 'unplug', autospec=True,
                               side_effect=RuntimeError(
                                   'ovsdb-server unreachable')):
            self.driver.destroy(self.context, instance, [vif])
            self.assertFalse(self.driver.instance_exists(instance))
            self.assertEqual([], self.leaks.containers())
            self.assertEqual(self.bridge,
                             net_fixtures.port_bridge(vif['devname']))
            self.driver.reap('OVSDB still down')
            self.assertEqual(self.bridge,
                             net_fixtures.port_bridge(vif['devname']))
        self.driver.reap('OVSDB back')
        self.assertUnplugged(vif)

    def test_cleanup_with_unplug_failure(self):
        vif = self.ports.network(0)(hybrid=True)
        instance = self.spawn_on([vif])
        with mock.patch.object(vifs.linux_net, 'delete_link', autospec=True,
                               side_effect=OSError('privsep daemon died')):
            self.driver.cleanup(self.context, instance, [vif])
        self.assertEqual([], self.leaks.containers())
        self.driver.reap('privsep back')
        self.assertUnplugged(vif)

    def test_reaped_instance_leaves_no_ovs_port(self):
        native = self.ports.network(0)()
        hybrid = self.ports.network(1)(hybrid=True)
        gone = self.spawn_on([native, hybrid])
        self.nova_forgets(gone)
        self.assertEqual([gone.uuid], self.driver.reap('test').reaped)
        self.assertEqual([], self.leaks.containers())
        self.assertUnplugged(native, hybrid)
