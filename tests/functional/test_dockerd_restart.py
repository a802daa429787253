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

"""After a dockerd restart the driver's recovery path restores instances
and their network.

Restarting dockerd without live-restore (an engine upgrade on a host set
up without it, or a host reboot) stops every container: the sandboxes'
namespaces die and take the veths with them, while the OVS port records
stay behind. nova-compute's start-up then calls init_host, plug_vifs and
resume_state_on_host_boot, which must bring everything back. The engine is
a private one without live-restore (the shared engine runs with it), so
this runs in parallel with the other tests.
"""

from nova.compute import power_state

from novadocker.virt.docker import guest
from tests.fixtures import docker as docker_fixtures
from tests.fixtures import network as net_fixtures
from tests.functional import test_network


class DockerdRestartTest(test_network.NetworkTestCase):

    def private_dockerd(self):
        return self.useFixture(docker_fixtures.PrivateDockerd())

    def test_recovery_restores_instances_and_connectivity(self):
        port = self.ports.network(0)
        second = self.ports.network(1)
        vif_a, vif_b = port(), port(hybrid=True)
        vif_a2 = second()
        self.useFixture(net_fixtures.HybridFirewall(vif_b['devname']))
        a = self.spawn_on([vif_a, vif_a2])
        b = self.spawn_on([vif_b])
        vif_s = port()
        stopped = self.spawn_on([vif_s])
        self.driver.power_off(stopped, timeout=0)
        self.assertPings(a, self.ip_of(vif_b))
        instances = {a.uuid: [vif_a, vif_a2], b.uuid: [vif_b],
                     stopped.uuid: [vif_s]}

        self.dockerd.restart()
        self.api = self.dockerd.api()

        for instance in (a, b):
            sandbox = self.api.inspect_container(
                self.driver._guests.get(
                    instance, guest.ROLE_SANDBOX).sandbox_id)
            self.assertFalse(sandbox['State']['Running'])
        # The OVS records survived; the veth of the plain port did not.
        self.assertEqual(self.bridge,
                         net_fixtures.port_bridge(vif_a['devname']))

        # nova-compute start-up, with a fresh driver object. (The old one
        # reconnects too: the clean-ups destroy through it.)
        self.driver._api = None
        self.driver = self.new_driver()
        db_states = {a.uuid: power_state.RUNNING,
                     b.uuid: power_state.RUNNING,
                     stopped.uuid: power_state.SHUTDOWN}
        for instance in (a, b, stopped):
            network_info = instances[instance.uuid]
            self.driver.plug_vifs(instance, network_info)
            if db_states[instance.uuid] == power_state.RUNNING:
                self.driver.resume_state_on_host_boot(
                    self.context, instance, network_info, None)

        for instance in (a, b):
            self.assertEqual(power_state.RUNNING,
                             self.driver.get_info(instance).state)
        self.assertEqual(power_state.SHUTDOWN,
                         self.driver.get_info(stopped).state)
        self.assertPings(a, self.ip_of(vif_b))
        self.assertPings(b, self.ip_of(vif_a))
        self.assertPings(b, self.ip_of(vif_a, 6))
        links = self.links(a)
        self.assertEqual({'lo', 'eth0', 'eth1'}, set(links))
        self.assertEqual(vif_a2['address'], links['eth1']['mac'])
        self.assertEqual(net_fixtures.device_names(vif_b['id'])[1],
                         net_fixtures.link_master(vif_b['devname']))
        # The stopped instance's port is plugged again too (its sandbox
        # runs), and it starts with its network.
        self.driver.power_on(self.context, stopped, [vif_s])
        self.assertPings(stopped, self.ip_of(vif_a))
