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
"""``python -m novadocker.cmd.build_image``: a busybox root filesystem
tarball on stdout (or in ``--output``), for ``docker import``.

    python -m novadocker.cmd.build_image | docker import \\
        --change 'CMD ["/bin/sh"]' - busybox:latest

``--ssh`` adds an SSH server (Debian's dropbear-bin) for images that are
logged in to: ``CMD ["/usr/sbin/dropbear", "-F", "-E", "-R", "-g"]``.

Container images only. The KVM node's VM image (a kernel and a busybox
initramfs) comes from ``PYTHONPATH=tools python3 -m ndtools.vmimage``,
a host tool beside the all-in-one's (tools/ndtools/vmimage.py says why
not here).
"""

import argparse
import sys

from novadocker import rootfs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog='nova-docker-build-image',
        description='A busybox-static root filesystem tarball, for '
                    'docker import (no registry needed).')
    parser.add_argument('--busybox', default=rootfs.BUSYBOX,
                        help='the static busybox binary (busybox-static)')
    parser.add_argument('--sandbox', action='store_true',
                        help='the sandbox layout: no applet links')
    parser.add_argument('--ssh', action='store_true',
                        help='add the SSH server --sshd and its libraries')
    parser.add_argument('--sshd', default=rootfs.DROPBEAR,
                        help='the SSH server (dropbear-bin)')
    parser.add_argument('--dir', action='append', default=[],
                        metavar='PATH', help='one more directory (0755)')
    parser.add_argument('--file', action='append', default=[],
                        metavar='PATH=SOURCE',
                        help='one more file, read from SOURCE')
    parser.add_argument('--output', '-o', metavar='FILE',
                        help='write here instead of stdout')
    args = parser.parse_args(argv)
    if args.ssh and (args.sandbox or args.file or args.dir):
        parser.error('--ssh takes no --sandbox, --file or --dir')
    extra = {}
    for item in args.file:
        path, sep, source = item.partition('=')
        if not sep or not path:
            parser.error('--file takes PATH=SOURCE, not %r' % item)
        with open(source, 'rb') as f:
            extra[path.lstrip('/')] = f.read()
    if args.ssh:
        data = rootfs.ssh_rootfs(args.busybox, args.sshd)
    else:
        data = rootfs.busybox_rootfs(
            args.busybox, applets=() if args.sandbox else rootfs.APPLETS,
            extra_files=extra, extra_dirs=args.dir)
    if args.output:
        with open(args.output, 'wb') as f:
            f.write(data)
    else:
        sys.stdout.buffer.write(data)
    return 0


if __name__ == '__main__':
    sys.exit(main())
