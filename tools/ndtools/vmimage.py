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
"""``vm-tiny``: the VM image of the KVM compute node (issue 15, item 2),
built from Debian's packages only, nothing downloaded but from the host's
apt mirror.

    PYTHONPATH=tools python3 -m ndtools.vmimage [--cache DIR]

prints the manifest (JSON) of a cached build: a kernel, an initramfs and a
raw root disk, with their paths, sizes and sha256.

* **Kernel**: ``/boot/vmlinuz-*`` of the package ``linux-image-amd64``
  depends on (Debian 12: ``linux-image-6.1.0-N-amd64``), fetched with
  ``apt-get download`` and unpacked with ``dpkg-deb -x`` into a temporary
  directory: nothing is installed on the host (no initramfs-tools run, no
  /boot, no /lib/modules change), and the .deb is deleted after the build.
* **Initramfs** (newc cpio, gzip; written here, so its files are root's and
  ``/dev/console`` is a device node without the builder being root):
  busybox-static, the virtio modules and an ``/init`` (:func:`init_script`)
  that mounts proc, sys and devtmpfs, loads the modules, prints
  ``vm-tiny: up`` on the serial console (``/dev/ttyS0``, whatever the
  kernel's ``console=`` says: Nova's default command line names tty0,
  ttyS0 and hvc0, and the last one wins /dev/console), asks for an address
  with busybox's ``udhcpc`` (:data:`UDHCPC_SCRIPT` sets address, MTU,
  routes, DNS and hostname, and prints ``vm-tiny: lease eth0 IP/BITS``),
  prints ``vm-tiny: address ...`` and serves ``/www`` with busybox
  ``httpd`` on port 80. The kernel answers ping by itself.
* **Modules**: Debian builds virtio_pci and virtio_net as modules (not
  built in: ``CONFIG_VIRTIO_PCI=m``), and the package carries no
  ``modules.dep`` (depmod runs in its postinst). The load order comes from
  each module's own ``.modinfo`` ``depends=`` (:func:`modinfo_depends`,
  :func:`load_order`): failover, net_failover, virtio_ring, virtio,
  virtio_pci_legacy_dev, virtio_pci_modern_dev, virtio_pci, virtio_net;
  ``insmod`` in that order, no modprobe needed.
* **Root disk**: 1 MiB of zeros. A kernel/ramdisk image in Glance is a
  disk image whose ``kernel_id`` and ``ramdisk_id`` name the other two; Nova
  still makes the instance's root disk from that image's data. /init never
  mounts it. A disk that boots by itself would need a boot loader
  (extlinux, grub) written into a partitioned image through loop devices:
  not cheap, not needed.

Glance (``tools/aio add-kvm-node``, ndtools.cloud ``vm-image``): the
all-in-one's Glance takes raw and qcow2 disks only and inspects ``bare``
uploads (it reads the kernel's boot sector as an MBR that fails its
safety check), and Nova boots kernel_id/ramdisk_id whatever their disk
format says; so, as ``openstack`` commands::

    openstack image create --disk-format raw --container-format compressed \
        --file vm-tiny.vmlinuz vm-tiny-kernel
    openstack image create --disk-format raw --container-format compressed \
        --file vm-tiny.initrd vm-tiny-ramdisk
    openstack image create --disk-format raw --container-format bare \
        --file vm-tiny.disk --property kernel_id=KERNEL \
        --property ramdisk_id=RAMDISK --property hypervisor_type=qemu \
        --property os_command_line='console=ttyS0 panic=-1' \
        --property os_shutdown_timeout=0 --public vm-tiny

(:data:`GLANCE_PROPERTIES`). ``hypervisor_type`` is Glance's name of
Nova's ``img_hv_type``, which ImagePropertiesFilter matches against each
node's supported_instances: a libvirt node lists the domain types of its
capabilities (``qemu``, and ``kvm`` where /dev/kvm is there), so ``qemu``
places the image on KVM and TCG nodes alike, and no docker node (which
lists ``docker`` only). ``os_command_line`` replaces Nova's ``root=/dev/vda
console=tty0 console=ttyS0 console=hvc0`` (it is honoured only for images
with a kernel_id). ``os_shutdown_timeout=0``: /init handles no ACPI power
button, so a graceful stop would only wait out Nova's 60 s before the
hard one.

Why here and not a kind of ``python -m novadocker.cmd.build_image``: that
is the one builder of the *container* images, part of the driver's package
(installed on compute nodes, importing no tools), writing a tarball for
``docker import`` from files already on the host. This image is for the
all-in-one's KVM node and tests only, and building it is a host operation
(apt-get download, dpkg-deb) like the rest of ndtools; it runs on Debian's
python3 before any venv exists, standard library only. The same command
style, though: one ``python -m`` entry point, the same ``--busybox``
option and binary (busybox-static's ``/bin/busybox``), the result's
place as an option (``--cache``: a VM image is three files, not a
stream).

Cache (:func:`build_cached`): ``DIR/<key>/`` where the key hashes the
kernel package and version the metapackage pins (known from one
``apt-cache show``, before downloading), the busybox binary and this
file; a build happens once per key, under a lock, so parallel test
workers share it. The .deb goes after the build; the newest three builds
stay.

Figures (this machine: 2 vCPUs, load ~7 from parallel work;
tests/tools/test_vmimage.py prints them each run):

* build: ~30 s cold (the 70 MB .deb in 2-7 s, ``dpkg-deb -x`` of its
  400 MB 13-18 s, the rest modules, cpio and gzip), ~3 s cached (one
  ``apt-cache show``);
* kernel 7.9 MiB, initramfs 1.1 MiB (busybox 1.9 MB and 0.4 MB of
  modules before gzip), disk 1 MiB;
* this machine's /dev/kvm is PVM (see :func:`accelerator`), so the boot
  runs under TCG: QEMU start to ``vm-tiny: up`` 23.5 s, to the DHCP lease
  26.6 s, QEMU's RSS 209 MiB with ``-m 128`` (TCG's translation cache
  included). KVM figures need a host with VMX/SVM KVM.
"""

import argparse
import fcntl
import glob
import gzip
import hashlib
import json
import lzma
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
import typing

BUSYBOX = '/bin/busybox'
KERNEL_METAPACKAGE = 'linux-image-amd64'
DEFAULT_CACHE = os.environ.get('NOVA_DOCKER_VMIMAGE_CACHE',
                               '/var/cache/nova-docker/vm-tiny')
#: Image dirs kept in the cache (the newest; the current one always).
KEEP = 3
NAME = 'vm-tiny'
#: The modules /init loads, their dependencies first: the virtio PCI
#: transport and the NIC. (virtio_blk and isofs would be the config
#: drive's, a later step.)
ROOT_MODULES = ('virtio_pci', 'virtio_net')
CMDLINE = 'console=ttyS0 panic=-1'
MARKER = NAME + ': up'
LEASE = NAME + ': lease'
#: The raw root disk a kernel_id/ramdisk_id image needs.
DISK_BYTES = 1 << 20
GLANCE_PROPERTIES = {
    'hypervisor_type': 'qemu',
    'os_command_line': CMDLINE,
    'os_shutdown_timeout': '0',
}
FILES = {'kernel': NAME + '.vmlinuz', 'initrd': NAME + '.initrd',
         'disk': NAME + '.disk'}


class BuildError(Exception):
    pass


# -- the guest's scripts ------------------------------------------------------

#: udhcpc's hook (busybox's default path for it). udhcpc exports
#: interface, ip, mask (bits), broadcast, router, dns, mtu, hostname and
#: staticroutes (RFC 3442 pairs; when given, router is to be ignored).
#: Its stdout is /init's, the serial console. RESOLV_CONF: the unit test
#: runs it on the host.
UDHCPC_SCRIPT = r'''#!/bin/sh
# udhcpc's hook in vm-tiny (ndtools.vmimage).
resolv=${RESOLV_CONF:-/etc/resolv.conf}
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set dev "$interface" up
    ;;
bound|renew)
    if [ -n "$mtu" ]; then
        ip link set dev "$interface" mtu "$mtu"
    fi
    if ! ip -4 addr show dev "$interface" | grep -q " $ip/$mask "; then
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/$mask" broadcast "${broadcast:-+}" \
            dev "$interface"
    fi
    if [ -n "$staticroutes" ]; then
        set -- $staticroutes
        while [ $# -ge 2 ]; do
            if [ "$2" = 0.0.0.0 ]; then
                ip route replace "$1" dev "$interface"
            else
                ip route replace "$1" via "$2" dev "$interface"
            fi
            shift 2
        done
    elif [ -n "$router" ]; then
        set -- $router
        ip route replace default via "$1" dev "$interface"
    fi
    : > "$resolv"
    for server in $dns; do
        echo "nameserver $server" >> "$resolv"
    done
    if [ -n "$hostname" ]; then
        hostname "$hostname"
    fi
    echo "vm-tiny: lease $interface $ip/$mask router ${router:-none}"
    ;;
esac
exit 0
'''


def init_script(modules: typing.Sequence[str]) -> str:
    """/init: ``modules`` are insmod'ed in this order, from /lib/modules."""
    return '''#!/bin/busybox sh
# vm-tiny's /init (ndtools.vmimage): PID 1 for good.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Our lines go to the serial console whatever console= says.
if [ -c /dev/ttyS0 ]; then
    exec >/dev/ttyS0 2>&1 </dev/null
fi
echo "%(marker)s (kernel $(uname -r))"
hostname vm-tiny
for module in %(modules)s; do
    # virtio_net without checksum offload (and so without TSO): a
    # userspace OVS datapath without userspace TSO (a KVM node's, OVS
    # 3.1) forwards the guest's partial TCP checksums as they are, and
    # the receiver drops every segment; ping and DHCP work either way.
    case $module in
        virtio_net) args="csum=0 gso=0" ;;
        *) args= ;;
    esac
    insmod /lib/modules/$module.ko $args ||
        echo "vm-tiny: insmod $module failed"
done
ip link set dev lo up
tries=0
while [ ! -e /sys/class/net/eth0 ] && [ $tries -lt 100 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
if [ -e /sys/class/net/eth0 ]; then
    # Background when no lease comes within 10 tries; it keeps asking.
    udhcpc -i eth0 -s /usr/share/udhcpc/default.script -t 10 -T 2 -A 5 \\
        -b -x hostname:vm-tiny
    echo "vm-tiny: address $(ip -4 -o addr show dev eth0)"
else
    echo "vm-tiny: no eth0"
fi
httpd -p 80 -h /www
echo "vm-tiny: httpd"
# Traffic the guest starts itself: it pings its router once it has one
# (the console says whether it answered).
(
    tries=0
    while ! ip -4 route show default | grep -q ' via ' &&
            [ $tries -lt 600 ]; do
        sleep 0.1
        tries=$((tries + 1))
    done
    # "default via ROUTER dev eth0"
    set -- $(ip -4 route show default) none none none
    router=$3
    if [ "$2" = via ] && ping -c 3 -w 20 "$router" >/dev/null 2>&1; then
        echo "vm-tiny: router $router answers ping"
    else
        echo "vm-tiny: router $router does not answer ping"
    fi
) &
while :; do
    sleep 3600
done
''' % {'marker': MARKER, 'modules': ' '.join(modules)}


#: GET /cgi-bin/ping?ADDRESS: the guest pings ADDRESS (an IPv4 or IPv6
#: address, nothing else) and answers with ping's output: traffic from
#: the guest to any peer, on demand.
PING_CGI = r'''#!/bin/sh
# vm-tiny's ping CGI (ndtools.vmimage).
echo "Content-Type: text/plain"
echo
case "$QUERY_STRING" in
''|*[!0-9A-Fa-f.:]*)
    echo "vm-tiny: not an address"
    exit 0
    ;;
esac
ping -c 3 -w 20 "$QUERY_STRING" 2>&1
'''


# -- kernel modules -----------------------------------------------------------

def module_name(filename: str) -> str:
    """The kernel's name of a module file: no .ko[.xz], '-' as '_'."""
    base = os.path.basename(filename)
    for ext in ('.ko.xz', '.ko'):
        if base.endswith(ext):
            base = base[:-len(ext)]
    return base.replace('-', '_')


def module_bytes(path: str) -> bytes:
    """A module's ELF (a .ko.xz decompressed: busybox insmod takes plain
    ELF)."""
    with open(path, 'rb') as f:
        data = f.read()
    return lzma.decompress(data) if path.endswith('.xz') else data


def elf_section(data: bytes, wanted: str) -> bytes:
    """The contents of section ``wanted`` of a little-endian ELF64."""
    if data[:4] != b'\x7fELF' or data[4] != 2 or data[5] != 1:
        raise BuildError('not a little-endian ELF64 object')
    shoff, = struct.unpack_from('<Q', data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from('<HHH', data, 0x3a)

    def header(index):
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size
        return struct.unpack_from('<IIQQQQ', data, shoff + index * shentsize)
    names = header(shstrndx)
    strtab = data[names[4]:names[4] + names[5]]
    for index in range(shnum):
        fields = header(index)
        end = strtab.index(b'\0', fields[0])
        if strtab[fields[0]:end].decode() == wanted:
            return data[fields[4]:fields[4] + fields[5]]
    raise BuildError('no %s section' % wanted)


def modinfo_depends(data: bytes) -> typing.List[str]:
    """The ``depends=`` of a module's .modinfo (what modinfo -F depends
    prints): the modules it needs loaded first."""
    for item in elf_section(data, '.modinfo').split(b'\0'):
        if item.startswith(b'depends='):
            value = item[len(b'depends='):].decode()
            return [name.replace('-', '_') for name in value.split(',')
                    if name]
    return []


def load_order(roots: typing.Iterable[str],
               depends: typing.Callable[[str], typing.Sequence[str]],
               builtin: typing.Container[str] = ()) -> typing.List[str]:
    """``roots`` and what they depend on, each after its dependencies,
    built-in ones left out. ``depends(name)`` raises KeyError for a module
    there is no file of."""
    order: typing.List[str] = []
    visiting: typing.List[str] = []

    def visit(name):
        if name in order or name in builtin:
            return
        if name in visiting:
            raise BuildError('module dependency cycle: %s'
                             % ' -> '.join(visiting + [name]))
        visiting.append(name)
        try:
            needs = depends(name)
        except KeyError:
            raise BuildError('no module %s (needed by %s)' % (
                name, visiting[-2] if len(visiting) > 1 else 'the image'))
        for dep in needs:
            visit(dep)
        visiting.pop()
        order.append(name)
    for root in roots:
        visit(root)
    return order


def builtin_modules(modules_dir: str) -> typing.Set[str]:
    """The names modules.builtin lists (built into the kernel)."""
    try:
        with open(os.path.join(modules_dir, 'modules.builtin')) as f:
            return {module_name(line.strip()) for line in f if line.strip()}
    except FileNotFoundError:
        return set()


def module_files(modules_dir: str) -> typing.Dict[str, str]:
    """Module name -> its file, for every module under ``kernel/``."""
    found = {}
    for top, _dirs, files in os.walk(os.path.join(modules_dir, 'kernel')):
        for name in files:
            if name.endswith(('.ko', '.ko.xz')):
                found[module_name(name)] = os.path.join(top, name)
    return found


# -- initramfs ----------------------------------------------------------------

class Entry(typing.NamedTuple):
    """One cpio member: ``data`` is a file's content or a link's target."""
    name: str
    mode: int
    data: bytes = b''
    rdev: typing.Tuple[int, int] = (0, 0)


def cpio_newc(entries: typing.Iterable[Entry]) -> bytes:
    """The "newc" cpio archive the kernel unpacks as its initramfs: owner
    root, mtime 0 (the same inputs give the same bytes)."""
    out = bytearray()

    def pad():
        out.extend(b'\0' * (-len(out) % 4))

    def member(ino, name, mode, data, rdev, nlink):
        encoded = name.encode() + b'\0'
        out.extend(b'070701' + b''.join(b'%08X' % value for value in (
            ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
            len(encoded), 0)))
        out.extend(encoded)
        pad()
        out.extend(data)
        pad()
    for ino, entry in enumerate(entries, 1):
        member(ino, entry.name, entry.mode, entry.data, entry.rdev,
               2 if stat.S_ISDIR(entry.mode) else 1)
    member(0, 'TRAILER!!!', 0, b'', (0, 0), 1)
    return bytes(out)


def initramfs_entries(busybox: bytes,
                      modules: typing.Sequence[typing.Tuple[str, bytes]]
                      ) -> typing.List[Entry]:
    """The initramfs's members: ``modules`` as (name, ELF) in load order."""
    directory = stat.S_IFDIR | 0o755
    entries = [Entry(d, directory) for d in (
        'bin', 'dev', 'etc', 'lib', 'lib/modules', 'proc', 'root', 'run',
        'sys', 'usr', 'usr/share', 'usr/share/udhcpc', 'var', 'www',
        'www/cgi-bin')]
    entries += [
        Entry('tmp', stat.S_IFDIR | 0o1777),
        Entry('var/run', stat.S_IFLNK | 0o777, b'../run'),
        # The kernel opens it for /init before devtmpfs is mounted.
        Entry('dev/console', stat.S_IFCHR | 0o600, rdev=(5, 1)),
        Entry('bin/busybox', stat.S_IFREG | 0o755, busybox),
        Entry('bin/sh', stat.S_IFLNK | 0o777, b'busybox'),
        Entry('init', stat.S_IFREG | 0o755,
              init_script([name for name, _ in modules]).encode()),
        Entry('usr/share/udhcpc/default.script', stat.S_IFREG | 0o755,
              UDHCPC_SCRIPT.encode()),
        Entry('etc/passwd', stat.S_IFREG | 0o644,
              b'root:x:0:0:root:/root:/bin/sh\n'),
        Entry('etc/group', stat.S_IFREG | 0o644, b'root:x:0:\n'),
        Entry('www/index.html', stat.S_IFREG | 0o644, b'vm-tiny\n'),
        Entry('www/cgi-bin/ping', stat.S_IFREG | 0o755, PING_CGI.encode()),
    ]
    entries += [Entry('lib/modules/%s.ko' % name, stat.S_IFREG | 0o644, elf)
                for name, elf in modules]
    return entries


# -- Debian's kernel package --------------------------------------------------

def apt_show(package: str) -> typing.Dict[str, str]:
    """The candidate's fields (``apt-cache show --no-all-versions``)."""
    result = subprocess.run(
        ['apt-cache', 'show', '--no-all-versions', package],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode:
        raise BuildError('apt-cache show %s: %s' % (package,
                                                    result.stderr.strip()))
    return parse_control(result.stdout)


def parse_control(text: str) -> typing.Dict[str, str]:
    """The first stanza of Debian control text as a dict."""
    fields: typing.Dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        if line[0] in ' \t' and last:
            fields[last] += '\n' + line.strip()
        else:
            last, _, value = line.partition(':')
            fields[last] = value.strip()
    return fields


def kernel_package(metapackage: typing.Dict[str, str]
                   ) -> typing.Tuple[str, typing.Optional[str]]:
    """The linux-image package a metapackage's Depends names, and the
    version it pins (``(= V)``), if it does."""
    for alternative in metapackage.get('Depends', '').split(','):
        first = alternative.split('|')[0]
        name, _, constraint = first.partition('(')
        name = name.strip()
        if name.startswith('linux-image-'):
            constraint = constraint.rstrip(') ').strip()
            if constraint.startswith('='):
                return name, constraint[1:].strip()
            return name, None
    raise BuildError('%s depends on no linux-image package'
                     % metapackage.get('Package', 'the metapackage'))


def download(package: str, version: str, dest: str) -> str:
    """``package`` ``version``'s .deb into ``dest`` (apt checks it against
    the index's hash); apt-get update once when the lists are stale."""
    before = set(os.listdir(dest))
    argv = ['apt-get', 'download', '-q', '-o', 'APT::Sandbox::User=root',
            '%s=%s' % (package, version)]
    attempt = subprocess.run(argv, cwd=dest, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    if attempt.returncode:
        subprocess.run(['apt-get', 'update', '-q'], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
        attempt = subprocess.run(argv, cwd=dest, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    new = [name for name in set(os.listdir(dest)) - before
           if name.endswith('.deb')]
    if attempt.returncode or len(new) != 1:
        raise BuildError('apt-get download %s failed: %s'
                         % (package, attempt.stdout.strip()))
    return os.path.join(dest, new[0])


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


# -- the build ----------------------------------------------------------------

def cache_key(kernel: str, busybox_sha256: str, builder: bytes) -> str:
    """The cache's name of an image: ``kernel`` is PACKAGE=VERSION (the
    archive never changes a version's bytes), ``builder`` this file."""
    digest = hashlib.sha256()
    for part in (kernel.encode(), busybox_sha256.encode(), builder):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:24]


def build(deb: str, out_dir: str, busybox: str = BUSYBOX,
          roots: typing.Sequence[str] = ROOT_MODULES) -> dict:
    """The kernel, initramfs and disk of ``deb`` (a linux-image .deb) into
    ``out_dir``; the manifest (also written as manifest.json)."""
    with tempfile.TemporaryDirectory(prefix='vmimage-',
                                     dir=os.path.dirname(out_dir)) as tree:
        subprocess.run(['dpkg-deb', '-x', deb, tree], check=True)
        kernels = glob.glob(os.path.join(tree, 'boot/vmlinuz-*'))
        trees = (glob.glob(os.path.join(tree, 'lib/modules/*'))
                 + glob.glob(os.path.join(tree, 'usr/lib/modules/*')))
        if len(kernels) != 1 or len(trees) != 1:
            raise BuildError('%s: expected one vmlinuz and one module tree'
                             % deb)
        files = module_files(trees[0])

        def depends(name):
            return modinfo_depends(module_bytes(files[name]))
        order = load_order(roots, depends, builtin_modules(trees[0]))
        with open(busybox, 'rb') as f:
            entries = initramfs_entries(f.read(), [
                (name, module_bytes(files[name])) for name in order])
        shutil.copyfile(kernels[0], os.path.join(out_dir, FILES['kernel']))
        version = os.path.basename(trees[0])
    with open(os.path.join(out_dir, FILES['initrd']), 'wb') as f:
        f.write(gzip.compress(cpio_newc(entries), 9, mtime=0))
    with open(os.path.join(out_dir, FILES['disk']), 'wb') as f:
        f.truncate(DISK_BYTES)
    manifest = {
        'name': NAME, 'kernel_version': version,
        'kernel_package': os.path.basename(deb), 'modules': order,
        'cmdline': CMDLINE, 'glance_properties': GLANCE_PROPERTIES,
        'files': {}}
    for kind, name in sorted(FILES.items()):
        path = os.path.join(out_dir, name)
        manifest['files'][kind] = {'name': name,
                                   'bytes': os.path.getsize(path),
                                   'sha256': file_sha256(path)}
    with open(os.path.join(out_dir, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    return manifest


def build_cached(cache_dir: str = DEFAULT_CACHE, busybox: str = BUSYBOX,
                 log: typing.Callable[[str], None] = lambda line: None
                 ) -> dict:
    """The manifest of the image for the current candidate kernel, built
    unless the cache holds it (``cached``: whether it did; ``seconds``:
    how long this call took)."""
    start = time.monotonic()
    os.makedirs(cache_dir, exist_ok=True)
    package, version = kernel_package(apt_show(KERNEL_METAPACKAGE))
    if version is None:
        version = apt_show(package)['Version']
    with open(os.path.abspath(__file__), 'rb') as f:
        key = cache_key('%s=%s' % (package, version), file_sha256(busybox),
                        f.read())
    image_dir = os.path.join(cache_dir, key)
    manifest_path = os.path.join(image_dir, 'manifest.json')
    with open(os.path.join(cache_dir, '.lock'), 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = os.path.exists(manifest_path)
        if cached:
            with open(manifest_path) as f:
                manifest = json.load(f)
            os.utime(image_dir)     # in use: the newest for prune()
        else:
            log('building %s from %s %s' % (NAME, package, version))
            # A killed build's unpacked package (400 MB): nobody else
            # builds while we hold the lock.
            for tree in glob.glob(os.path.join(cache_dir, 'vmimage-*')):
                shutil.rmtree(tree, ignore_errors=True)
            shutil.rmtree(image_dir, ignore_errors=True)
            partial = image_dir + '.partial'
            shutil.rmtree(partial, ignore_errors=True)
            os.makedirs(partial)
            debs = os.path.join(cache_dir, 'debs')
            shutil.rmtree(debs, ignore_errors=True)
            os.makedirs(debs)
            try:
                deb = download(package, version, debs)
                build(deb, partial, busybox)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            finally:
                shutil.rmtree(debs, ignore_errors=True)
            os.rename(partial, image_dir)
            with open(manifest_path) as f:
                manifest = json.load(f)
            prune(cache_dir, keep=image_dir)
    for entry in manifest['files'].values():
        entry['path'] = os.path.join(image_dir, entry['name'])
    manifest.update(cached=cached, key=key, dir=image_dir,
                    seconds=round(time.monotonic() - start, 2))
    return manifest


def prune(cache_dir: str, keep: str, count: int = KEEP) -> None:
    """All but the ``count`` newest image dirs (``keep`` always stays)."""
    dirs = sorted((path for path in glob.glob(os.path.join(cache_dir, '*'))
                   if os.path.isdir(path) and path != keep
                   and not path.endswith(('/debs', '.partial'))
                   and not os.path.basename(path).startswith('vmimage-')),
                  key=os.path.getmtime, reverse=True)
    for path in dirs[count - 1:]:
        shutil.rmtree(path, ignore_errors=True)


# -- booting it ---------------------------------------------------------------

def accelerator(dev_kvm: str = '/dev/kvm',
                sys_module: str = '/sys/module') -> typing.Tuple[str, str]:
    """('kvm', '') when /dev/kvm runs an ordinary guest kernel, else
    ('tcg', why not). A /dev/kvm of PVM (kvm_pvm, the pagetable-based
    KVM of hosts without nested VMX/SVM) runs only PVM-enlightened guest
    kernels, which Debian does not build: its kernel stops after the
    real-mode setup ("Probing EDD ... ok") and never reaches /init."""
    if not os.path.exists(dev_kvm):
        return 'tcg', '%s is missing' % dev_kvm
    if not os.access(dev_kvm, os.R_OK | os.W_OK):
        return 'tcg', '%s is not read-writable' % dev_kvm
    hardware = [name for name in ('kvm_intel', 'kvm_amd')
                if os.path.isdir(os.path.join(sys_module, name))]
    if not hardware and os.path.isdir(os.path.join(sys_module, 'kvm_pvm')):
        return 'tcg', ('%s is PVM (kvm_pvm): it boots PVM guest kernels '
                       'only, not Debian\'s' % dev_kvm)
    return 'kvm', ''


def qemu_argv(manifest: dict, accel: str, console_log: str,
              tap: typing.Optional[str] = None,
              mac: str = '52:54:00:00:00:01', memory_mb: int = 128,
              cmdline: str = CMDLINE) -> typing.List[str]:
    """QEMU booting the image as Nova's libvirt driver would (kernel,
    initrd, command line, a virtio NIC on a TAP device), without its
    defaults (no VGA, no default NIC), the serial console into
    ``console_log``; a kernel panic ends QEMU (panic=-1, -no-reboot)."""
    files = manifest['files']
    argv = ['qemu-system-x86_64', '-accel', accel]
    if accel == 'kvm':
        argv += ['-cpu', 'host']
    argv += ['-m', str(memory_mb), '-nodefaults', '-display', 'none',
             '-no-reboot', '-serial', 'file:' + console_log,
             '-kernel', files['kernel']['path'],
             '-initrd', files['initrd']['path'], '-append', cmdline]
    if tap:
        argv += ['-netdev', 'tap,id=net0,ifname=%s,script=no,downscript=no'
                 % tap, '-device', 'virtio-net-pci,netdev=net0,mac=' + mac]
    return argv


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python3 -m ndtools.vmimage',
        description='vm-tiny: a kernel and busybox initramfs from Debian\'s '
                    'packages (no registry, no installation on the host).')
    parser.add_argument('--busybox', default=BUSYBOX,
                        help='the static busybox binary (busybox-static)')
    parser.add_argument('--cache', default=DEFAULT_CACHE, metavar='DIR',
                        help='where builds are kept, one dir per content '
                             'hash (default %(default)s)')
    args = parser.parse_args(argv)
    try:
        manifest = build_cached(args.cache, args.busybox,
                                log=lambda line: print(line,
                                                       file=sys.stderr))
    except (BuildError, OSError, subprocess.CalledProcessError) as exc:
        print('vmimage: %s' % exc, file=sys.stderr)
        return 1
    json.dump(manifest, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == '__main__':
    sys.exit(main())
