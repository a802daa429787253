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
import tarfile
import typing

BUSYBOX = '/bin/busybox'

#: The applets linked into ``/bin`` of an ordinary image: a shell, the
#: network tools a tenant (and Tempest) expects, and little else. The
#: sandbox links none: it only runs ``/bin/busybox sleep``.
APPLETS = ('arp', 'cat', 'date', 'dd', 'df', 'echo', 'env', 'false', 'free',
           'grep', 'head', 'hostname', 'httpd', 'id', 'ifconfig', 'ip',
           'kill', 'ln', 'ls', 'mkdir', 'mount', 'nc', 'ping', 'ping6',
           'printf', 'ps', 'rm', 'route', 'sed', 'sh', 'sleep', 'sysctl',
           'tail', 'test', 'top', 'touch', 'traceroute', 'true', 'udhcpc',
           'uname', 'vi', 'wc', 'wget')

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
    refuses that).
    """
    files = dict(BASE_FILES)
    files.update(extra_files or {})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for directory in DIRECTORIES + tuple(extra_dirs):
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
