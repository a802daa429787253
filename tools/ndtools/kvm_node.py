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
"""A KVM node of the multi-node all-in-one (issue 15): a node
(ndtools.node) that runs libvirtd and QEMU instead of a Docker engine.

Why a mount namespace: a privileged libvirtd has its paths compiled in
(/etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt,
/var/cache/libvirt); only one could run per machine, and it would see the
host's Open vSwitch. The node's libvirtd therefore runs in the node's
network namespace (``nsenter --net``) and in a private mount namespace
of its own (``unshare --mount --propagation private``) in which those
directories are bind mounts of the node's files, and /run/openvswitch is
the node's OVS run directory, and in a UTS namespace named after the
node (libvirt's hostname: nova's compute node name). What libvirt runs
for an interface with ``<virtualport type='openvswitch'/>``
(``ovs-vsctl ... add-port br-int tapX``) thus reaches the node's
ovsdb-server; OVS_RUNDIR is set as well.
A host libvirtd (none runs here) is not disturbed: the host's mount
namespace gets nothing but empty mount points.

Clients outside reach it through the socket in the node's files:
``qemu:///system?socket=<node>/libvirt/run/libvirt/libvirt-sock``.

qemu.conf: QEMU runs as root without a security driver, cgroups,
private /dev or virtlogd (stdio to a file; QEMU writes a console's
``<log file=...>`` itself): nothing of those exists in a node, and
libvirtd must not change the host's cgroups.

Verified by tests/tools/test_kvm_node.py (Debian 12: libvirt 9.0, QEMU
7.2, OVS 3.1): vm-tiny boots from nova-shaped domain XML, its tap lands
on the node's br-int with nova's external_ids (the host's OVS has no
such port), DHCP, ping both ways and TCP work, destroy removes tap and
port, down leaves nothing.

Standard library only, like node.py.
"""

import os
import subprocess
import typing
from xml.sax import saxutils

from ndtools import aio_state
from ndtools import host
from ndtools import node
from ndtools import vmimage

INTEGRATION_BRIDGE = 'br-int'
NETNS_PREFIX = 'aio-kvm'
#: The host's paths of a privileged libvirtd, each a directory of the
#: node's in the daemon's mount namespace.
LIBVIRT_DIRS = ('/etc/libvirt', '/run/libvirt', '/var/lib/libvirt',
                '/var/log/libvirt', '/var/cache/libvirt')
OVS_HOST_RUN = '/run/openvswitch'
#: Debian's libvirt resolves its compiled-in QEMU user
#: and group before it reads qemu.conf; libvirt-daemon-system's postinst would add
#: it, but that package brings polkit and service scripts a node does
#: not use.
QEMU_USER = QEMU_GROUP = 'libvirt-qemu'
LIBVIRTD_CONF = '''# The node's libvirtd (ndtools.kvm_node): local socket only.
listen_tls = 0
listen_tcp = 0
unix_sock_group = "root"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
'''
QEMU_CONF = '''# The node's QEMU driver (ndtools.kvm_node): no security driver,
# cgroups, private /dev or virtlogd in a node.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
'''


def mount_script(binds: typing.Sequence[typing.Tuple[str, str]],
                 argv: typing.Sequence[str], hostname: str) -> str:
    """sh: the UTS namespace's hostname, bind each (source, target), a
    /sys of the network namespace (libvirt looks links up there), then
    exec argv."""
    lines = ['set -e', "hostname '%s'" % hostname]
    for source, target in binds:
        lines.append("mount --bind '%s' '%s'" % (source, target))
    lines.append('mount -t sysfs -o nosuid,nodev,noexec sysfs /sys')
    lines.append('exec ' + ' '.join("'%s'" % a for a in argv))
    return '\n'.join(lines)


class Interface(typing.NamedTuple):
    """A VIF as nova's libvirt driver writes it for an OVS port (os-vif
    VIFOpenVSwitch: OVN, no hybrid plug)."""
    mac: str
    iface_id: str        # the Neutron port's ID: OVN's iface-id
    tap: str             # 'tap' + the first 11 characters of the ID
    bridge: str = INTEGRATION_BRIDGE
    mtu: typing.Optional[int] = None


def interface_xml(vif: Interface) -> str:
    q = saxutils.quoteattr
    mtu = '\n      <mtu size=%s/>' % q(str(vif.mtu)) if vif.mtu else ''
    return (
        "    <interface type='bridge'>\n"
        "      <mac address=%s/>\n"
        "      <source bridge=%s/>\n"
        "      <virtualport type='openvswitch'>\n"
        "        <parameters interfaceid=%s/>\n"
        "      </virtualport>\n"
        "      <target dev=%s/>\n"
        "      <model type='virtio'/>%s\n"
        "    </interface>\n" % (q(vif.mac), q(vif.bridge), q(vif.iface_id),
                                 q(vif.tap), mtu))


def domain_xml(name: str, virt_type: str, kernel: str, initrd: str,
               cmdline: str, console_log: str,
               interfaces: typing.Sequence[Interface] = (),
               memory_mb: int = 128) -> str:
    """A direct-kernel-boot domain as nova writes one for an image with
    kernel_id/ramdisk_id (virt_type 'kvm' or 'qemu', i.e. TCG), the
    serial console a pty logged to ``console_log`` (nova's console.log;
    with stdio_handler "file" QEMU writes it, no virtlogd)."""
    q, e = saxutils.quoteattr, saxutils.escape
    cpu = "  <cpu mode='host-passthrough'/>\n" if virt_type == 'kvm' else ''
    return (
        "<domain type=%s>\n"
        "  <name>%s</name>\n"
        "  <memory unit='MiB'>%d</memory>\n"
        "  <vcpu>1</vcpu>\n"
        "  <os>\n"
        "    <type arch='x86_64' machine='pc'>hvm</type>\n"
        "    <kernel>%s</kernel>\n"
        "    <initrd>%s</initrd>\n"
        "    <cmdline>%s</cmdline>\n"
        "  </os>\n"
        "  <features><acpi/><apic/></features>\n%s"
        "  <clock offset='utc'/>\n"
        "  <on_poweroff>destroy</on_poweroff>\n"
        "  <on_reboot>restart</on_reboot>\n"
        "  <on_crash>destroy</on_crash>\n"
        "  <devices>\n%s"
        "    <serial type='pty'>\n"
        "      <log file=%s append='off'/>\n"
        "    </serial>\n"
        "    <memballoon model='none'/>\n"
        "  </devices>\n"
        "</domain>\n" % (
            q(virt_type), e(name), memory_mb, e(kernel), e(initrd),
            e(cmdline), cpu, ''.join(interface_xml(i) for i in interfaces),
            q(console_log)))


def virt_type(dev_kvm: str = '/dev/kvm', sys_module: str = '/sys/module'
              ) -> typing.Tuple[str, str]:
    """nova's [libvirt] virt_type: ('kvm', '') where /dev/kvm boots a
    Debian kernel, else ('qemu', why not): TCG, with a warning to say."""
    accel, why = vmimage.accelerator(dev_kvm, sys_module)
    return ('kvm', '') if accel == 'kvm' else ('qemu', why)


def nova_compute_options(kvm: 'KvmNode', virt: str
                         ) -> typing.List[typing.Tuple[str, str, str]]:
    """(section, option, value) of the node's nova-compute with the
    libvirt driver, on top of a compute node's (host, my_ip, paths,
    privsep; aio_nodes.ComputeNode.nova_conf_overrides).

    cpu_mode: TCG emulates no host CPU model ('none'); KVM passes the
    host's through (the node is its own host). VNC off: no proxy for a
    node's guests; the serial console is the way in.
    """
    if virt not in ('kvm', 'qemu'):
        raise ValueError('virt_type is kvm or qemu, not %r' % virt)
    ovsdb = 'unix:' + kvm.ovs_socket
    return [('DEFAULT', 'compute_driver', 'libvirt.LibvirtDriver'),
            ('DEFAULT', 'host', kvm.name),
            ('DEFAULT', 'my_ip', kvm.address),
            ('libvirt', 'virt_type', virt),
            ('libvirt', 'connection_uri', kvm.connection_uri),
            ('libvirt', 'cpu_mode',
             'host-passthrough' if virt == 'kvm' else 'none'),
            ('vnc', 'enabled', 'False'),
            ('os_vif_ovs', 'ovsdb_connection', ovsdb)]


def ensure_qemu_user() -> None:
    """The system user libvirt insists on (QEMU itself runs as root)."""
    if not node.quiet('getent', 'group', QEMU_GROUP):
        aio_state.sh('groupadd', '--system', QEMU_GROUP)
    if not node.quiet('getent', 'passwd', QEMU_USER):
        aio_state.sh('useradd', '--system', '--gid', QEMU_GROUP,
                     '--home-dir', '/var/lib/libvirt', '--no-create-home',
                     '--shell', '/usr/sbin/nologin', QEMU_USER)


class KvmNode(node.Node):
    """Node K as a hypervisor: its namespace, userspace OVS with br-int,
    and libvirtd; no Docker engine."""

    # kvmK, not nodeK: a docker node K's directory is never a KVM
    # node's (nor listed by aio_nodes.existing_numbers).
    DIR_PREFIX = 'kvm'

    def __init__(self, number: int, base_dir: typing.Optional[str] = None,
                 underlay: typing.Optional[node.Underlay] = None):
        super().__init__(number, base_dir=base_dir, underlay=underlay)
        # aio-kvmK, not aio-nodeK: docker nodes and KVM nodes share the
        # numbers 2..254 and the underlay, never a name.
        self.name = '%s%d' % (NETNS_PREFIX, number)
        self.netns = self.name
        self.host_link = '%s-u' % self.name

    # -- paths ---------------------------------------------------------------

    def libvirt_dir(self, host_path: str) -> str:
        """The node's directory for one of LIBVIRT_DIRS."""
        return os.path.join(self.dir, 'libvirt', host_path.strip('/'))

    @property
    def libvirt_socket(self) -> str:
        return os.path.join(self.libvirt_dir('/run/libvirt'), 'libvirt-sock')

    @property
    def connection_uri(self) -> str:
        return 'qemu:///system?socket=' + self.libvirt_socket

    @property
    def libvirtd_log(self) -> str:
        return os.path.join(self.libvirt_dir('/var/log/libvirt'),
                            'libvirtd.log')

    def domain_log(self, domain: str) -> str:
        return os.path.join(self.libvirt_dir('/var/log/libvirt'), 'qemu',
                            domain + '.log')

    # -- commands ------------------------------------------------------------

    def binds(self) -> typing.List[typing.Tuple[str, str]]:
        pairs = [(self.libvirt_dir(p), p) for p in LIBVIRT_DIRS]
        return pairs + [(self.ovs_run, OVS_HOST_RUN)]

    def libvirtd_argv(self) -> typing.List[str]:
        """libvirtd in the node's network namespace, a private mount
        namespace and a UTS namespace named after the node (nsenter and
        unshare exec: the PID is libvirtd's). The hostname is what
        libvirt reports and nova's libvirt driver names its compute node
        (hypervisor_hostname) after: the host's name is the host's
        compute node's already."""
        daemon = self.ovs_env() + [
            'libvirtd', '--config',
            os.path.join(self.libvirt_dir('/etc/libvirt'), 'libvirtd.conf'),
            '--pid-file', os.path.join(self.s.run, 'libvirtd.own.pid')]
        return self.in_net_only(
            'unshare', '--mount', '--uts', '--propagation', 'private', 'sh',
            '-c', mount_script(self.binds(), daemon, self.name))

    def virsh_argv(self, *args: str) -> typing.List[str]:
        return ['virsh', '-q', '-c', self.connection_uri] + list(args)

    def virsh(self, *args: str) -> str:
        return aio_state.sh(*self.virsh_argv(*args), stdout=subprocess.PIPE,
                            text=True).stdout

    # -- status --------------------------------------------------------------

    def libvirtd_ok(self) -> bool:
        return node.quiet(*self.virsh_argv('version'))

    def status(self) -> typing.Dict[str, bool]:
        found = super().status()
        del found['dockerd']
        found['br-int'] = node.quiet(*self.vsctl_argv(
            'br-exists', INTEGRATION_BRIDGE))
        found['libvirtd'] = self.libvirtd_ok()
        return found

    # -- up ------------------------------------------------------------------

    def up(self) -> None:
        """Like Node.up, with libvirtd instead of dockerd."""
        self.up_to_ovs()
        self.vsctl('--may-exist', 'add-br', INTEGRATION_BRIDGE, '--', 'set',
                   'bridge', INTEGRATION_BRIDGE, 'datapath_type=netdev')
        self.start_libvirtd()
        print('%s up: underlay %s, OVS %s, libvirt %s' % (
            self.name, self.address, self.ovs_socket, self.connection_uri),
            flush=True)

    def write_libvirt_config(self) -> None:
        for path in LIBVIRT_DIRS:
            os.makedirs(self.libvirt_dir(path), exist_ok=True)
            # The mount point in the host's namespace: empty, unused.
            os.makedirs(path, exist_ok=True)
        etc = self.libvirt_dir('/etc/libvirt')
        for name, text in (('libvirtd.conf', LIBVIRTD_CONF),
                           ('qemu.conf', QEMU_CONF)):
            with open(os.path.join(etc, name), 'w') as f:
                f.write(text)

    def start_libvirtd(self) -> None:
        if self.libvirtd_ok():
            return
        ensure_qemu_user()
        self.write_libvirt_config()
        self.state.stop_pid('libvirtd')
        host.remove_stale_socket(self.libvirt_socket)
        self.state.start_svc('libvirtd', *self.libvirtd_argv())
        self.state.wait_ready('libvirtd', self.libvirtd_ok, 120)

    # -- down ----------------------------------------------------------------

    def down(self) -> None:
        """QEMU and libvirtd go with whatever else runs in the namespace
        (Node.down kills it); libvirtd first, so it restarts nothing."""
        self.state.stop_pid('libvirtd')
        super().down()
