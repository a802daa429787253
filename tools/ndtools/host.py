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
"""What tools/run-tests and tools/aio both do to the host: install missing
Debian packages, check Docker, make venvs, start dockerd, Open vSwitch and
LXCFS when they are not running, and wait for things.

Standard library only: it runs on Debian's python3 before any venv exists.
The decisions (what is missing, whether a venv is current, which flags
dockerd gets) are plain functions, so that tests/unit can check them
without touching the host.
"""

import hashlib
import os
import shutil
import socket
import subprocess
import time
import typing

DOCKER_SOCKET = '/var/run/docker.sock'
DAEMON_JSON = '/etc/docker/daemon.json'
OVS_CTL = '/usr/share/openvswitch/scripts/ovs-ctl'
LXCFS_DIR = '/var/lib/lxcfs'
POLICY_RC_D = '/usr/sbin/policy-rc.d'


# -- packages ---------------------------------------------------------------

def dpkg_installed(package: str) -> bool:
    """Whether dpkg has ``package`` fully installed."""
    result = subprocess.run(['dpkg-query', '-W', '-f', '${Status}', package],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    return 'install ok installed' in result.stdout


def command_present(name: str) -> bool:
    return shutil.which(name) is not None


def missing_packages(
        wanted: typing.Iterable[typing.Tuple[str, typing.Callable[[], bool]]]
) -> typing.List[str]:
    """The packages, in order, whose presence check says no."""
    return [package for package, present in wanted if not present()]


def apt_install(packages: typing.Sequence[str], output: typing.Any = None,
                recommends: bool = True) -> bool:
    """apt-get update + install; True when it worked.

    No systemd here: a policy-rc.d keeps package scripts from starting
    services; the tools start each one themselves.
    """
    if not os.path.exists(POLICY_RC_D):
        with open(POLICY_RC_D, 'w') as script:
            script.write('#!/bin/sh\nexit 101\n')
        os.chmod(POLICY_RC_D, 0o755)
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    subprocess.run(['apt-get', 'update', '-q'], stdout=output,
                   stderr=subprocess.STDOUT, env=env)
    argv = ['apt-get', 'install', '-y', '-q']
    if not recommends:
        argv.append('--no-install-recommends')
    return subprocess.run(argv + list(packages), stdout=output,
                          stderr=subprocess.STDOUT, env=env).returncode == 0


# -- daemons ------------------------------------------------------------------

def docker_ok(sock: str = DOCKER_SOCKET) -> bool:
    """The host's engine answers /_ping on its socket."""
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(2)
            conn.connect(sock)
            conn.sendall(b'GET /_ping HTTP/1.0\r\n\r\n')
            return b'200 OK' in conn.recv(200)
    except OSError:
        return False


def dockerd_argv(daemon_json: str = DAEMON_JSON) -> typing.List[str]:
    """dockerd with live-restore (containers keep running across a dockerd
    restart; the driver warns when it is off). Not as a flag when
    daemon.json sets it: dockerd refuses a directive given both ways."""
    try:
        with open(daemon_json) as conf:
            configured = '"live-restore"' in conf.read()
    except OSError:
        configured = False
    return ['dockerd'] if configured else ['dockerd', '--live-restore']


def ovs_ok() -> bool:
    return subprocess.run(['ovs-vsctl', '--timeout=5', 'show'],
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def start_ovs(output: typing.Any = None) -> bool:
    """The userspace-datapath OVS of Debian's package; True when started."""
    return subprocess.run([OVS_CTL, '--system-id=random', 'start'],
                          stdout=output,
                          stderr=subprocess.STDOUT).returncode == 0


def lxcfs_ok(lxcfs_dir: str = LXCFS_DIR) -> bool:
    return os.access(os.path.join(lxcfs_dir, 'proc/meminfo'), os.R_OK)


def lxcfs_argv(lxcfs_dir: str = LXCFS_DIR) -> typing.List[str]:
    """LXCFS as Debian's unit runs it, plus CPU (CFS quota) and loadavg."""
    return ['lxcfs', '--enable-cfs', '--enable-loadavg', lxcfs_dir]


def prepare_lxcfs_dir(lxcfs_dir: str = LXCFS_DIR) -> None:
    """A killed lxcfs leaves a dead FUSE mount behind: lift it first."""
    with open('/proc/mounts') as mounts:
        if ' %s fuse' % lxcfs_dir in mounts.read():
            subprocess.run(['umount', '-l', lxcfs_dir])
    os.makedirs(lxcfs_dir, exist_ok=True)


def unix_socket_answers(path: str) -> bool:
    """Something accepts connections on the unix socket ``path``. A killed
    daemon leaves its socket file behind, and connections to it are
    refused: the file alone says nothing."""
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(2)
            conn.connect(path)
            return True
    except OSError:
        return False


def remove_stale_socket(path: str) -> bool:
    """Remove the socket file ``path`` when nothing answers on it (a
    killed run's); True when it was removed."""
    if os.path.lexists(path) and not unix_socket_answers(path):
        os.unlink(path)
        return True
    return False


def process_identity(pid: int) -> typing.Optional[str]:
    """Boot id and start time of process ``pid``, None when there is no
    such process. A PID recorded by a killed run may since name another
    process: its identity differs."""
    try:
        with open('/proc/%d/stat' % pid) as stat:
            # Field 22 (starttime); the fields after the command's ')'
            # start at field 3.
            start = stat.read().rsplit(')', 1)[1].split()[19]
        with open('/proc/sys/kernel/random/boot_id') as boot:
            return '%s:%s' % (boot.read().strip(), start)
    except (OSError, IndexError):
        return None


def start_detached(argv: typing.Sequence[str], log_path: str,
                   env: typing.Optional[dict] = None) -> int:
    """A background process in its own session (so its process group can
    be stopped as a whole), output to ``log_path``; its PID."""
    with open(log_path, 'wb') as log:
        proc = subprocess.Popen(list(argv), stdout=log,
                                stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    return proc.pid


def pid_alive(pid: typing.Optional[int]) -> bool:
    """Whether ``pid`` runs. A child of ours that exited is reaped here:
    a zombie would look alive (and keep its process group alive)."""
    if not pid:
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for(check: typing.Callable[[], bool], seconds: float,
             interval: float = 0.5) -> bool:
    """Poll ``check`` until it is true (True) or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def succeeds(*argv: str) -> typing.Callable[[], bool]:
    """A check for wait_for: the command exits 0 (output discarded)."""
    def check() -> bool:
        return subprocess.run(list(argv), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
    return check


# -- venvs ------------------------------------------------------------------

def files_digest(paths: typing.Iterable[str]) -> str:
    """sha256 of the files' contents, concatenated (missing ones skipped)."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            with open(path, 'rb') as f:
                digest.update(f.read())
        except FileNotFoundError:
            pass
    return digest.hexdigest()


def stamp_current(stamp_path: str, want: str) -> bool:
    """Whether a venv was built for ``want`` (what its stamp file says)."""
    try:
        with open(stamp_path) as stamp:
            return stamp.read().strip() == want.strip()
    except OSError:
        return False


def write_stamp(stamp_path: str, want: str) -> None:
    with open(stamp_path, 'w') as stamp:
        stamp.write(want + '\n')


def create_venv(python: str, venv: str, output: typing.Any = None,
                quiet: bool = True) -> bool:
    """``python -m venv`` unless there is one; pip upgraded in a new one."""
    if os.access(os.path.join(venv, 'bin/python'), os.X_OK):
        return True
    if subprocess.run([python, '-m', 'venv', venv], stdout=output,
                      stderr=subprocess.STDOUT).returncode != 0:
        return False
    return subprocess.run(
        [os.path.join(venv, 'bin/pip'), 'install'] + (['-q'] if quiet else [])
        + ['-U', 'pip'], stdout=output,
        stderr=subprocess.STDOUT).returncode == 0


def pip_install_checkout(venv: str, top: str,
                         output: typing.Any = None) -> bool:
    """This checkout, as operators install it: non-editable, so that
    nova/virt/docker lands inside nova's package (pbr's path spelling
    breaks editable installs)."""
    return subprocess.run(
        [os.path.join(venv, 'bin/pip'), 'install', '-q', '--no-deps',
         '--force-reinstall', top], stdout=output,
        stderr=subprocess.STDOUT).returncode == 0
