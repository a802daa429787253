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
"""The all-in-one's own Docker engine, on a btrfs data root with quotas.

Why its own: a flavor's root_gb is a real limit only where Docker can
size a container's writable layer (``storage_opt size``), and btrfs with
quotas can (XFS project quotas are not in this kernel). The host's engine
and its data root are never touched: this one has its own containerd,
socket, exec root and a sparse btrfs loop file under AIO_DIR, no bridge
and no iptables rules. Every docker command tools/aio runs goes to it
through DOCKER_HOST. Standard library only.
"""

import json
import os
import subprocess
import typing

from ndtools import aio_state
from ndtools import host

# What RUN/started records, for down (stop, unmount) and clean (the file).
MARK_MOUNT = 'engine-mount'


def containerd_config(root: str, state: str, socket: str) -> str:
    """A containerd of its own (root, state, socket), without the CRI
    plugin: the host's containerd and its config are never touched."""
    return ('version = 2\n'
            'root = "%s"\n'
            'state = "%s"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            '[grpc]\n  address = "%s"\n' % (root, state, socket))


def remove_file(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def mount_btrfs(image_file: str, mount_point: str, gigabytes: int,
                mounted: typing.Callable[[], None] = lambda: None) -> None:
    """A sparse btrfs file (made if missing) mounted at ``mount_point``
    with quotas on: an engine whose data root it is can size containers'
    writable layers (``storage_opt size``). ``mounted`` runs once it is
    mounted (a mark for down)."""
    os.makedirs(mount_point, exist_ok=True)
    if not os.path.ismount(mount_point):
        if not os.path.exists(image_file):
            with open(image_file, 'wb') as image:
                image.truncate(gigabytes * 1024 ** 3)
            aio_state.sh('mkfs.btrfs', '-q', image_file)
        aio_state.sh('mount', '-o', 'loop', image_file, mount_point)
    mounted()
    aio_state.sh('btrfs', 'quota', 'enable', mount_point)


class Engine:
    """Start, stop and remove the all-in-one's engine."""

    def __init__(self, state: aio_state.State):
        self.state = state
        self.s = state.s

    @property
    def containerd_socket(self) -> str:
        return os.path.join(self.s.run, 'containerd.sock')

    def argv(self) -> typing.List[str]:
        s = self.s
        return ['dockerd', '--host', s.docker_host,
                '--data-root', s.engine_root,
                '--exec-root', os.path.join(s.run, 'docker-exec'),
                '--pidfile', os.path.join(s.run, 'dockerd-engine.pid'),
                '--config-file', os.path.join(s.run, 'daemon.json'),
                '--containerd', self.containerd_socket,
                '--storage-driver', 'btrfs', '--live-restore',
                '--bridge', 'none', '--iptables=false', '--ip-masq=false',
                '--userland-proxy=false']

    def containerd_config(self) -> str:
        return containerd_config(
            os.path.join(self.s.engine_root, 'containerd'),
            os.path.join(self.s.run, 'containerd'), self.containerd_socket)

    def ok(self) -> bool:
        return host.docker_ok(self.s.docker_socket)

    def mounted(self) -> bool:
        return os.path.ismount(self.s.engine_root)

    # -- up ------------------------------------------------------------------

    def prepare_data_root(self) -> None:
        """A sparse btrfs file mounted at the data root, quotas on."""
        s = self.s
        mount_btrfs(s.engine_file, s.engine_root, s.engine_gb,
                    lambda: self.state.mark(MARK_MOUNT))

    def start(self) -> None:
        if self.ok():
            print('the all-in-one engine already answers on %s: using it'
                  % self.s.docker_socket, flush=True)
            return
        self.prepare_data_root()
        os.makedirs(self.s.run, exist_ok=True)
        config = os.path.join(self.s.run, 'containerd.toml')
        with open(config, 'w') as handle:
            handle.write(self.containerd_config())
        # Its own daemon.json: the host's (devstack's) must not apply.
        with open(os.path.join(self.s.run, 'daemon.json'), 'w') as handle:
            json.dump({}, handle)
        # A killed run leaves its sockets and pid file: dockerd would wait
        # on a dead containerd, or refuse a recycled PID in its pid file.
        if not host.unix_socket_answers(self.containerd_socket):
            self.state.stop_pid('containerd')
            host.remove_stale_socket(self.containerd_socket)
            host.remove_stale_socket(self.containerd_socket + '.ttrpc')
            self.state.start_svc('containerd', 'containerd', '--config',
                                 config)
            self.state.wait_ready(
                'containerd',
                lambda: host.unix_socket_answers(self.containerd_socket), 60)
        self.state.stop_pid('dockerd')
        remove_file(os.path.join(self.s.run, 'dockerd-engine.pid'))
        self.state.start_svc('dockerd', *self.argv())
        self.state.wait_ready('dockerd', self.ok, 90)
        print('dockerd (btrfs data root %s, %d GB sparse file %s) on %s'
              % (self.s.engine_root, self.s.engine_gb, self.s.engine_file,
                 self.s.docker_host), flush=True)

    # -- down / clean --------------------------------------------------------

    def stop(self) -> None:
        """dockerd, then its containerd (shims and containers are gone by
        now: down removes the servers first), then the mount."""
        state = self.state
        if state.marked('svc:dockerd'):
            state.stop_pid('dockerd')
        if state.marked('svc:containerd'):
            state.stop_pid('containerd')
        if state.marked(MARK_MOUNT) and self.mounted():
            if subprocess.run(['umount', self.s.engine_root]).returncode:
                print('%s is busy: unmounting lazily' % self.s.engine_root,
                      flush=True)
                subprocess.run(['umount', '-l', self.s.engine_root])
            print('unmounted %s' % self.s.engine_root, flush=True)

    def remove(self) -> None:
        """clean: the loop file and its mount point."""
        if self.mounted():
            return
        for path in (self.s.engine_file,):
            if os.path.exists(path):
                os.unlink(path)
                print('removed %s' % path, flush=True)
        if os.path.isdir(self.s.engine_root):
            os.rmdir(self.s.engine_root)
