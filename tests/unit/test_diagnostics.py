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

"""diagnostics: a Guest's state and docker stats -> Nova's diagnostics."""

from unittest import mock

from nova.compute import power_state
from oslo_utils import units
import testtools

from novadocker.virt.docker import diagnostics
from novadocker.virt.docker import guest

STATS = {
    'cpu_stats': {'cpu_usage': {'total_usage': 300,
                                'percpu_usage': [100, 200]}},
    'memory_stats': {'limit': 256 * units.Mi, 'usage': 10 * units.Mi},
    'networks': {'eth0': {'rx_bytes': 11, 'tx_bytes': 22,
                          'rx_packets': 1, 'tx_packets': 2,
                          'rx_errors': 0, 'tx_errors': 3,
                          'rx_dropped': 4, 'tx_dropped': 0}},
}


def fake_guest(docker_state: dict, stats: dict) -> guest.Guest:
    """A specced Guest whose workload has ``docker_state``."""
    found = mock.create_autospec(guest.Guest, instance=True)
    found.state.return_value = guest.ContainerState.from_docker(docker_state)
    found.stats.return_value = stats
    return found


class InstanceDiagnosticsTest(testtools.TestCase):

    def test_running(self):
        found = fake_guest({'Status': 'running', 'Running': True,
                            'StartedAt': '2020-01-01T00:00:00.1234Z'}, STATS)
        diags = diagnostics.instance_diagnostics(found)
        self.assertEqual(power_state.STATE_MAP[power_state.RUNNING],
                         diags.state)
        self.assertEqual('docker', diags.hypervisor)
        self.assertFalse(diags.config_drive)
        self.assertEqual([100, 200], [c.time for c in diags.cpu_details])
        self.assertEqual(256, diags.memory_details.maximum)
        self.assertEqual(10, diags.memory_details.used)
        nic = diags.nic_details[0]
        self.assertEqual((11, 22, 3, 4),
                         (nic.rx_octets, nic.tx_octets, nic.tx_errors,
                          nic.rx_drop))
        self.assertGreater(diags.uptime, 6 * 365 * 24 * 3600)
        found.stats.assert_called_once_with()

    def test_stopped_has_no_uptime(self):
        diags = diagnostics.instance_diagnostics(fake_guest(
            {'Status': 'exited', 'Running': False,
             'StartedAt': '2020-01-01T00:00:00Z'}, {}))
        self.assertIsNone(diags.uptime)
        self.assertEqual('shutdown', diags.state)
        self.assertEqual(0, diags.memory_details.maximum)

    def test_one_cpu_figure_without_per_cpu_usage(self):
        stats = {'cpu_stats': {'cpu_usage': {'total_usage': 7}}}
        diags = diagnostics.instance_diagnostics(fake_guest(
            {'Status': 'paused', 'Running': True, 'Paused': True}, stats))
        self.assertEqual([7], [c.time for c in diags.cpu_details])
        self.assertEqual('paused', diags.state)
        self.assertIsNone(diags.uptime)     # no StartedAt


class LegacyDiagnosticsTest(testtools.TestCase):

    def test_legacy(self):
        result = diagnostics.legacy_diagnostics(STATS)
        self.assertEqual(300, result['cpu0_time'])
        self.assertEqual(256 * 1024, result['memory'])
        self.assertEqual(10 * 1024, result['memory-actual'])
        self.assertEqual(11, result['eth0_rx'])
        self.assertEqual(22, result['eth0_tx'])

    def test_no_stats_no_nics(self):
        self.assertEqual({'cpu0_time': 0, 'memory': 0, 'memory-actual': 0},
                         diagnostics.legacy_diagnostics({}))
