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

"""The all-in-one's own engine: everything under AIO_DIR, nothing of the
host's engine (its socket, data root, bridge, iptables rules) used.
The engine itself runs for real in `tools/aio up` (scenario tests)."""

import os
import shutil
import socket
import subprocess
import tempfile
import time

import fixtures
import testtools

from ndtools import aio_state
from ndtools import engine
from ndtools import host
from tests.fixtures import docker as docker_fixtures


class EngineTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.settings = aio_state.Settings({'AIO_DIR': '/srv/aio',
                                            'AIO_DOCKER_GB': '7'})
        self.engine = engine.Engine(aio_state.State(self.settings))

    def test_paths_under_aio_dir(self):
        s = self.settings
        self.assertEqual(7, s.engine_gb)
        self.assertEqual('unix:///srv/aio/run/docker.sock', s.docker_host)
        for path in (s.engine_file, s.engine_root, s.docker_socket,
                     self.engine.containerd_socket):
            self.assertTrue(path.startswith('/srv/aio/'), path)

    def test_dockerd_is_private_and_on_btrfs(self):
        argv = self.engine.argv()
        joined = ' '.join(argv)
        self.assertNotIn('/var/run/docker.sock', joined)
        self.assertNotIn('/var/lib/docker', joined)

        def value(flag):
            return argv[argv.index(flag) + 1]
        self.assertEqual('btrfs', value('--storage-driver'))
        self.assertEqual('none', value('--bridge'))
        self.assertEqual(self.settings.docker_host, value('--host'))
        self.assertEqual('/srv/aio/docker', value('--data-root'))
        self.assertEqual(self.engine.containerd_socket, value('--containerd'))
        self.assertIn('--iptables=false', argv)
        self.assertIn('--live-restore', argv)

    def test_containerd_keeps_its_state_beside_the_engine(self):
        config = self.engine.containerd_config()
        self.assertIn('root = "/srv/aio/docker/containerd"', config)
        self.assertIn('address = "/srv/aio/run/containerd.sock"', config)


class ServiceStateTest(testtools.TestCase):
    """PID files and start-up waits, on real (harmless) processes."""

    def setUp(self):
        super().setUp()
        aio_dir = self.useFixture(fixtures.TempDir()).path
        self.state = aio_state.State(aio_state.Settings({'AIO_DIR': aio_dir}))
        os.makedirs(self.state.s.logs)
        os.makedirs(self.state.s.run)

    def sleeper(self):
        proc = subprocess.Popen(['sleep', '60'], start_new_session=True)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        return proc

    def test_pid_of_a_started_service(self):
        pid = self.state.start_svc('napper', 'sleep', '60')
        self.addCleanup(self.state.stop_pid, 'napper')
        self.assertEqual(pid, self.state.pid('napper'))
        self.state.stop_pid('napper')
        self.assertFalse(host.pid_alive(pid))
        self.assertIsNone(self.state.pid('napper'))

    def test_a_recycled_pid_is_not_ours_and_survives_stop(self):
        # A killed run's PID file whose PID now names another process.
        stranger = self.sleeper()
        with open(os.path.join(self.state.s.run, 'dockerd.pid'), 'w') as f:
            f.write('%d %s\n' % (stranger.pid, 'another-boot:12345'))
        self.assertIsNone(self.state.pid('dockerd'))
        self.state.stop_pid('dockerd')
        self.assertIsNone(stranger.poll())
        self.assertFalse(os.path.exists(
            os.path.join(self.state.s.run, 'dockerd.pid')))

    def test_wait_ready_fails_at_once_with_the_output_of_an_exited_one(self):
        self.state.start_svc('crasher', 'sh', '-c',
                             'echo "cannot open the data root"; exit 3')
        started = time.monotonic()
        error = self.assertRaises(aio_state.StepFailed,
                                  self.state.wait_ready, 'crasher',
                                  lambda: False, 60)
        self.assertLess(time.monotonic() - started, 30)
        self.assertIn('crasher exited', str(error))
        self.assertIn('cannot open the data root', str(error))

    def test_wait_ready_gives_up_with_the_output(self):
        self.state.start_svc('mute', 'sh', '-c', 'echo listening; sleep 60')
        self.addCleanup(self.state.stop_pid, 'mute')
        error = self.assertRaises(aio_state.StepFailed,
                                  self.state.wait_ready, 'mute',
                                  lambda: False, 1)
        self.assertIn('mute did not answer within 1 s', str(error))
        self.assertIn('listening', str(error))

    def test_wait_ready_returns_when_it_answers(self):
        self.state.start_svc('quick', 'sleep', '60')
        self.addCleanup(self.state.stop_pid, 'quick')
        self.state.wait_ready('quick', lambda: True, 1)


class EngineOverLeftoversTest(testtools.TestCase):
    """The engine starts for real over what a killed run leaves in RUN:
    socket files nobody listens on, a dockerd pid file and PID files
    naming processes that are not ours. CI's machine keeps files between
    runs; this once cost a whole all-in-one phase."""

    def require(self):
        problems = [] if os.geteuid() == 0 else ['not running as root']
        for command in ('containerd', 'dockerd', 'mkfs.btrfs', 'btrfs'):
            if not host.command_present(command):
                problems.append('%s missing' % command)
        if problems:
            docker_fixtures.require_functional_missing(
                self, '; '.join(problems))

    def stale_socket(self, path):
        server = socket.socket(socket.AF_UNIX)
        server.bind(path)
        server.close()

    def setUp(self):
        super().setUp()
        self.require()
        aio_dir = tempfile.mkdtemp(prefix='aio-engine-', dir='/var/tmp')
        self.addCleanup(shutil.rmtree, aio_dir, ignore_errors=True)
        self.settings = aio_state.Settings({'AIO_DIR': aio_dir,
                                            'AIO_DOCKER_GB': '1'})
        self.state = aio_state.State(self.settings)
        self.engine = engine.Engine(self.state)
        os.makedirs(self.settings.run)
        os.makedirs(self.settings.logs)

    def test_starts_over_a_killed_runs_leftovers_and_down_leaves_nothing(self):
        run = self.settings.run
        stranger = subprocess.Popen(['sleep', '120'], start_new_session=True)
        self.addCleanup(stranger.wait)
        self.addCleanup(stranger.kill)
        for name in ('containerd.sock', 'containerd.sock.ttrpc',
                     'docker.sock'):
            self.stale_socket(os.path.join(run, name))
        for name in ('containerd.pid', 'dockerd.pid'):
            with open(os.path.join(run, name), 'w') as f:
                f.write('%d killed-run:1\n' % stranger.pid)
        # dockerd refuses to start over a pid file naming a live process.
        with open(os.path.join(run, 'dockerd-engine.pid'), 'w') as f:
            f.write('%d' % stranger.pid)
        self.addCleanup(self.engine.remove)
        self.addCleanup(self.engine.stop)

        self.engine.start()

        self.assertTrue(self.engine.ok())
        self.assertTrue(self.engine.mounted())
        info = subprocess.run(
            ['docker', '--host', self.settings.docker_host, 'info',
             '--format', '{{.Driver}} {{.DockerRootDir}}'],
            capture_output=True, text=True, check=True).stdout.split()
        self.assertEqual(['btrfs', self.settings.engine_root], info)
        self.assertIsNone(stranger.poll(), 'a process not ours was signalled')

        self.engine.stop()
        self.engine.remove()
        self.assertFalse(self.engine.ok())
        self.assertIsNone(stranger.poll())
        with open('/proc/mounts') as mounts:
            self.assertNotIn(self.settings.aio_dir, mounts.read())
        self.assertFalse(os.path.exists(self.settings.engine_file))
        ours = subprocess.run(['pgrep', '-f', self.settings.aio_dir],
                              capture_output=True, text=True).stdout.split()
        self.assertEqual([], ours)
