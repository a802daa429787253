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

"""An instance's hostname and DNS on a sandbox taken from the warm pool.

Docker fixes a sandbox's hostname and resolv.conf when it creates it, and
a pool sandbox was created before its instance existed. Two things make it
the instance's (privileged, in the ``privsep.identity`` context):

- ``write_files``: the hostname and resolv.conf files Docker keeps in the
  sandbox's directory (its ``HostnamePath``/``ResolvConfPath``), which the
  workload sees bound at /etc/hostname and /etc/resolv.conf. Docker
  rewrites them when the sandbox starts again, so they are written after
  every sandbox start (network ``none``: /etc/hosts names no hostname, it
  is the same for every sandbox and left alone);
- ``set_hostname``: the kernel hostname of a container started in the
  sandbox's namespace, in its own UTS namespace, where Docker puts the
  sandbox's (placeholder) hostname at each start; set right after each
  start (setns and sethostname by CAP_SYS_ADMIN; CAP_SYS_PTRACE to open
  the namespace of a process with Docker's default capabilities).

Arguments cross as a PID, a directory path, a hostname and a list of
addresses; the privileged side parses each again and refuses anything else.
"""

import contextlib
import ctypes
import ipaddress
import os
import re
import typing

from novadocker.virt.docker import linux_net
from novadocker.virt.docker import privsep

# A hostname label sequence, at most 63 characters (as the sandbox's).
_HOSTNAME = re.compile(r'^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$')
# <data root>/containers/<64 hex>: a container's directory, nothing else.
_CONTAINER_DIR = re.compile(r'^/[^\0]*/containers/[0-9a-f]{64}$')
MAX_NAMESERVERS = 16
MAX_RESOLV_CONF = 64 * 1024

InvalidArgument = linux_net.InvalidArgument
_libc = ctypes.CDLL(None, use_errno=True)   # sethostname


def check_hostname(hostname: typing.Any) -> str:
    if not isinstance(hostname, str) or not _HOSTNAME.match(hostname):
        raise InvalidArgument('refused hostname: %r' % (hostname,))
    return hostname


def check_container_dir(path: typing.Any) -> str:
    """A Docker container's own directory, absolute, without '..'."""
    if not isinstance(path, str) or not _CONTAINER_DIR.match(path) or \
            os.path.normpath(path) != path:
        raise InvalidArgument('refused container directory: %r' % (path,))
    return path


def check_nameservers(servers: typing.Any) -> typing.List[str]:
    """Up to MAX_NAMESERVERS IP addresses, as strings (a list crosses the
    privsep channel as a tuple)."""
    if not isinstance(servers, (list, tuple)) or len(servers) > MAX_NAMESERVERS or \
            not all(isinstance(s, str) for s in servers):
        raise InvalidArgument('refused nameservers: %r' % (servers,))
    try:
        return [str(ipaddress.ip_address(s)) for s in servers]
    except ValueError:
        raise InvalidArgument('refused nameservers: %r' % (servers,))


def resolv_conf(current: str, servers: typing.List[str]) -> str:
    """``current`` with its nameservers replaced by ``servers`` (none:
    unchanged), as Docker's ``dns`` option replaces the host's: search
    and options lines stay."""
    if not servers:
        return current
    lines, placed = [], False
    for line in current.splitlines():
        if line.split()[:1] == ['nameserver']:
            if not placed:
                lines += ['nameserver %s' % s for s in servers]
                placed = True
            continue
        lines.append(line)
    if not placed:
        lines += ['nameserver %s' % s for s in servers]
    return '\n'.join(lines) + '\n'


def _open_in(dir_fd: int, name: str, flags: int) -> int:
    # O_NOFOLLOW: a file replaced by a symlink is refused, not followed.
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC,
                   dir_fd=dir_fd)


@privsep.identity.entrypoint
def privileged_write_files(container_dir: str, hostname: str,
                           nameservers: typing.List[str]) -> None:
    """write_files' privileged half (arguments parsed again here)."""
    container_dir = check_container_dir(container_dir)
    hostname = check_hostname(hostname)
    nameservers = check_nameservers(nameservers)
    dir_fd = os.open(container_dir, os.O_RDONLY | os.O_DIRECTORY |
                     os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        updates = [('hostname', hostname + '\n')]
        if nameservers:
            fd = _open_in(dir_fd, 'resolv.conf', os.O_RDONLY)
            with os.fdopen(fd, 'rb') as current:
                text = current.read(MAX_RESOLV_CONF).decode('utf-8',
                                                           'replace')
            updates.append(('resolv.conf', resolv_conf(text, nameservers)))
        for name, content in updates:
            fd = _open_in(dir_fd, name, os.O_WRONLY | os.O_TRUNC)
            with os.fdopen(fd, 'wb') as target:
                target.write(content.encode())
    finally:
        os.close(dir_fd)


def write_files(container_dir: str, hostname: str,
                nameservers: typing.Sequence[str]) -> None:
    """The instance's hostname and nameservers into the sandbox's files
    (``container_dir``: the directory of its HostnamePath)."""
    args = (check_container_dir(container_dir), check_hostname(hostname),
            check_nameservers(list(nameservers)))
    privileged_write_files(*args)


@contextlib.contextmanager
def _in_uts(pid: int) -> typing.Iterator[None]:
    """This thread in the UTS namespace of ``pid`` (never the host's),
    back in its own after the block (linux_net's namespace helpers)."""
    target = os.open('/proc/%d/ns/uts' % linux_net.check_pid(pid),
                     os.O_RDONLY | os.O_CLOEXEC)
    try:
        info = os.fstat(target)   # what is checked is what is joined
        if (info.st_dev, info.st_ino) in linux_net._host_namespaces('uts'):
            raise InvalidArgument('refused UTS namespace (the host\'s) of '
                                  'PID %d' % pid)
        with linux_net._inside(target, 'uts'):
            yield
    finally:
        os.close(target)


@privsep.identity.entrypoint
def privileged_set_hostname(pid: int, hostname: str) -> None:
    """set_hostname's privileged half (arguments parsed again here)."""
    hostname = check_hostname(hostname)
    with _in_uts(pid):
        name = hostname.encode()
        if _libc.sethostname(name, len(name)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, 'sethostname: %s' % os.strerror(err))


def set_hostname(pid: int, hostname: str) -> None:
    """The kernel hostname of the container whose process is ``pid``."""
    privileged_set_hostname(linux_net.check_pid(pid),
                            check_hostname(hostname))
