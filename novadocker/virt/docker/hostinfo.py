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

"""What the compute host offers, as Nova's resource tracker wants it.

CPU and memory come from the engine (``docker info``, which sees the
cgroup limits Docker itself runs under), disk from the filesystem that holds
Docker's data root, since that is where image layers and container writable
layers live.
"""

import dataclasses
import os
import re
import threading
import time
import typing

from nova.i18n import _
from nova.objects import fields as obj_fields
import os_resource_classes as orc
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import units

from novadocker import conf
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import guest

CONF = conf.CONF
LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class HostResources:
    vcpus: int
    memory_mb: int
    memory_mb_used: int
    disk_gb: int
    disk_gb_used: int
    arch: str
    docker_version: str
    docker_root: str

    @property
    def hypervisor_version(self) -> int:
        """'20.10.24+dfsg1' -> 20010024, the integer form Nova stores."""
        parts = [int(p) for p in re.findall(r'\d+', self.docker_version)[:3]]
        parts += [0] * (3 - len(parts))
        return parts[0] * 1000000 + parts[1] * 1000 + parts[2]

    def cpu_info(self) -> str:
        return jsonutils.dumps({'arch': self.arch, 'model': 'container',
                                'vendor': 'docker',
                                'topology': {'cells': 1, 'sockets': 1,
                                             'cores': self.vcpus,
                                             'threads': 1},
                                'features': []})


def _memory_used_mb() -> int:
    """Host memory in use (total minus available) from /proc/meminfo."""
    values = {}
    with open('/proc/meminfo') as meminfo:
        for line in meminfo:
            key, _sep, rest = line.partition(':')
            values[key] = int(rest.split()[0])
    return (values['MemTotal'] - values['MemAvailable']) // 1024


def _statvfs(root: str) -> os.statvfs_result:
    """The filesystem of Docker's data root, as seen from here.

    nova-compute may run where that path is not visible (in a container,
    as Kolla deploys it, or against a remote engine): then the filesystem
    of [DEFAULT]instances_path stands in, with a warning, rather than the
    resource tracker failing on every pass.
    """
    try:
        return os.statvfs(root)
    except OSError as exc:
        LOG.warning('Cannot read the Docker data root %(root)s (%(err)s); '
                    'reporting the disk of instances_path %(path)s instead. '
                    'Mount %(root)s into nova-compute for a true figure.',
                    {'root': root, 'err': exc,
                     'path': CONF.instances_path})
        return os.statvfs(CONF.instances_path)


def docker_info(api) -> dict:
    """One ``docker info`` call."""
    with docker_client.translate_errors('info'):
        return api.info()


class EngineInfo:
    """``docker info`` read once per resource-tracker pass, not per call.

    Nova's update_available_resource asks get_available_resource and then
    update_provider_tree, and every claim asks update_provider_tree again;
    what they read (CPUs, memory, data root, runtimes) changes only when
    dockerd is reconfigured and restarted. The periodic pass reads it
    fresh (``fresh=True``); the calls in between reuse it up to
    ``max_age`` seconds; ``forget`` drops it when the engine comes back.
    """

    def __init__(self, api_getter: typing.Callable, max_age: float = 60.0,
                 clock: typing.Callable[[], float] = time.monotonic):
        self._api_getter = api_getter
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._read: typing.Optional[typing.Tuple[float, dict]] = None

    def get(self, fresh: bool = False) -> dict:
        with self._lock:
            read = self._read
        if (not fresh and read is not None
                and self._clock() - read[0] < self._max_age):
            return read[1]
        info = docker_info(self._api_getter())
        with self._lock:
            self._read = (self._clock(), info)
        return info

    def forget(self) -> None:
        with self._lock:
            self._read = None


def read_host(api, info: typing.Optional[dict] = None) -> HostResources:
    """``docker info`` (unless given) plus a statvfs of the data root."""
    if info is None:
        info = docker_info(api)
    root = info.get('DockerRootDir') or '/var/lib/docker'
    stat = _statvfs(root)
    total = stat.f_blocks * stat.f_frsize
    free = stat.f_bavail * stat.f_frsize
    arch = obj_fields.Architecture.canonicalize(
        info.get('Architecture') or os.uname().machine)
    return HostResources(
        vcpus=int(info.get('NCPU') or os.cpu_count()),
        memory_mb=int(info['MemTotal']) // units.Mi,
        memory_mb_used=_memory_used_mb(),
        disk_gb=total // units.Gi,
        disk_gb_used=(total - free) // units.Gi,
        arch=arch,
        docker_version=info.get('ServerVersion', '0'),
        docker_root=root)


def resource_dict(host: HostResources, nodename: str) -> dict:
    """The dict get_available_resource returns."""
    return {
        'vcpus': host.vcpus,
        'memory_mb': host.memory_mb,
        'local_gb': host.disk_gb,
        'vcpus_used': 0,   # the resource tracker counts instance claims
        'memory_mb_used': host.memory_mb_used,
        'local_gb_used': host.disk_gb_used,
        'hypervisor_type': obj_fields.HVType.DOCKER,
        'hypervisor_version': host.hypervisor_version,
        'hypervisor_hostname': nodename,
        'cpu_info': host.cpu_info(),
        'disk_available_least': host.disk_gb - host.disk_gb_used,
        'supported_instances': [(host.arch, obj_fields.HVType.DOCKER,
                                 obj_fields.VMMode.EXE)],
        'numa_topology': None,
    }


def inventory(host: HostResources, ratios: dict,
              reserved_disk_gb: int) -> dict:
    """The placement inventory of the node: VCPU, MEMORY_MB, DISK_GB.

    :param ratios: allocation ratio per resource class (the driver's
        ``_get_allocation_ratios``)
    """
    def record(total: int, resource_class: str, reserved: int) -> dict:
        return {'total': total, 'min_unit': 1, 'max_unit': total,
                'step_size': 1, 'allocation_ratio': ratios[resource_class],
                'reserved': reserved}
    return {
        orc.VCPU: record(host.vcpus, orc.VCPU, CONF.reserved_host_cpus),
        orc.MEMORY_MB: record(host.memory_mb, orc.MEMORY_MB,
                              CONF.reserved_host_memory_mb),
        orc.DISK_GB: record(host.disk_gb, orc.DISK_GB, reserved_disk_gb),
    }


def uptime() -> str:
    """The host's uptime as get_host_uptime reports it."""
    with open('/proc/uptime') as found:
        seconds = float(found.read().split()[0])
    return _('up %d seconds') % seconds


@dataclasses.dataclass(frozen=True)
class EngineFeatures:
    """What of ``docker info`` the driver checks at start-up."""
    runtimes: typing.FrozenSet[str]
    userns_remap: bool
    live_restore: bool


def read_engine(api) -> EngineFeatures:
    """One ``docker info`` call."""
    info = docker_info(api)
    return EngineFeatures(
        runtimes=frozenset(info.get('Runtimes') or {}),
        userns_remap=any('name=userns' in opt
                         for opt in info.get('SecurityOptions') or ()),
        live_restore=bool(info.get('LiveRestoreEnabled')))


def runtime_traits(api, info: typing.Optional[dict] = None
                   ) -> typing.Set[str]:
    """CUSTOM_DOCKER_RUNTIME_<NAME> of each runtime a flavor may ask for
    on this host (from ``info`` if given)."""
    if info is None:
        info = docker_info(api)
    return {guest.runtime_trait(r) for r in guest.usable_runtimes(info)}
