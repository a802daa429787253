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
"""The one root-filesystem builder: busybox-static and its applet links.

There is no registry here, so every image this project makes (the
driver's sandbox, the test images, the benchmarks', the all-in-one's and
devstack's) is a tarball from this function, given to ``docker import``.
"""

import io
import os
import subprocess
import tarfile
import typing

BUSYBOX = '/bin/busybox'
#: The SSH server of the image Tempest logs in to: Debian's dropbear-bin, a
#: small sshd that generates its host keys at the first connection and
#: ships no service that would start on the building host.
DROPBEAR = '/usr/sbin/dropbear'
#: Tempest's HTTP client in the guest: its metadata check runs ``curl``
#: (busybox's wget is no stand-in, and busybox-static's segfaults here).
CURL = '/usr/bin/curl'

#: The applets linked into ``/bin`` of an ordinary image: a shell, the
#: network tools a tenant (and Tempest) expects, and little else. The
#: sandbox links none: it only runs ``/bin/busybox sleep``.
APPLETS = ('arp', 'awk', 'cat', 'cut', 'date', 'dd', 'df', 'echo', 'env',
           'false', 'free', 'grep', 'head', 'hostname', 'httpd', 'id',
           'ifconfig', 'ip', 'kill', 'ln', 'ls', 'mkdir', 'mount', 'nc',
           'ping', 'ping6', 'printf', 'ps', 'rm', 'route', 'sed', 'sh',
           'sleep', 'sync', 'sysctl', 'tail', 'test', 'top', 'touch',
           'traceroute', 'true', 'udhcpc', 'uname', 'vi', 'wc', 'wget')

#: Directories every image has. They are written first and explicitly
#: 0755: an implicit parent comes out 0600 on some storage drivers (btrfs),
#: and a container without capabilities (no DAC override) could not reach
#: /bin/busybox.
DIRECTORIES = ('bin', 'dev', 'etc', 'proc', 'root', 'run', 'sbin', 'sys',
               'tmp', 'usr', 'usr/bin', 'var')

#: A root user, so that ``id``, ``ls -l`` and key injection have names.
BASE_FILES = {
    'etc/passwd': b'root:x:0:0:root:/root:/bin/sh\n',
    'etc/group': b'root:x:0:\n',
}


def busybox_rootfs(busybox: str = BUSYBOX,
                   applets: typing.Iterable[str] = APPLETS,
                   extra_files: typing.Optional[
                       typing.Dict[str, bytes]] = None,
                   extra_dirs: typing.Iterable[str] = ()) -> bytes:
    """A root filesystem tarball (owned by root, numeric IDs).

    ``extra_files`` (path -> content, mode 0755) replace the base files of
    the same name: a tarball never holds one name twice (the driver's import
    refuses that). Their parent directories are written too, explicitly
    0755 like the others.
    """
    files = dict(BASE_FILES)
    files.update(extra_files or {})
    directories = list(DIRECTORIES) + list(extra_dirs)
    for name in sorted(files):
        missing = []
        parent = os.path.dirname(name)
        while parent and parent not in directories + missing:
            missing.insert(0, parent)
            parent = os.path.dirname(parent)
        directories += missing
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == 'tmp' else 0o755
            tar.addfile(info)
        info = tar.gettarinfo(busybox, arcname='bin/busybox')
        info.uid = info.gid = 0
        info.uname = info.gname = 'root'
        info.mode = 0o755
        with open(busybox, 'rb') as binary:
            tar.addfile(info, binary)
        for applet in applets:
            info = tarfile.TarInfo('bin/' + applet)
            info.type = tarfile.SYMTYPE
            info.linkname = 'busybox'
            tar.addfile(info)
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def sandbox_rootfs(busybox: str = BUSYBOX) -> bytes:
    """The sandbox's root filesystem: the static binary, no applet links."""
    return busybox_rootfs(busybox, applets=())


#: ``sudo`` for an image whose only user is root: Tempest prefixes its
#: guest commands with it, and root needs no change of identity.
ROOT_SUDO = (b'#!/bin/sh\n'
             b'# Every login is root here: run the command as it is.\n'
             b'exec "$@"\n')


def shared_libraries(binary: str) -> typing.List[str]:
    """The shared objects the dynamic loader maps for ``binary``, the
    loader included, as ldd names them."""
    listing = subprocess.run(['ldd', binary], stdout=subprocess.PIPE,
                             text=True, check=True).stdout
    paths = []
    for line in listing.splitlines():
        if 'not found' in line:
            raise RuntimeError('%s: %s' % (binary, line.strip()))
        words = line.replace('=>', ' ').split()
        paths += [w for w in words[:2] if w.startswith('/')][:1]
    return paths


def ssh_rootfs(busybox: str = BUSYBOX, sshd: str = DROPBEAR,
               tools: typing.Sequence[str] = (CURL,)) -> bytes:
    """The busybox root filesystem plus an SSH server (``sshd``, with the
    libraries it links, at their paths), dynamically linked ``tools``
    (curl) the same way, ``/etc/dropbear`` for the host keys made at the
    first connection, ``/etc/shells``, root's ``sudo`` and ``/mnt``
    (Tempest's scenarios write a timestamp there): an image Tempest and
    our scenario tests log in to."""
    files = {'etc/shells': b'/bin/sh\n', 'usr/bin/sudo': ROOT_SUDO}
    for binary, name in [(sshd, 'usr/sbin/dropbear')] + [
            (tool, tool.lstrip('/')) for tool in tools]:
        for path in [binary] + shared_libraries(binary):
            target = name if path == binary else path.lstrip('/')
            if target not in files:
                with open(path, 'rb') as f:   # a symlink's target, as it
                    files[target] = f.read()
    return busybox_rootfs(busybox, extra_files=files,
                          extra_dirs=('etc/dropbear', 'mnt'))
