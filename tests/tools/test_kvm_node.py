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

"""A KVM node (ndtools.kvm_node): its commands and domain XML (unit
tests), and a bare node brought up for real with vm-tiny booted by its
libvirtd on its userspace OVS (KvmNodeBootTest: root, the host's Open
vSwitch, libvirtd, QEMU; it fails in CI when they are missing, it never
skips there).

The real test touches only what it makes: namespaces aio-kvm250 and
kvt-dhcp-PID, the veth aio-kvm250-u on a host OVS bridge of its own,
kvt-underlay (10.251.0.1/24: not aio-underlay, which a running
all-in-one may own), and inside the node br-int, the VM's tap and the
veth kvt-dh0/kvt-dh1 to the DHCP server (192.168.198.1/24). Nothing is
routed out.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from xml.etree import ElementTree

import testtools

from ndtools import host
from ndtools import kvm_node
from ndtools import node
from ndtools import vmimage
from tests.fixtures.commands import run
from tests.fixtures import host as host_fixtures
from tests.fixtures import vmguest


class KvmNodeCommandsTest(testtools.TestCase):
    """libvirtd runs in the node's namespaces on the node's files."""

    def setUp(self):
        super().setUp()
        self.node = kvm_node.KvmNode(3, base_dir='/srv/nodes')

    def test_names_are_not_a_docker_nodes(self):
        n = self.node
        self.assertEqual('aio-kvm3', n.netns)
        self.assertEqual('aio-kvm3-u', n.host_link)
        self.assertEqual('10.250.0.3', n.address)
        self.assertLessEqual(len(kvm_node.KvmNode(254).host_link), 15)
        self.assertEqual(
            'qemu:///system?socket=/srv/nodes/kvm3/libvirt/run/libvirt/'
            'libvirt-sock', n.connection_uri)

    def test_libvirtd_in_the_nodes_network_and_its_own_mounts(self):
        argv = self.node.libvirtd_argv()
        self.assertEqual(['nsenter', '--net=/run/netns/aio-kvm3', 'unshare',
                          '--mount', '--uts', '--propagation', 'private',
                          'sh', '-c'], argv[:9])
        script = argv[9].splitlines()
        self.assertEqual(['set -e', "hostname 'aio-kvm3'"], script[:2])
        for path in kvm_node.LIBVIRT_DIRS:
            self.assertIn("mount --bind '/srv/nodes/kvm3/libvirt%s' '%s'"
                          % (path, path), script)
        # ovs-vsctl run by libvirt finds the node's db.sock by default.
        self.assertIn("mount --bind '/srv/nodes/kvm3/run/ovs' "
                      "'/run/openvswitch'", script)
        self.assertIn('mount -t sysfs -o nosuid,nodev,noexec sysfs /sys',
                      script)
        last = script[-1]
        self.assertTrue(last.startswith("exec 'env' "), last)
        self.assertIn("'OVS_RUNDIR=/srv/nodes/kvm3/run/ovs'", last)
        self.assertIn("'libvirtd' '--config' '/srv/nodes/kvm3/libvirt/etc/"
                      "libvirt/libvirtd.conf'", last)
        self.assertIn("'--pid-file' '/srv/nodes/kvm3/run/libvirtd.own.pid'",
                      last)
        self.assertNotIn('--listen', last)

    def test_config_keeps_libvirt_local_and_hands_off(self):
        self.assertIn('listen_tcp = 0', kvm_node.LIBVIRTD_CONF)
        self.assertIn('auth_unix_rw = "none"', kvm_node.LIBVIRTD_CONF)
        self.assertIn('unix_sock_rw_perms = "0700"', kvm_node.LIBVIRTD_CONF)
        for line in ('security_driver = "none"', 'cgroup_controllers = [ ]',
                     'stdio_handler = "file"', 'namespaces = [ ]'):
            self.assertIn(line, kvm_node.QEMU_CONF)

    def test_virsh_uses_the_nodes_socket(self):
        self.assertEqual(['virsh', '-q', '-c', self.node.connection_uri,
                          'list'], self.node.virsh_argv('list'))

    def test_domain_xml_is_novas_ovs_vif_and_kernel_boot(self):
        vif = kvm_node.Interface('fa:16:3e:00:00:01', 'port-id',
                                 'tapport-id', mtu=1442)
        root = ElementTree.fromstring(kvm_node.domain_xml(
            'vm<1>', 'qemu', '/i/k', '/i/r', 'console=ttyS0 panic=-1',
            '/t/console.log', [vif]))
        self.assertEqual('qemu', root.get('type'))
        self.assertEqual('vm<1>', root.findtext('name'))
        self.assertEqual('/i/k', root.findtext('os/kernel'))
        self.assertEqual('/i/r', root.findtext('os/initrd'))
        self.assertEqual('console=ttyS0 panic=-1', root.findtext('os/cmdline'))
        self.assertIsNone(root.find('cpu'))
        iface = root.find('devices/interface')
        self.assertEqual('bridge', iface.get('type'))
        self.assertEqual('br-int', iface.find('source').get('bridge'))
        self.assertEqual('openvswitch', iface.find('virtualport').get('type'))
        self.assertEqual('port-id', iface.find(
            'virtualport/parameters').get('interfaceid'))
        self.assertEqual('tapport-id', iface.find('target').get('dev'))
        self.assertEqual('virtio', iface.find('model').get('type'))
        self.assertEqual('1442', iface.find('mtu').get('size'))
        self.assertEqual('pty', root.find('devices/serial').get('type'))
        self.assertEqual('/t/console.log', root.find(
            'devices/serial/log').get('file'))
        kvm = ElementTree.fromstring(kvm_node.domain_xml(
            'vm', 'kvm', '/k', '/r', '', '/c'))
        self.assertEqual('host-passthrough', kvm.find('cpu').get('mode'))
        self.assertIsNone(kvm.find('devices/interface'))


class NovaComputeOptionsTest(testtools.TestCase):
    """The node's nova-compute: libvirt driver on the node's libvirtd and
    OVS, virt_type by what /dev/kvm can boot."""

    def test_virt_type_kvm_only_where_it_boots_debian(self):
        kvm = self.useFixture(host_fixtures.FakeKvmFiles())

        def choose():
            return kvm_node.virt_type(kvm.dev_kvm, kvm.sys_module)
        self.assertEqual('qemu', choose()[0])
        kvm.add_dev_kvm()
        kvm.load_module('kvm_pvm')
        virt, why = choose()
        self.assertEqual('qemu', virt)
        self.assertIn('PVM', why)
        kvm.load_module('kvm_intel')
        self.assertEqual(('kvm', ''), choose())

    def test_options(self):
        n = kvm_node.KvmNode(4, base_dir='/srv/nodes')
        options = {(section, key): value for section, key, value
                   in kvm_node.nova_compute_options(n, 'qemu')}
        self.assertEqual({
            ('DEFAULT', 'compute_driver'): 'libvirt.LibvirtDriver',
            ('DEFAULT', 'host'): 'aio-kvm4',
            ('DEFAULT', 'my_ip'): '10.250.0.4',
            ('libvirt', 'virt_type'): 'qemu',
            ('libvirt', 'connection_uri'):
                'qemu:///system?socket=/srv/nodes/kvm4/libvirt/run/'
                'libvirt/libvirt-sock',
            ('libvirt', 'cpu_mode'): 'none',
            ('vnc', 'enabled'): 'False',
            ('os_vif_ovs', 'ovsdb_connection'):
                'unix:/srv/nodes/kvm4/run/ovs/db.sock'}, options)
        kvm = dict(((s, k), v) for s, k, v in
                   kvm_node.nova_compute_options(n, 'kvm'))
        self.assertEqual('kvm', kvm['libvirt', 'virt_type'])
        self.assertEqual('host-passthrough', kvm['libvirt', 'cpu_mode'])
        self.assertRaises(ValueError, kvm_node.nova_compute_options, n,
                          'xen')

    def test_options_are_novas(self):
        """Each option exists in nova 34 / os-vif with a valid value."""
        from nova.conf import compute, libvirt, netconf, vnc
        from oslo_config import cfg
        from vif_plug_ovs import ovs
        conf = cfg.ConfigOpts()
        for module in (compute, libvirt, netconf, vnc):
            module.register_opts(conf)
        conf.register_opts(ovs.OvsPlugin.CONFIG_OPTS, group='os_vif_ovs')
        n = kvm_node.KvmNode(4, base_dir='/srv/nodes')
        for virt in ('kvm', 'qemu'):
            for section, key, value in kvm_node.nova_compute_options(n, virt):
                group = None if section == 'DEFAULT' else section
                conf.set_override(key, value, group=group)
                got = (conf[group][key] if group else conf[key])
                self.assertEqual(value, str(got), (section, key))


# -- the real thing -----------------------------------------------------------

NUMBER = 250
SUBNET = '192.168.198'
TEST_UNDERLAY = node.Underlay('kvt-underlay', '10.251.0.1')
LOCK_FILE = '/tmp/nova-docker-kvm-node-test.lock'
# The test's links on the host: its underlay, the node's veth.
OUR_LINKS = r'kvt-|aio-kvm'


class KvmNodeBootTest(testtools.TestCase):
    """A KVM node up; its libvirtd boots vm-tiny with nova's OVS VIF on
    the node's br-int; DHCP, ping both ways and HTTP work; destroy and
    down leave nothing."""

    def setUp(self):
        super().setUp()
        self.useFixture(host_fixtures.HostLock(LOCK_FILE))
        host_fixtures.require(
            self, commands=('ip', 'nsenter', 'unshare', 'ovsdb-tool',
                            'ovsdb-server', 'ovs-vswitchd', 'ovs-vsctl',
                            'ovs-appctl', 'libvirtd', 'virsh',
                            'qemu-system-x86_64', 'apt-get', 'dpkg-deb'),
            executables=(vmimage.BUSYBOX,), paths=('/dev/net/tun',),
            host_ovs=True)
        self.node = kvm_node.KvmNode(NUMBER, underlay=TEST_UNDERLAY,
                                     base_dir=tempfile.mkdtemp(
                                         prefix='kvt-', dir='/var/tmp'))
        self.assertFalse(os.path.exists(self.node.netns_path),
                         '%s exists already: not ours' % self.node.netns)
        self.assertFalse(TEST_UNDERLAY.exists())
        self.links_before = host_fixtures.links_named(OUR_LINKS)
        # Runs last: after the node, the DHCP namespace and the files.
        self.addCleanup(self.check_nothing_left)
        self.addCleanup(shutil.rmtree, os.path.dirname(self.node.dir),
                        ignore_errors=True)
        self.addCleanup(self.node.clean)
        self.dhcp_netns = 'kvt-dhcp-%d' % os.getpid()
        self.dir = os.path.join(os.path.dirname(self.node.dir), 'test')
        os.makedirs(self.dir)

    def make_dhcp_server(self) -> None:
        """A second port on the node's br-int: a veth into a namespace
        with udhcpd (the VM's router and DHCP server)."""
        host_fixtures.add_netns(self, self.dhcp_netns)
        self.node.ip('link', 'add', 'kvt-dh0', 'type', 'veth', 'peer',
                     'name', 'kvt-dh1', 'netns', self.dhcp_netns)
        self.node.vsctl('add-port', kvm_node.INTEGRATION_BRIDGE, 'kvt-dh0')
        self.node.ip('link', 'set', 'kvt-dh0', 'up')
        ip = ['ip', '-n', self.dhcp_netns]
        run(*ip, 'addr', 'add', SUBNET + '.1/24', 'dev', 'kvt-dh1')
        run(*ip, 'link', 'set', 'kvt-dh1', 'up')
        # The node's OVS is a userspace datapath: the server's kernel
        # fills in its TX checksums.
        run(*host_fixtures.in_netns(
            self.dhcp_netns,
            *host_fixtures.checksums_in_software_argv('kvt-dh1')))
        vmguest.start_udhcpd(self, self.dhcp_netns, 'kvt-dh1', SUBNET,
                             self.dir)

    def domain_log(self) -> str:
        try:
            with open(self.node.domain_log(self.domain), 'rb') as f:
                return f.read().decode('utf-8', 'replace')[-3000:]
        except FileNotFoundError:
            return '(none)'

    def test_boot_on_the_nodes_ovs(self):
        manifest = vmimage.build_cached(log=print)
        virt_type, why = kvm_node.virt_type()
        if virt_type != 'kvm':
            print('WARNING: virt_type qemu (TCG), not kvm: %s' % why,
                  flush=True)
        n = self.node
        started = time.monotonic()
        n.up()
        up_seconds = time.monotonic() - started
        self.assertEqual({k: True for k in n.status()}, n.status())
        self.check_libvirtd_namespaces()
        self.make_dhcp_server()

        port_id = str(uuid.uuid4())
        vif = kvm_node.Interface('fa:16:3e:c0:ff:ee', port_id,
                                 'tap' + port_id[:11])
        self.domain = 'kvt-vm'
        console = vmguest.SerialConsole(
            self, os.path.join(self.dir, 'console.log'),
            hypervisor_log=lambda: 'domain log:\n' + self.domain_log())
        files = manifest['files']
        xml = os.path.join(self.dir, 'domain.xml')
        with open(xml, 'w') as f:
            f.write(kvm_node.domain_xml(
                self.domain, virt_type, files['kernel']['path'],
                files['initrd']['path'], vmimage.CMDLINE, console.path,
                [vif]))
        n.virsh('define', xml)
        started = time.monotonic()
        n.virsh('start', self.domain)
        self.check_vif_on_the_nodes_ovs(vif)

        console.wait_for_marker()
        marker_seconds = time.monotonic() - started
        address = console.wait_for_lease(SUBNET)
        lease_seconds = time.monotonic() - started
        # Guest to server: the guest pings its router by itself.
        console.wait(r'vm-tiny: router %s\.1 (answers|does not answer)'
                     ' ping' % re.escape(SUBNET), 60)
        self.assertIn('vm-tiny: router %s.1 answers ping' % SUBNET,
                      console.text())
        # Server to guest.
        ping = vmguest.ping(self.dhcp_netns, address)
        self.assertIn('3 packets transmitted, 3 packets received', ping)
        # TCP both ways through the userspace datapath, and the guest's
        # ping on demand (ndtools.vmimage's CGI).
        self.assertEqual('vm-tiny\n', vmguest.http_get(self.dhcp_netns,
                                                       address))
        self.assertIn('3 packets transmitted, 3 packets received',
                      vmguest.http_get(self.dhcp_netns, address,
                                       '/cgi-bin/ping?%s.1' % SUBNET))

        qemu_pid = self.qemu_pid()
        figures = ('aio-kvm node (virt_type %s, libvirt 9.0, OVS netdev): '
                   'node up %.1f s; vm-tiny marker %.1f s, lease %s %.1f s '
                   'after virsh start; RSS QEMU %.0f MiB, libvirtd %.0f MiB, '
                   'ovs-vswitchd %.0f MiB, ovsdb-server %.0f MiB' % (
                       virt_type, up_seconds, marker_seconds, address,
                       lease_seconds, host_fixtures.rss_mib(qemu_pid),
                       host_fixtures.rss_mib(n.state.pid('libvirtd')),
                       host_fixtures.rss_mib(n.state.pid('ovs-vswitchd')),
                       host_fixtures.rss_mib(n.state.pid('ovsdb-server'))))
        print(figures, flush=True)

        n.virsh('destroy', self.domain)
        n.virsh('undefine', self.domain)
        self.assertEqual('', n.virsh('list', '--all', '--name').strip())
        self.assertFalse(host.pid_alive(qemu_pid))
        self.assertNotIn(vif.tap, n.vsctl('list-ports', 'br-int').split())
        self.assertNotIn(vif.tap, run('ip', '-n', n.netns, '-o', 'link'))
        n.down()
        n.down()   # idempotent

    def test_down_after_a_partial_up(self):
        """up stopped after OVS (libvirtd never started): down still
        leaves nothing."""
        n = self.node
        n.up_to_ovs()
        status = n.status()
        self.assertFalse(status.pop('libvirtd'))
        self.assertFalse(status.pop('br-int'))
        self.assertEqual({k: True for k in status}, status)
        n.down()
        self.assertFalse(n.netns_exists())

    def check_libvirtd_namespaces(self):
        """libvirtd: the node's network, a mount namespace of its own in
        which /run/openvswitch is the node's OVS (never the host's)."""
        pid = self.node.state.pid('libvirtd')
        self.assertTrue(host.pid_alive(pid))
        self.assertEqual('net:[%d]' % os.stat(self.node.netns_path).st_ino,
                         os.readlink('/proc/%d/ns/net' % pid))
        for ns in ('mnt', 'uts'):
            self.assertNotEqual(os.readlink('/proc/self/ns/' + ns),
                                os.readlink('/proc/%d/ns/%s' % (pid, ns)))
        # nova's libvirt driver names its compute node after this.
        self.assertEqual(self.node.name, self.node.virsh('hostname').strip())
        inside = os.stat('/proc/%d/root/run/openvswitch/db.sock' % pid)
        self.assertEqual(os.stat(self.node.ovs_socket).st_ino,
                         inside.st_ino)
        for path in kvm_node.LIBVIRT_DIRS:
            self.assertEqual(
                os.stat(self.node.libvirt_dir(path)).st_ino,
                os.stat('/proc/%d/root%s' % (pid, path)).st_ino, path)
        # Its socket is in the node's files, not the host's /run/libvirt.
        self.assertTrue(os.path.exists(self.node.libvirt_socket))
        self.assertFalse(os.path.exists('/run/libvirt/libvirt-sock') and
                         os.path.samefile('/run/libvirt/libvirt-sock',
                                          self.node.libvirt_socket))

    def check_vif_on_the_nodes_ovs(self, vif):
        """What libvirt's ovs-vsctl made: the tap on the node's br-int
        with nova's external_ids; the host's OVS has no such port."""
        n = self.node
        self.assertIn(vif.tap, n.vsctl('list-ports', 'br-int').split())
        ids = n.vsctl('get', 'Interface', vif.tap, 'external_ids')
        self.assertIn('iface-id="%s"' % vif.iface_id, ids)
        self.assertIn('attached-mac="%s"' % vif.mac, ids)
        self.assertNotEqual(
            0, subprocess.run(['ovs-vsctl', '--timeout=10', 'port-to-br',
                               vif.tap], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode)
        self.assertIn(vif.tap, run('ip', '-n', n.netns, '-o', 'link'))

    def qemu_pid(self) -> int:
        """From the pid file in the node's (private) /run/libvirt."""
        path = os.path.join(self.node.libvirt_dir('/run/libvirt'), 'qemu',
                            self.domain + '.pid')
        with open(path) as f:
            pid = int(f.read().strip())
        self.assertTrue(host.pid_alive(pid), path)
        self.assertEqual('net:[%d]' % os.stat(self.node.netns_path).st_ino,
                         os.readlink('/proc/%d/ns/net' % pid))
        return pid

    def check_nothing_left(self):
        self.assertFalse(os.path.exists(self.node.netns_path))
        self.assertFalse(os.path.exists('/run/netns/' + self.dhcp_netns))
        self.assertFalse(TEST_UNDERLAY.exists())
        self.assertEqual([], host_fixtures.processes_naming(self.node.dir))
        self.assertEqual([], host_fixtures.processes_naming('guest=kvt-vm'))
        self.assertEqual([], node.mounts_under(self.node.dir))
        self.assertEqual(self.links_before,
                         host_fixtures.links_named(OUR_LINKS))
