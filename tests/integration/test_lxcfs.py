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

"""A server booted through Nova's REST API sees its flavor in /proc."""

from tests.integration import base  # isort:skip  (imports nova first)

import os

from novadocker import conf
from tests.fixtures import docker as docker_fixtures

CONF = conf.CONF


class FlavorViewTest(base.IntegrationTestCase):

    def test_proc_shows_the_flavor(self):
        if not os.path.exists(os.path.join(CONF.docker.lxcfs_path,
                                           'proc/meminfo')):
            docker_fixtures.require_functional_missing(
                self, 'LXCFS is not mounted at %s' % CONF.docker.lxcfs_path)
        self.flavor_id = self._create_flavor(memory_mb=160, vcpu=1, disk=1,
                                             ephemeral=0)
        server = self.boot()
        self.assertEqual(160 * 1024, int(self.exec_in(
            server, 'grep', 'MemTotal', '/proc/meminfo').split()[1]))
        self.assertEqual('1', self.exec_in(
            server, 'grep', '-c', '^processor', '/proc/cpuinfo').strip())
        self.assertEqual('0', self.exec_in(
            server, 'cat', '/sys/devices/system/cpu/online').strip())
