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

"""Server diagnostics from ``docker inspect`` and ``docker stats``."""

from nova.compute import power_state
from nova.objects import diagnostics as diagnostics_obj
from oslo_utils import timeutils

from novadocker.virt.docker import guest as guest_mod


def _uptime(state: guest_mod.ContainerState):
    if state.started_at is None:
        return None
    return int((timeutils.utcnow(with_timezone=True) -
                state.started_at).total_seconds())


def instance_diagnostics(guest: guest_mod.Guest
                         ) -> diagnostics_obj.Diagnostics:
    """The versioned diagnostics object (API microversion 2.48+), from the
    workload's state and one ``docker stats``.

    ``driver`` stays unset: Nova's HypervisorDriver enum has no docker.
    """
    state = guest.state()
    stats = guest.stats()
    diags = diagnostics_obj.Diagnostics(
        state=power_state.STATE_MAP[state.power_state], hypervisor='docker',
        hypervisor_os='linux', uptime=_uptime(state), config_drive=False)
    cpu = stats.get('cpu_stats', {}).get('cpu_usage', {})
    per_cpu = cpu.get('percpu_usage') or [cpu.get('total_usage', 0)]
    for index, used_ns in enumerate(per_cpu):
        diags.add_cpu(id=index, time=used_ns)
    memory = stats.get('memory_stats', {})
    diags.memory_details = diagnostics_obj.MemoryDiagnostics(
        maximum=memory.get('limit', 0) // (1024 * 1024),
        used=memory.get('usage', 0) // (1024 * 1024))
    for nic in (stats.get('networks') or {}).values():
        diags.add_nic(rx_octets=nic.get('rx_bytes'),
                      rx_errors=nic.get('rx_errors'),
                      rx_drop=nic.get('rx_dropped'),
                      rx_packets=nic.get('rx_packets'),
                      tx_octets=nic.get('tx_bytes'),
                      tx_errors=nic.get('tx_errors'),
                      tx_drop=nic.get('tx_dropped'),
                      tx_packets=nic.get('tx_packets'))
    return diags


def legacy_diagnostics(stats: dict) -> dict:
    """The free-form dict of the pre-2.48 diagnostics API."""
    cpu = stats.get('cpu_stats', {}).get('cpu_usage', {})
    memory = stats.get('memory_stats', {})
    result = {'cpu0_time': cpu.get('total_usage', 0),
              'memory': memory.get('limit', 0) // 1024,
              'memory-actual': memory.get('usage', 0) // 1024}
    for name, nic in (stats.get('networks') or {}).items():
        result['%s_rx' % name] = nic.get('rx_bytes', 0)
        result['%s_tx' % name] = nic.get('tx_bytes', 0)
    return result
