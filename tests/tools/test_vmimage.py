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

"""The VM image (ndtools.vmimage): its pure parts (the guest's scripts,
module dependencies, the cpio writer, apt's fields, the accelerator
choice), and BootTest, which builds it (cached) and boots it for real.

BootTest: root, QEMU, busybox-static, apt's index; it fails in CI when
they are missing, it never skips there. Everything it makes is inside a
network namespace of its own, vmt-PID: the bridge vmt-br0 with
192.168.199.1/24, the TAP vmt-tap0 QEMU's virtio NIC is on, busybox's
udhcpd handing out 192.168.199.100-150 with the bridge as router (the
namespace has no other link: nothing is routed anywhere). Nothing is
pulled: the kernel is Debian's, from the host's apt mirror.
"""

import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import time

import fixtures
import testtools

from ndtools import vmimage
from tests.fixtures.commands import run
from tests.fixtures import docker as docker_fixtures
from tests.fixtures import host as host_fixtures
from tests.fixtures import vmguest

BUSYBOX = vmimage.BUSYBOX


def need_busybox(test):
    if not os.access(BUSYBOX, os.X_OK):
        docker_fixtures.require_functional_missing(
            test, '%s missing (apt-get install busybox-static)' % BUSYBOX)


def fake_module(modinfo: bytes) -> bytes:
    """A minimal little-endian ELF64 with a .modinfo section."""
    shstrtab = b'\0.modinfo\0.shstrtab\0'
    modinfo_at = 64
    shstrtab_at = modinfo_at + len(modinfo)
    shoff = shstrtab_at + len(shstrtab)
    header = (b'\x7fELF' + bytes([2, 1, 1]) + b'\0' * 9 + struct.pack(
        '<HHIQQQIHHHHHH', 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2))

    def section(name, offset, size):
        return struct.pack('<IIQQQQIIQQ', name, 1, 0, 0, offset, size,
                           0, 0, 1, 0)
    return (header + modinfo + shstrtab + b'\0' * 64
            + section(1, modinfo_at, len(modinfo))
            + section(10, shstrtab_at, len(shstrtab)))


def cpio_members(data: bytes) -> list:
    """(name, mode, content, (rdevmajor, rdevminor), uid, gid) of each
    member of a newc archive, checking its alignment and trailer."""
    members, pos = [], 0
    while True:
        assert pos % 4 == 0, pos
        head = data[pos:pos + 110]
        assert head[:6] == b'070701', head[:6]
        field = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        name = data[pos + 110:pos + 110 + field[11] - 1].decode()
        pos += 110 + field[11]
        pos += -pos % 4
        content = data[pos:pos + field[6]]
        pos += field[6]
        pos += -pos % 4
        if name == 'TRAILER!!!':
            assert pos == len(data), (pos, len(data))
            return members
        members.append((name, field[1], content, (field[9], field[10]),
                        field[2], field[3]))


class InitScriptTest(testtools.TestCase):

    def test_modules_loaded_in_order_before_dhcp(self):
        script = vmimage.init_script(['failover', 'net_failover',
                                      'virtio_net'])
        self.assertTrue(script.startswith('#!/bin/busybox sh\n'))
        self.assertIn('for module in failover net_failover virtio_net; do',
                      script)
        self.assertIn('insmod /lib/modules/$module.ko', script)
        order = [script.index(text) for text in (
            'mount -t devtmpfs', 'exec >/dev/ttyS0', vmimage.MARKER,
            'insmod', 'udhcpc -i eth0', 'vm-tiny: address', 'httpd -p 80',
            'sleep 3600')]
        self.assertEqual(sorted(order), order)
        # udhcpc's hook at the path the initramfs puts it.
        self.assertIn('-s /usr/share/udhcpc/default.script', script)

    def test_scripts_parse(self):
        need_busybox(self)
        for text in (vmimage.init_script(['virtio_net']),
                     vmimage.UDHCPC_SCRIPT, vmimage.PING_CGI):
            result = subprocess.run([BUSYBOX, 'sh', '-n'], input=text,
                                    text=True, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
            self.assertEqual(0, result.returncode, result.stdout)

    def test_virtio_net_without_checksum_offload(self):
        script = vmimage.init_script(['virtio_net'])
        self.assertIn('virtio_net) args="csum=0 gso=0"', script)
        self.assertIn('insmod /lib/modules/$module.ko $args', script)

    def test_the_guest_pings_its_router(self):
        script = vmimage.init_script(['virtio_net'])
        self.assertIn('ping -c 3 -w 20 "$router"', script)
        self.assertIn('vm-tiny: router $router answers ping', script)

    def run_cgi(self, query):
        need_busybox(self)
        tmp = self.useFixture(fixtures.TempDir()).path
        calls = os.path.join(tmp, 'calls')
        wrapper = ('ping() { echo "ping $*" >> %s; echo pong; }\n%s'
                   % (calls, vmimage.PING_CGI))
        result = subprocess.run(
            [BUSYBOX, 'sh', '-c', wrapper], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
            env={'QUERY_STRING': query, 'PATH': '/usr/bin:/bin'})
        self.assertEqual(0, result.returncode, result.stdout)
        called = open(calls).read() if os.path.exists(calls) else ''
        return result.stdout, called

    def test_ping_cgi_pings_an_address_only(self):
        out, called = self.run_cgi('192.168.198.1')
        self.assertEqual('Content-Type: text/plain\n\npong\n', out)
        self.assertEqual('ping -c 3 -w 20 192.168.198.1\n', called)
        out, called = self.run_cgi('fd00::1')
        self.assertEqual('ping -c 3 -w 20 fd00::1\n', called)
        for bad in ('', '1.2.3.4;reboot', '$(reboot)', '-f', 'a b'):
            out, called = self.run_cgi(bad)
            self.assertIn('vm-tiny: not an address', out, bad)
            self.assertEqual('', called, bad)

    def run_hook(self, event, **env):
        """The udhcpc hook under busybox sh, ip and hostname recorded
        (shell functions: busybox's shell prefers its applets to PATH)."""
        need_busybox(self)
        tmp = self.useFixture(fixtures.TempDir()).path
        hook = os.path.join(tmp, 'default.script')
        with open(hook, 'w') as f:
            f.write(vmimage.UDHCPC_SCRIPT)
        calls = os.path.join(tmp, 'calls')
        resolv = os.path.join(tmp, 'resolv.conf')
        wrapper = ('ip() { echo "ip $*" >> %(calls)s; }\n'
                   'hostname() { echo "hostname $*" >> %(calls)s; }\n'
                   'set -- %(event)s\n. %(hook)s\n'
                   % {'calls': calls, 'event': event, 'hook': hook})
        result = subprocess.run(
            [BUSYBOX, 'sh', '-c', wrapper], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
            env=dict(env, RESOLV_CONF=resolv, PATH='/usr/bin:/bin'))
        self.assertEqual(0, result.returncode, result.stdout)
        with open(calls) as f:
            recorded = f.read().splitlines()
        nameservers = None
        if os.path.exists(resolv):
            with open(resolv) as f:
                nameservers = f.read()
        return result.stdout, recorded, nameservers

    def test_hook_bound_sets_address_route_mtu_dns_and_says_so(self):
        out, calls, resolv = self.run_hook(
            'bound', interface='eth0', ip='192.168.199.120', mask='24',
            broadcast='192.168.199.255', router='192.168.199.1',
            dns='10.0.0.2 10.0.0.3', mtu='1442', hostname='vm1')
        self.assertEqual([
            'ip link set dev eth0 mtu 1442',
            'ip -4 addr show dev eth0',
            'ip -4 addr flush dev eth0',
            'ip addr add 192.168.199.120/24 broadcast 192.168.199.255 '
            'dev eth0',
            'ip route replace default via 192.168.199.1 dev eth0',
            'hostname vm1'], calls)
        self.assertEqual('nameserver 10.0.0.2\nnameserver 10.0.0.3\n',
                         resolv)
        self.assertEqual('vm-tiny: lease eth0 192.168.199.120/24 router '
                         '192.168.199.1\n', out)

    def test_hook_static_routes_replace_the_router(self):
        # RFC 3442: with classless routes the router option is ignored;
        # a 0.0.0.0 gateway is on-link (OVN's metadata route style).
        out, calls, _ = self.run_hook(
            'bound', interface='eth0', ip='10.0.0.5', mask='26',
            router='10.0.0.1',
            staticroutes='169.254.169.254/32 10.0.0.2 0.0.0.0/0 10.0.0.1 '
                         '10.0.0.64/26 0.0.0.0')
        routes = [c for c in calls if c.startswith('ip route')]
        self.assertEqual([
            'ip route replace 169.254.169.254/32 via 10.0.0.2 dev eth0',
            'ip route replace 0.0.0.0/0 via 10.0.0.1 dev eth0',
            'ip route replace 10.0.0.64/26 dev eth0'], routes)
        self.assertIn('ip addr add 10.0.0.5/26 broadcast + dev eth0', calls)

    def test_hook_deconfig_clears_and_raises_the_link(self):
        out, calls, resolv = self.run_hook('deconfig', interface='eth0')
        self.assertEqual(['ip -4 addr flush dev eth0',
                          'ip link set dev eth0 up'], calls)
        self.assertEqual('', out)
        self.assertIsNone(resolv)


class ModulesTest(testtools.TestCase):

    DEPENDS = {'virtio_net': ['virtio_ring', 'virtio', 'net_failover'],
               'net_failover': ['failover'], 'failover': [],
               'virtio': ['virtio_ring'], 'virtio_ring': [],
               'virtio_pci': ['virtio_ring', 'virtio_pci_modern_dev',
                              'virtio', 'virtio_pci_legacy_dev'],
               'virtio_pci_modern_dev': [], 'virtio_pci_legacy_dev': []}

    def depends(self, name):
        return self.DEPENDS[name]

    def test_dependencies_first_each_once(self):
        order = vmimage.load_order(vmimage.ROOT_MODULES, self.depends)
        self.assertEqual(sorted(self.DEPENDS), sorted(order))
        for name, needs in self.DEPENDS.items():
            for dep in needs:
                self.assertLess(order.index(dep), order.index(name),
                                (dep, name))
        self.assertEqual(['virtio_ring', 'virtio_pci_modern_dev', 'virtio',
                          'virtio_pci_legacy_dev', 'virtio_pci', 'failover',
                          'net_failover', 'virtio_net'], order)

    def test_builtin_ones_are_left_out(self):
        self.assertEqual(['failover', 'net_failover', 'virtio_net'],
                         vmimage.load_order(
                             ['virtio_net'], self.depends,
                             builtin={'virtio', 'virtio_ring'}))

    def test_a_missing_module_names_who_needs_it(self):
        depends = dict(self.DEPENDS, net_failover=['failover', 'nope'])
        exc = self.assertRaises(vmimage.BuildError, vmimage.load_order,
                                ['virtio_net'], depends.__getitem__)
        self.assertEqual('no module nope (needed by net_failover)',
                         str(exc))
        exc = self.assertRaises(vmimage.BuildError, vmimage.load_order,
                                ['e1000'], depends.__getitem__)
        self.assertEqual('no module e1000 (needed by the image)', str(exc))

    def test_a_cycle_is_an_error(self):
        depends = {'a': ['b'], 'b': ['a']}
        exc = self.assertRaises(vmimage.BuildError, vmimage.load_order,
                                ['a'], depends.__getitem__)
        self.assertIn('a -> b -> a', str(exc))

    def test_depends_read_from_the_modinfo_section(self):
        data = fake_module(b'license=GPL\0depends=virtio_ring,net-failover'
                           b'\0vermagic=6.1.0\0')
        self.assertEqual(['virtio_ring', 'net_failover'],
                         vmimage.modinfo_depends(data))
        self.assertEqual([], vmimage.modinfo_depends(
            fake_module(b'depends=\0license=GPL\0')))
        self.assertEqual([], vmimage.modinfo_depends(
            fake_module(b'license=GPL\0')))

    def test_not_a_module(self):
        self.assertRaises(vmimage.BuildError, vmimage.modinfo_depends,
                          b'#!/bin/sh\n')
        data = fake_module(b'depends=\0').replace(b'.modinfo', b'.nothing')
        exc = self.assertRaises(vmimage.BuildError, vmimage.modinfo_depends,
                                data)
        self.assertEqual('no .modinfo section', str(exc))

    def test_module_names(self):
        self.assertEqual('net_failover',
                         vmimage.module_name('/k/drivers/net_failover.ko'))
        self.assertEqual('dm_mod', vmimage.module_name('dm-mod.ko.xz'))

    def test_module_tree(self):
        tree = self.useFixture(fixtures.TempDir()).path
        os.makedirs(os.path.join(tree, 'kernel/net/core'))
        for name in ('kernel/net/core/failover.ko', 'kernel/net/x-y.ko.xz',
                     'kernel/net/core/README'):
            open(os.path.join(tree, name), 'w').close()
        with open(os.path.join(tree, 'modules.builtin'), 'w') as f:
            f.write('kernel/drivers/virtio/virtio.ko\n\n')
        self.assertEqual({
            'failover': os.path.join(tree, 'kernel/net/core/failover.ko'),
            'x_y': os.path.join(tree, 'kernel/net/x-y.ko.xz')},
            vmimage.module_files(tree))
        self.assertEqual({'virtio'}, vmimage.builtin_modules(tree))
        os.unlink(os.path.join(tree, 'modules.builtin'))
        self.assertEqual(set(), vmimage.builtin_modules(tree))


class InitramfsTest(testtools.TestCase):

    def entries(self):
        return vmimage.initramfs_entries(
            b'BUSYBOX', [('failover', b'\x7fELF-f'),
                         ('virtio_net', b'\x7fELF-v')])

    def test_members(self):
        members = {m[0]: m for m in cpio_members(
            vmimage.cpio_newc(self.entries()))}
        init = members['init']
        self.assertEqual(stat.S_IFREG | 0o755, init[1])
        self.assertIn('for module in failover virtio_net;',
                      init[2].decode())
        console = members['dev/console']
        self.assertEqual(stat.S_IFCHR | 0o600, console[1])
        self.assertEqual((5, 1), console[3])
        self.assertEqual(b'BUSYBOX', members['bin/busybox'][2])
        self.assertEqual(stat.S_IFREG | 0o755, members['www/cgi-bin/ping'][1])
        self.assertEqual(b'busybox', members['bin/sh'][2])
        self.assertTrue(stat.S_ISLNK(members['bin/sh'][1]))
        self.assertEqual(b'\x7fELF-v',
                         members['lib/modules/virtio_net.ko'][2])
        self.assertEqual(vmimage.UDHCPC_SCRIPT.encode(),
                         members['usr/share/udhcpc/default.script'][2])
        self.assertEqual(stat.S_IFDIR | 0o1777, members['tmp'][1])
        self.assertEqual({(0, 0)}, {(m[4], m[5]) for m in members.values()})
        # Every member's directory comes before it.
        names = [m[0] for m in cpio_members(vmimage.cpio_newc(
            self.entries()))]
        for index, name in enumerate(names):
            parent = os.path.dirname(name)
            if parent:
                self.assertIn(parent, names[:index], name)

    def test_same_inputs_same_bytes(self):
        self.assertEqual(vmimage.cpio_newc(self.entries()),
                         vmimage.cpio_newc(self.entries()))

    def test_busybox_cpio_reads_it(self):
        # An independent reader agrees on the listing.
        need_busybox(self)
        listing = subprocess.run(
            [BUSYBOX, 'cpio', '-t'], input=vmimage.cpio_newc(
                self.entries()), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, check=True).stdout.decode().split()
        self.assertEqual([e.name for e in self.entries()], listing)


class AptTest(testtools.TestCase):

    def test_kernel_package_from_the_metapackage(self):
        fields = vmimage.parse_control(
            'Package: linux-image-amd64\nVersion: 6.1.192-3\n'
            'Depends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)\n'
            'Description: Linux for\n 64-bit PCs\n\nPackage: other\n')
        self.assertEqual('Linux for\n64-bit PCs', fields['Description'])
        self.assertEqual(('linux-image-6.1.0-57-amd64', '6.1.192-3'),
                         vmimage.kernel_package(fields))
        self.assertEqual(('linux-image-6.12-amd64', None),
                         vmimage.kernel_package({
                             'Depends': 'kmod, linux-image-6.12-amd64 | foo '
                                        '(>= 1)'}))
        self.assertRaises(vmimage.BuildError, vmimage.kernel_package,
                          {'Depends': 'kmod'})

    def test_cache_key_covers_each_input(self):
        key = vmimage.cache_key('a', 'b', b'c')
        self.assertEqual(24, len(key))
        self.assertEqual(key, vmimage.cache_key('a', 'b', b'c'))
        self.assertEqual(4, len({key, vmimage.cache_key('x', 'b', b'c'),
                                 vmimage.cache_key('a', 'x', b'c'),
                                 vmimage.cache_key('a', 'b', b'x')}))

    def test_prune_keeps_the_newest_and_the_current(self):
        cache = self.useFixture(fixtures.TempDir()).path
        for age, name in enumerate(['new', 'mid', 'old', 'oldest', 'cur']):
            os.mkdir(os.path.join(cache, name))
            os.utime(os.path.join(cache, name), (1000 - age, 1000 - age))
        os.mkdir(os.path.join(cache, 'debs'))
        vmimage.prune(cache, keep=os.path.join(cache, 'cur'), count=3)
        self.assertEqual(['cur', 'debs', 'mid', 'new'],
                         sorted(os.listdir(cache)))


class AcceleratorTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.kvm = self.useFixture(host_fixtures.FakeKvmFiles())

    def choose(self):
        return vmimage.accelerator(self.kvm.dev_kvm, self.kvm.sys_module)

    def test_no_dev_kvm(self):
        self.assertEqual(('tcg', '%s is missing' % self.kvm.dev_kvm),
                         self.choose())

    def test_hardware_kvm(self):
        self.kvm.add_dev_kvm()
        self.kvm.load_module('kvm_intel')
        self.assertEqual(('kvm', ''), self.choose())

    def test_pvm_runs_no_debian_kernel(self):
        self.kvm.add_dev_kvm()
        self.kvm.load_module('kvm_pvm')
        accel, why = self.choose()
        self.assertEqual('tcg', accel)
        self.assertIn('PVM', why)
        # Both loaded (PVM beside VMX): the hardware one is used.
        self.kvm.load_module('kvm_amd')
        self.assertEqual(('kvm', ''), self.choose())

    def test_qemu_argv(self):
        manifest = {'files': {'kernel': {'path': '/i/k'},
                              'initrd': {'path': '/i/r'}}}
        argv = vmimage.qemu_argv(manifest, 'kvm', '/t/console.log',
                                 tap='vmt-tap0', mac='52:54:00:aa:bb:cc')
        self.assertEqual(['qemu-system-x86_64', '-accel', 'kvm', '-cpu',
                          'host', '-m', '128'], argv[:7])
        joined = ' '.join(argv)
        for part in ('-nodefaults', '-no-reboot',
                     '-serial file:/t/console.log', '-kernel /i/k',
                     '-initrd /i/r', '-append console=ttyS0 panic=-1',
                     'tap,id=net0,ifname=vmt-tap0,script=no,downscript=no',
                     'virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc'):
            self.assertIn(part, joined)
        argv = vmimage.qemu_argv(manifest, 'tcg', '/t/c')
        self.assertNotIn('-cpu', argv)
        self.assertNotIn('-netdev', argv)


# -- the real thing -----------------------------------------------------------

SUBNET = '192.168.199'
BRIDGE = 'vmt-br0'
TAP = 'vmt-tap0'


class BootTest(testtools.TestCase):
    """vm-tiny built (or taken from the cache) and booted under QEMU: the
    marker and a DHCP lease on its serial console, ping and HTTP from the
    bridge; afterwards nothing of it is left."""

    def setUp(self):
        super().setUp()
        host_fixtures.require(
            self, commands=('qemu-system-x86_64', 'ip', 'apt-get',
                            'apt-cache', 'dpkg-deb'),
            executables=(BUSYBOX,), paths=('/dev/net/tun',))
        # Registered first, so it runs last: after QEMU, udhcpd, the
        # namespace and the files went.
        self.addCleanup(self.check_nothing_left)
        self.netns = 'vmt-%d' % os.getpid()
        self.assertFalse(os.path.exists('/run/netns/' + self.netns))
        self.dir = tempfile.mkdtemp(prefix='vmt-', dir='/var/tmp')
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.links_before = host_fixtures.links_named('vmt-')

    def make_network(self) -> None:
        host_fixtures.add_netns(self, self.netns)
        ip = ['ip', '-n', self.netns]
        run(*ip, 'link', 'add', BRIDGE, 'type', 'bridge')
        run(*ip, 'addr', 'add', SUBNET + '.1/24', 'dev', BRIDGE)
        run(*ip, 'link', 'set', BRIDGE, 'up')
        run(*ip, 'tuntap', 'add', TAP, 'mode', 'tap')
        run(*ip, 'link', 'set', TAP, 'master', BRIDGE, 'up')
        self.udhcpd = vmguest.start_udhcpd(self, self.netns, BRIDGE, SUBNET,
                                           self.dir)

    def log(self, name: str) -> str:
        with open(os.path.join(self.dir, name + '.log'), 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def qemu_exited(self):
        if self.qemu.poll() is not None:
            return 'QEMU exited %s' % self.qemu.returncode
        return None

    def test_boots_gets_a_lease_answers_ping_and_http(self):
        started = time.monotonic()
        manifest = vmimage.build_cached(log=print)
        build_seconds = time.monotonic() - started
        accel, why = vmimage.accelerator()
        if accel != 'kvm':
            print('WARNING: booting under TCG, not KVM: %s' % why,
                  flush=True)
        self.make_network()
        console = vmguest.SerialConsole(
            self, os.path.join(self.dir, 'console.log'),
            hypervisor_log=lambda: 'qemu: ' + self.log('qemu'),
            ended=self.qemu_exited)
        argv = vmimage.qemu_argv(manifest, accel, console.path, tap=TAP,
                                 mac='52:54:00:c0:ff:ee')
        started = time.monotonic()
        self.qemu = host_fixtures.start_logged(
            self, os.path.join(self.dir, 'qemu.log'),
            host_fixtures.in_netns(self.netns, *argv))
        console.wait_for_marker()
        marker_seconds = time.monotonic() - started
        address = console.wait_for_lease(SUBNET)
        lease_seconds = time.monotonic() - started
        self.assertIn(int(address.rsplit('.', 1)[1]), range(100, 151))
        console.wait(r'vm-tiny: httpd', 30)
        console.wait(r'vm-tiny: router %s\.1 answers ping'
                     % re.escape(SUBNET), 60)
        for trouble in ('vm-tiny: insmod', 'vm-tiny: no eth0'):
            self.assertNotIn(trouble, console.text())
        ping = vmguest.ping(self.netns, address)
        self.assertIn('3 packets transmitted, 3 packets received', ping)
        page = vmguest.http_get(self.netns, address, timeout=20)
        self.assertEqual('vm-tiny\n', page)
        rss = host_fixtures.rss_mib(self.qemu.pid)
        files = manifest['files']
        print('vm-tiny (%s, %s): build %.1f s (%s), kernel %.1f MiB, '
              'initramfs %.2f MiB; QEMU -accel %s -m 128: marker after '
              '%.1f s, lease %s after %.1f s; QEMU RSS %.0f MiB'
              % (manifest['kernel_version'], ' '.join(manifest['modules']),
                 build_seconds, 'cached' if manifest['cached'] else 'built',
                 files['kernel']['bytes'] / 2.0 ** 20,
                 files['initrd']['bytes'] / 2.0 ** 20, accel,
                 marker_seconds, address, lease_seconds, rss), flush=True)

    def check_nothing_left(self):
        self.assertEqual([], host_fixtures.processes_naming(self.dir))
        self.assertFalse(os.path.exists('/run/netns/' + self.netns))
        self.assertEqual(self.links_before, host_fixtures.links_named('vmt-'))
