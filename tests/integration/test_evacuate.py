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

"""Evacuate through Nova's API, between two compute services on two
Docker engines.

``self.compute`` (host1) runs on the shared engine as in every integration
test; host2 is a second nova-compute service in the same process whose
driver talks to a private dockerd (``PrivateDockerd``). CONF is
process-global, so :class:`tests.fixtures.computes.PerHostEngines` gives
host2's driver its own engine URL (set on the driver as its service starts,
before init_host) and its own compute node UUID.

What one process cannot separate: both hosts share this machine's kernel,
Open vSwitch and ``instances_path``. The servers here have no ports (a
port's veth and OVS port have the same names on both "hosts", so the old
host's clean-up would remove the new host's; on real hosts, and on the
all-in-one's nodes, each has its own); ports kept across an evacuation are
Nova's (the same port, bound to the new host) and the plugging is the
spawn's, tested elsewhere; the old host's unplug is tested in
tests.unit.test_evacuate. The shared ``instances_path`` is what Nova's
shared-storage check is for: the driver answers it, so host2's clean-up
keeps the config drive directory host1 uses.
"""

from tests.integration import base  # isort:skip  (imports nova first)

import os
import time
import uuid

from novadocker.virt.docker import configdrive
from novadocker.virt.docker import guest
from novadocker.virt.docker import images
from tests.fixtures import computes
from tests.fixtures import docker as docker_fixtures
from tests.fixtures import network as net_fixtures

WAIT = 240   # x 0.5 s, bounds waits only


class TwoHostsTestCase(base.IntegrationTestCase):
    """host1 (``self.compute``) on the shared engine, host2
    (``self.compute2``) on a private one (``self.engine2``)."""

    def setUp(self):
        super().setUp()
        self.host1 = self.compute_host
        self.host2 = 'ndint2-%s' % uuid.uuid4().hex[:10]
        engine = self.engine2 = self.useFixture(
            docker_fixtures.PrivateDockerd())
        self.docker2 = engine.api()
        self.useFixture(computes.PerHostEngines({self.host2: engine.url}))
        # Registered before host2's compute starts: checked after it
        # stopped.
        self.leaks2 = self.useFixture(docker_fixtures.DockerLeakCheck(
            self.host2, self.glance.ids_with_data, api=self.docker2))
        self.compute2 = self._start_compute(self.host2)
        self.assertEqual(engine.url, self.compute2.manager.driver.api_url)

    # -- the real containers on either engine -----------------------------

    @staticmethod
    def containers(api, host: str, server_id: str) -> dict:
        """role -> ``docker inspect`` of the server's containers there."""
        found = api.containers(all=True, filters={'label': [
            '%s=%s' % (guest.LABEL_INSTANCE, server_id),
            '%s=%s' % (guest.LABEL_HOST, host)]})
        return {c['Labels'][guest.LABEL_ROLE]:
                api.inspect_container(c['Id']) for c in found}

    def exec_on(self, api, host, server, *cmd, check=True):
        workload = self.containers(api, host, server['id'])[
            guest.ROLE_WORKLOAD]
        return docker_fixtures.exec_in(api, workload['Id'], *cmd,
                                       check=check)

    def service_id(self, host: str) -> str:
        return self.admin_api.get_services(binary='nova-compute',
                                           host=host)[0]['id']

    def wait_for(self, predicate, what: str) -> None:
        for _attempt in range(WAIT):
            if predicate():
                return
            time.sleep(0.5)
        self.fail('timed out waiting for %s' % what)

    def go_down(self, host: str, compute) -> None:
        """The operator's part once a host is lost: its service forced
        down (the evacuate API wants the source down)."""
        compute.stop()
        self.admin_api.put_service_force_down(self.service_id(host), True)


class EvacuateTest(TwoHostsTestCase):

    def test_evacuate_then_the_old_host_cleans_up(self):
        image_id = self.upload_image()
        on_host2 = {'availability_zone': 'nova:%s' % self.host2}
        server = self.boot(image_id, config_drive=True, **on_host2)
        kept = self.boot(image_id, **on_host2)
        for each in (server, kept):
            self.assertEqual(self.host2, each['OS-EXT-SRV-ATTR:host'])
        self.exec_on(self.docker2, self.host2, server, 'sh', '-c',
                     'echo written > /marker')
        before = self.containers(self.docker2, self.host2, server['id'])
        kept_before = self.containers(self.docker2, self.host2, kept['id'])
        self.assertEqual({guest.ROLE_SANDBOX, guest.ROLE_WORKLOAD},
                         set(before))

        # host2 goes away: its nova-compute stops (its engine, as a host
        # cut off from the network, keeps running the containers), and
        # the operator forces the service down.
        self.go_down(self.host2, self.compute2)

        # Nova 2.95+ leaves an evacuated server stopped: the spawn on
        # host1 is power_on=False, then a start.
        server = self._evacuate_server(server, expected_host=self.host1,
                                       expected_state='SHUTOFF')
        server = self._start_server(server)
        self.assertEqual(self.host1, server['OS-EXT-SRV-ATTR:host'])
        workload = self.assertContainerStatus(server, 'running')
        # Built from its image: the writable layer stayed on host2.
        self.assertEqual(self.docker.inspect_image(
            images.glance_tag(image_id))['Id'], workload['Image'])
        self.assertEqual(1, self.exec_result(server, 'test', '-e',
                                             '/marker',
                                             check=False).exit_code)
        # The config drive is written again from Nova's metadata.
        self.assertIn(server['id'], self.exec_in(
            server, 'cat', '/config-drive/openstack/latest/meta_data.json'))
        # host2's engine still has the old containers until it is back.
        self.assertEqual(set(before), set(self.containers(
            self.docker2, self.host2, server['id'])))

        # host2 comes back: init_host destroys the evacuated instance's
        # containers, keeps the others.
        self.compute2 = self._start_compute(self.host2)
        self.wait_for(lambda: not self.containers(
            self.docker2, self.host2, server['id']),
            'host2 to remove the evacuated containers')
        self._wait_for_migration_status(server, ['completed'])
        # Nova's destroy did it (the reaper left it to Nova).
        log = self.stdlog.logger.output
        self.assertIn('Destroying instance as it has been evacuated from '
                      'this host', log)
        self.assertNotIn('which Nova does not have on host %s' % self.host2,
                         log)
        self.admin_api.put_service_force_down(self.service_id(self.host2),
                                              False)
        kept_after = self.containers(self.docker2, self.host2, kept['id'])
        self.assertEqual(
            {r: c['Id'] for r, c in kept_before.items()},
            {r: c['Id'] for r, c in kept_after.items()})
        self.assertTrue(kept_after[guest.ROLE_WORKLOAD]['State']['Running'])
        self.assertEqual('ACTIVE', self.api.get_server(kept['id'])['status'])

        # The instance still runs on host1, unchanged, with its config
        # drive: instances_path is shared here, and Nova's shared-storage
        # check (answered by the driver) kept it.
        server = self.api.get_server(server['id'])
        self.assertEqual(('ACTIVE', self.host1), (
            server['status'], server['OS-EXT-SRV-ATTR:host']))
        self.assertEqual(workload['Id'], self.assertContainerStatus(
            server, 'running')['Id'])
        self.assertIn(server['id'], self.exec_in(
            server, 'cat', '/config-drive/openstack/latest/meta_data.json'))

        # host2 no longer holds the evacuated server's resources.
        rp2 = self._get_provider_uuid_by_host(self.host2)
        self.assertEqual({kept['id']}, set(
            self._get_allocations_by_provider_uuid(rp2)))

        # Deleting the server on host1 removes it there; nothing of it
        # anywhere.
        drive = configdrive.host_path(self.api_instance(server))
        self.assertTrue(os.path.isdir(drive))
        self.api.delete_server(server['id'])
        self._wait_until_deleted(server)
        self.assertNoContainers(server['id'])
        self.assertEqual({}, self.containers(self.docker2, self.host2,
                                             server['id']))
        self.assertFalse(os.path.exists(drive))
        # The kept server goes through host2 (up again), which removes it.
        self.api.delete_server(kept['id'])
        self._wait_until_deleted(kept)
        self.assertEqual([], self.leaks2.containers())

    @staticmethod
    def api_instance(server):
        """What configdrive.host_path needs of an instance."""
        class Instance:
            uuid = server['id']
        return Instance


class EvacuatePortsTest(TwoHostsTestCase):
    """The evacuated server keeps its port (MAC, address) and answers on
    it from host1.

    host2 dies whole here: its nova-compute and its dockerd stop (the
    containers stop with it, and their veths with their namespaces). It
    never comes back in this test: on one kernel and one Open vSwitch, its
    clean-up would unplug the devices host1 plugged for the same port (the
    same names; real hosts each have their own). The test removes host2's
    stopped containers itself; EvacuateTest covers host2's return.
    """

    def setUp(self):
        super().setUp()
        ports = self.useFixture(net_fixtures.PortsOnABridge())
        self.bridge, self.port_ids = ports.bridge, ports.port_ids

    def make_port(self, number: int) -> dict:
        """A Neutron port on network_1 bound to the test bridge."""
        port = net_fixtures.bound_port(
            self.neutron, self.bridge, '192.168.1.%d' % number,
            net_fixtures.random_mac())
        self.port_ids.append(port['id'])
        return port

    def test_ports_and_addresses_kept(self):
        port, other = self.make_port(121), self.make_port(122)
        devname = ('tap' + port['id'])[:14]
        server = self.boot(networks=[{'port': port['id']}],
                           availability_zone='nova:%s' % self.host2)
        peer = self.boot(networks=[{'port': other['id']}],
                         availability_zone='nova:%s' % self.host1)
        self.assertIn(port['mac_address'], self.exec_on(
            self.docker2, self.host2, server, 'ip', '-o', 'link', 'show',
            'eth0').output)
        addresses = server['addresses']

        self.go_down(self.host2, self.compute2)
        self.engine2.stop()
        self.wait_for(lambda: not net_fixtures.link_exists(devname),
                      'the veth to go with host2\'s containers')

        server = self._evacuate_server(server, expected_host=self.host1,
                                       expected_state='SHUTOFF')
        server = self._start_server(server)
        self.assertEqual(addresses, server['addresses'])
        self.assertEqual(self.host1,
                         self.neutron._ports[port['id']]['binding:host_id'])
        self.assertIn(port['mac_address'], self.exec_in(
            server, 'ip', '-o', 'link', 'show', 'eth0'))
        self.assertIn('192.168.1.121/', self.exec_in(
            server, 'ip', '-o', '-4', 'addr', 'show', 'eth0'))
        self.assertEqual(self.bridge, net_fixtures.port_bridge(devname))
        self.assertEqual(server['id'], net_fixtures.interface_external_ids(
            devname)['vm-uuid'])
        self.exec_in(peer, 'ping', '-c', '2', '-w', '10', '192.168.1.121')

        for each in (server, peer):
            self.api.delete_server(each['id'])
            self._wait_until_deleted(each)
        self.assertEqual([], net_fixtures.bridge_ports(self.bridge))
        # host2's stopped containers: see the class docstring.
        self.engine2.start()
        for container in self.leaks2.containers():
            self.docker2.remove_container(container['Id'], force=True)
