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

"""Resize and rescue keep the instance's ports and addresses (real OVS)."""

from novadocker.virt.docker import rescue
from tests.functional import test_network
from tests.functional import test_resize


class ResizeRescueNetworkTest(test_resize.ResizeMixin,
                              test_network.NetworkTestCase):

    def setUp(self):
        super().setUp()
        port = self.ports.network(0)
        self.vif_a, self.vif_b = port(), port()
        self.a = self.spawn_on([self.vif_a])
        self.b = self.spawn_on([self.vif_b])

    def assertSameNetwork(self):
        self.assertEqual(self.vif_a['address'],
                         self.links(self.a)['eth0']['mac'])
        self.assertIn(self.ip_of(self.vif_a),
                      {a.split('/')[0] for a in self.addresses(self.a,
                                                               'eth0')})
        self.assertPings(self.a, self.ip_of(self.vif_b))
        self.assertPings(self.b, self.ip_of(self.vif_a))

    def test_resize_confirm_keeps_the_ports(self):
        self.resize(self.a, test_resize.make_flavor(),
                    network_info=[self.vif_a])
        self.assertSameNetwork()
        self.driver.confirm_migration(self.context, None, self.a,
                                      [self.vif_a])

    def test_resize_revert_replugs_the_same_ports(self):
        sandbox = self.inspect(self.a, 'sandbox')['Id']
        self.resize(self.a, test_resize.make_flavor(),
                    network_info=[self.vif_a])
        self.revert(self.a, network_info=[self.vif_a])
        # A new sandbox (Nova's destroy removed the old), the same port.
        self.assertNotEqual(sandbox, self.inspect(self.a, 'sandbox')['Id'])
        self.assertSameNetwork()

    def test_rescue_has_the_instance_ports_and_addresses(self):
        meta = self.add_image()
        self.driver.rescue(self.context, self.a, [self.vif_a], meta, 'pw',
                           None, None)
        output = self.exec_in(
            self.a, 'sh', '-c', 'ip -o link show eth0; '
            'ping -c 2 -w 10 %s' % self.ip_of(self.vif_b),
            role=rescue.ROLE_RESCUE)
        self.assertIn(self.vif_a['address'], output)
        self.driver.unrescue(self.context, self.a)
        self.assertSameNetwork()
