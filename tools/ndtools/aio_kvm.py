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
"""The KVM compute node of the all-in-one (issue 15): VMs beside the
containers, on the same Neutron networks.

``KvmComputeNode`` is an aio compute node (aio_nodes.ComputeNode: relay,
ovn-controller chassis, nova-compute, status, down) whose node part is a
kvm_node.KvmNode (namespace aio-kvmK, userspace OVS with br-int, libvirtd
in its own mount and UTS namespaces) instead of a docker node; its
nova-compute runs ``libvirt.LibvirtDriver`` (kvm_node.nova_compute_options:
virt_type kvm, or qemu with a warning where /dev/kvm cannot boot Debian's
kernel). Files under AIO_DIR/nodes/kvmK.

K is KVM_NUMBER: docker nodes are 2..aio_nodes.MAX_NODES, and node K's
underlay address is 10.250.0.K whatever its kind, so the KVM node takes a
number no docker node has.

What it needs beyond the aio's packages (install_kvm): Debian's libvirt
daemon and QEMU (KVM_DEBS, without recommends: the firmware QEMU loads is
named), qemu-img (Nova inspects and converts every image with it), and
libvirt-python in the aio's venv, built from PyPI against libvirt-dev
with pkg-config (the libvirt driver imports it).

Standard library only.
"""

import re
import subprocess
import typing

from ndtools import aio_nodes
from ndtools import aio_services
from ndtools import aio_state
from ndtools import host
from ndtools import kvm_node
from ndtools import node

KVM_NUMBER = 10
KVM_MARK = 'kvm-node'        # RUN/started: add-kvm-node made it
KVM_DEBS = ('libvirt-daemon', 'libvirt-daemon-driver-qemu',
            'libvirt-clients', 'qemu-system-x86', 'qemu-utils', 'seabios',
            'ipxe-qemu', 'libvirt-dev', 'pkg-config')
#: Built against Debian 12's libvirt 9.0 (a newer binding builds too, but
#: this one matches the daemon's API).
LIBVIRT_PYTHON = 'libvirt-python==9.0.0'
KVM_DAEMONS = ('ovsdb-server', 'ovs-vswitchd', 'libvirtd')
# The docker-format images' hypervisor_type: what nova-docker reports
# (hostinfo: supported_instances (arch, 'docker', 'exe')).
DOCKER_HV_TYPE = 'docker'
#: Nova's image safety check reads a bzImage's real-mode boot sector as an
#: MBR with invalid boot flags and refuses the kernel_id image
#: (nova.virt.images.do_image_deep_inspection); vm-tiny's disk is zeros.
#: The KVM node boots only the images tools/aio uploads.
NO_DEEP_INSPECTION = ('workarounds', 'disable_deep_image_inspection', 'True')


def install_kvm(settings: aio_state.Settings,
                installed: typing.Callable[[str], bool] = host.dpkg_installed,
                apt_install: typing.Callable = host.apt_install) -> bool:
    """KVM_DEBS that are missing, then libvirt-python in the venv unless
    it imports."""
    if aio_services.apt_missing(KVM_DEBS, installed, apt_install) is None:
        return False
    python = settings.exe('python')
    if subprocess.run([python, '-c', 'import libvirt']).returncode == 0:
        print('libvirt-python present', flush=True)
        return True
    aio_state.sh(settings.exe('pip'), 'install', LIBVIRT_PYTHON)
    aio_state.sh(python, '-c', 'import libvirt')
    return True


def conf_options(options: typing.Iterable[typing.Tuple[str, str, str]]
                 ) -> typing.List[typing.Tuple[str, str, str]]:
    """``options`` with one value per (section, option): the last one,
    at the place of the first."""
    found: typing.Dict[typing.Tuple[str, str], str] = {}
    for section, key, value in options:
        found[section, key] = value
    return [(section, key, value) for (section, key), value in found.items()]


class KvmComputeNode(aio_nodes.ComputeNode, kvm_node.KvmNode):
    """aio-kvmK: ComputeNode's relay, chassis and nova-compute on a
    KvmNode, nova-compute with the libvirt driver."""

    def __init__(self, number: int, settings: aio_state.Settings, top: str,
                 underlay: typing.Optional[node.Underlay] = None,
                 virt: typing.Optional[typing.Tuple[str, str]] = None):
        super().__init__(number, settings, top, underlay)
        self._virt = virt

    @property
    def virt(self) -> typing.Tuple[str, str]:
        """(virt_type, why not kvm), found once."""
        if self._virt is None:
            self._virt = kvm_node.virt_type()
        return self._virt

    def nova_compute_argv(self) -> typing.List[str]:
        """No DOCKER_HOST: the driver talks to the node's libvirtd."""
        return self.in_net_only(self.aio.exe('nova-compute'),
                                *self.config_args())

    def nova_conf_text(self, host_conf_text: str) -> str:
        """A compute node's, without the host's [docker] section (the
        host's engine and OVS: nothing of this node's)."""
        return super().nova_conf_text(without_sections(host_conf_text,
                                                       ('docker',)))

    def nova_conf_overrides(self, host_conf_text: str
                            ) -> typing.List[typing.Tuple[str, str, str]]:
        """A compute node's, then the libvirt driver's on top (its host
        and my_ip are the same); no [docker] section."""
        found = [o for o in super().nova_conf_overrides(host_conf_text)
                 if o[0] != 'docker']
        return conf_options(found + kvm_node.nova_compute_options(
            self, self.virt[0]) + [NO_DEEP_INSPECTION])

    def daemon_pids(self) -> typing.Dict[str, typing.Optional[int]]:
        """Its daemons, then each guest's QEMU (``qemu PID``): status
        shows their RSS with the rest, in the total."""
        found = {name: self.state.pid(name)
                 for name in KVM_DAEMONS + aio_nodes.COMPUTE_DAEMONS}
        for pid in self.qemu_pids():
            found['qemu %d' % pid] = pid
        return found

    def qemu_pids(self) -> typing.List[int]:
        """The guests' QEMU processes (in the node's namespace)."""
        return sorted(pid for pid in self.leftover_pids()
                      if is_qemu(pid))

    def up_compute(self, wait_compute: typing.Callable[[str, int, int],
                                                       bool]) -> None:
        virt, why = self.virt
        if why:
            print('WARNING: %s: virt_type = %s (TCG), not kvm: %s' % (
                self.name, virt, why), flush=True)
        super().up_compute(wait_compute)


def without_sections(conf_text: str, names: typing.Sequence[str]) -> str:
    """An ini text without the sections ``names`` (headers and options)."""
    kept, skip = [], False
    for line in conf_text.splitlines():
        header = re.match(r'\s*\[([^\]]+)\]', line)
        if header:
            skip = header.group(1) in names
        if not skip:
            kept.append(line)
    return '\n'.join(kept) + '\n'


def is_qemu(pid: int) -> bool:
    try:
        with open('/proc/%d/comm' % pid) as f:
            return f.read().startswith('qemu-system')
    except OSError:
        return False
