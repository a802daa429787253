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

"""The metadata service from inside a server: the driver's route to
169.254.169.254, OVN's metadata agent (haproxy in the network's
namespace), Nova's metadata API."""

import json

from tests.scenario import base

META_DATA_URL = 'http://169.254.169.254/openstack/latest/meta_data.json'


class MetadataScenarioTest(base.ScenarioTestCase):

    def fetch(self, server, url: str):
        """The body at url as the server sees it, or None: a plain
        HTTP/1.0 GET over busybox's nc (busybox-static's wget exits 139,
        a segfault, in these images, whatever the URL)."""
        host_path = url.split('://', 1)[1]
        host, path = host_path.split('/', 1)
        result = self.container_exec(
            server, 'sh', '-c',
            "printf 'GET /%s HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n' "
            "| nc -w 5 %s 80" % (path, host, host))
        head, _sep, body = result.output.partition('\r\n\r\n')
        if result.exit_code or not head.startswith('HTTP/1.0 200'):
            return None
        return body

    def test_meta_data_json_from_inside(self):
        net, subnet = self.make_network('net')
        self.assertTrue(subnet.is_dhcp_enabled)
        metadata_ports = list(self.admin.network.ports(
            network_id=net.id, device_owner='network:distributed'))
        self.assertEqual(1, len(metadata_ports))
        hop = metadata_ports[0].fixed_ips[0]['ip_address']
        server = self.boot('md', [net])
        where = self.host_of(server)
        if base.node_number(where) is not None:
            # Only the host runs an OVN metadata agent (README).
            self.skipTest('scheduled to %s, which serves no metadata'
                          % where)
        routes = self.container_exec(server, 'ip', '-4', 'route',
                                     check=True).output
        self.assertIn('169.254.169.254 via %s dev eth0' % hop,
                      [' '.join(line.split()) for line in
                       routes.splitlines()])
        # The agent serves the network once a port of it is bound here.
        body = base.poll(lambda: self.fetch(server, META_DATA_URL),
                         base.NET_TIMEOUT, 1)
        self.assertIsNotNone(body, 'no answer from %s' % META_DATA_URL)
        meta = json.loads(body)
        self.assertEqual(server.id, meta['uuid'])
        self.assertEqual(server.name, meta['name'])
