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

"""hostinfo and diagnostics: docker info / stats -> what Nova wants."""

import os
import tempfile

import fixtures
from nova.compute import power_state
import nova.conf  # noqa: F401  (registers instances_path)
from nova.objects import fields
from oslo_config import fixture as config_fixture
from oslo_serialization import jsonutils
from oslo_utils import units
import testtools

from novadocker import conf
from novadocker.virt.docker import diagnostics
from novadocker.virt.docker import hostinfo
from tests.fixtures import fake_docker


class HostInfoTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.engine = fake_docker.FakeEngine()
        self.root = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, self.root)
        self.engine.api.info.return_value = {
            'NCPU': 6, 'MemTotal': 8 * units.Gi, 'Architecture': 'x86_64',
            'ServerVersion': '28.1.3', 'DockerRootDir': self.root}

    def test_read_host(self):
        host = hostinfo.read_host(self.engine.api)
        stat = os.statvfs(self.root)
        self.assertEqual(6, host.vcpus)
        self.assertEqual(8192, host.memory_mb)
        self.assertEqual(stat.f_blocks * stat.f_frsize // units.Gi,
                         host.disk_gb)
        self.assertEqual(28001003, host.hypervisor_version)
        self.assertEqual(1, self.engine.api.info.call_count)

    def test_data_root_not_visible_falls_back_to_instances_path(self):
        self.engine.api.info.return_value['DockerRootDir'] = os.path.join(
            self.root, 'not-mounted-here')
        cfg = self.useFixture(config_fixture.Config(conf.CONF))
        cfg.config(instances_path=self.root)
        logger = self.useFixture(fixtures.FakeLogger())
        host = hostinfo.read_host(self.engine.api)
        stat = os.statvfs(self.root)
        self.assertEqual(stat.f_blocks * stat.f_frsize // units.Gi,
                         host.disk_gb)
        self.assertIn('not-mounted-here', logger.output)

    def test_version_forms(self):
        for version, number in (('20.10.24+dfsg1', 20010024),
                                ('28.0', 28000000), ('dev', 0)):
            host = hostinfo.HostResources(1, 1, 0, 1, 0, 'x86_64', version,
                                          '/')
            self.assertEqual(number, host.hypervisor_version, version)

    def test_resource_dict(self):
        res = hostinfo.resource_dict(hostinfo.read_host(self.engine.api),
                                     'node-1')
        for key in ('vcpus', 'memory_mb', 'local_gb', 'cpu_info',
                    'vcpus_used', 'memory_mb_used', 'local_gb_used',
                    'numa_topology', 'hypervisor_hostname'):
            self.assertIn(key, res)
        self.assertEqual('docker', res['hypervisor_type'])
        self.assertEqual('node-1', res['hypervisor_hostname'])
        self.assertEqual([('x86_64', 'docker', fields.VMMode.EXE)],
                         res['supported_instances'])
        self.assertEqual(6, jsonutils.loads(
            res['cpu_info'])['topology']['cores'])


class DiagnosticsTest(testtools.TestCase):

    STATS = {
        'cpu_stats': {'cpu_usage': {'total_usage': 300,
                                    'percpu_usage': [100, 200]}},
        'memory_stats': {'limit': 256 * units.Mi, 'usage': 10 * units.Mi},
        'networks': {'eth0': {'rx_bytes': 11, 'tx_bytes': 22,
                              'rx_packets': 1, 'tx_packets': 2,
                              'rx_errors': 0, 'tx_errors': 0,
                              'rx_dropped': 0, 'tx_dropped': 0}},
    }

    def test_instance_diagnostics(self):
        inspect = {'State': {'Status': 'running', 'Running': True,
                             'StartedAt': '2020-01-01T00:00:00.1234Z'}}
        diags = diagnostics.instance_diagnostics(inspect, self.STATS)
        self.assertEqual(power_state.STATE_MAP[power_state.RUNNING],
                         diags.state)
        self.assertEqual([100, 200], [c.time for c in diags.cpu_details])
        self.assertEqual(256, diags.memory_details.maximum)
        self.assertEqual(10, diags.memory_details.used)
        self.assertEqual(11, diags.nic_details[0].rx_octets)
        self.assertGreater(diags.uptime, 0)

    def test_stopped_has_no_uptime(self):
        inspect = {'State': {'Status': 'exited', 'Running': False,
                             'StartedAt': '2020-01-01T00:00:00Z'}}
        diags = diagnostics.instance_diagnostics(inspect, {})
        self.assertIsNone(diags.uptime)
        self.assertEqual('shutdown', diags.state)

    def test_legacy(self):
        result = diagnostics.legacy_diagnostics(self.STATS)
        self.assertEqual(300, result['cpu0_time'])
        self.assertEqual(256 * 1024, result['memory'])
        self.assertEqual(10 * 1024, result['memory-actual'])
        self.assertEqual(11, result['eth0_rx'])
        self.assertEqual(22, result['eth0_tx'])
