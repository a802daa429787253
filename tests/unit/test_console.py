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

"""The serial console's relay and listeners, with socket pairs standing
in for Docker's attach streams behind a specced APIClient."""

import os
import socket
import threading
from unittest import mock

import docker
import docker.errors
import fixtures
from nova.console import serial as serial_ports
from oslo_config import fixture as config_fixture
import testtools

import nova.conf  # noqa: F401  (registers nova's options)
from novadocker import conf
from novadocker.virt.docker import console
from novadocker.virt.docker import guest
from tests.fixtures import console as console_fixtures
from tests.fixtures import objects as obj_fixtures

CONF = conf.CONF
TIMEOUT = 30   # only stops a hung test


def read_exactly(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(TIMEOUT)
    data = b''
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def at_eof(sock: socket.socket) -> bool:
    """The peer closed ``sock`` (a timeout means it did not)."""
    sock.settimeout(TIMEOUT)
    try:
        return sock.recv(1) == b''
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def threads_named(prefix: str) -> list:
    return [t.name for t in threading.enumerate()
            if t.name.startswith(prefix)]


class FakeWorkload:
    """A specced APIClient per attach, each stream one end of a socket
    pair whose other end (the workload's TTY) the test holds."""

    def __init__(self, test: testtools.TestCase, running: bool = True):
        self.test = test
        self.running = running
        self.apis = []
        self.ttys = []
        self.attach_error = None

    def connect(self) -> docker.APIClient:
        api = mock.create_autospec(docker.APIClient, instance=True)
        api.inspect_container.return_value = {
            'State': {'Running': self.running}}
        api.attach_socket.side_effect = self._attach
        self.apis.append(api)
        return api

    def _attach(self, container, params=None, ws=False):
        if self.attach_error is not None:
            raise self.attach_error
        ours, theirs = socket.socketpair()
        self.test.addCleanup(ours.close)
        self.ttys.append(ours)
        # attach_socket gives a SocketIO for unix engines: the relay must
        # find the socket under it.
        return socket.SocketIO(theirs, 'rwb')


class RelayTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.client, self.client_end = socket.socketpair()
        self.tty, self.attached = socket.socketpair()
        for sock in (self.client, self.tty):
            self.addCleanup(sock.close)
        self.api = mock.create_autospec(docker.APIClient, instance=True)
        self.relay = console.Relay('relay-test', self.client_end,
                                   self.attached, self.api)
        self.relay.start()
        self.addCleanup(self.relay.close)

    def test_copies_both_ways(self):
        self.client.sendall(b'ls\n')
        self.assertEqual(b'ls\n', read_exactly(self.tty, 3))
        self.tty.sendall(b'bin etc\n')
        self.assertEqual(b'bin etc\n', read_exactly(self.client, 8))

    def test_client_leaving_closes_the_stream_and_its_api(self):
        self.client.close()
        self.relay.join(TIMEOUT)
        self.assertTrue(self.relay.closed)
        self.assertTrue(at_eof(self.tty))
        self.api.close.assert_called_once_with()
        self.assertEqual([], threads_named('relay-test'))

    def test_workload_ending_closes_the_client(self):
        self.tty.close()
        self.relay.join(TIMEOUT)
        self.assertTrue(at_eof(self.client))
        self.api.close.assert_called_once_with()

    def test_close_is_idempotent(self):
        self.relay.close()
        self.relay.close()
        self.relay.join(TIMEOUT)
        self.api.close.assert_called_once_with()
        self.assertEqual([], threads_named('relay-test'))


class ListenerTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.FakeLogger())
        self.instance = obj_fixtures.instance()
        self.workload = FakeWorkload(self)
        self.listener = console.ConsoleListener(
            self.instance, '127.0.0.1', 0, self.workload.connect)
        # Port 0: the kernel picked one; ask the socket which.
        self.port = self.listener._server.getsockname()[1]
        self.listener.start()
        self.addCleanup(self.listener.close)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(('127.0.0.1', self.port), TIMEOUT)
        self.addCleanup(sock.close)
        return sock

    def wait_for_attach(self, count: int) -> socket.socket:
        for _ in range(TIMEOUT * 100):
            if len(self.workload.ttys) >= count:
                return self.workload.ttys[count - 1]
            threading.Event().wait(0.01)
        self.fail('no attach %d' % count)

    def test_relays_to_the_workload_it_attached(self):
        client = self.connect()
        tty = self.wait_for_attach(1)
        client.sendall(b'echo hi\n')
        self.assertEqual(b'echo hi\n', read_exactly(tty, 8))
        tty.sendall(b'hi\n')
        self.assertEqual(b'hi\n', read_exactly(client, 3))
        api = self.workload.apis[0]
        api.attach_socket.assert_called_once_with(
            guest.container_name(self.instance),
            params=console.ATTACH_PARAMS)

    def test_new_client_replaces_the_current_one(self):
        old = self.connect()
        old_tty = self.wait_for_attach(1)
        new = self.connect()
        new_tty = self.wait_for_attach(2)
        self.assertTrue(at_eof(old))
        self.assertTrue(at_eof(old_tty))
        self.workload.apis[0].close.assert_called_once_with()
        new.sendall(b'x')
        self.assertEqual(b'x', read_exactly(new_tty, 1))

    def test_stopped_workload_closes_the_client(self):
        self.workload.running = False
        client = self.connect()
        self.assertTrue(at_eof(client))
        api = self.workload.apis[0]
        api.attach_socket.assert_not_called()
        api.close.assert_called_once_with()

    def test_attach_refused_closes_the_client(self):
        self.workload.attach_error = docker.errors.APIError(
            'conflict', response=mock.Mock(status_code=409),
            explanation='container is paused, unpause the container '
                        'before attach')
        client = self.connect()
        self.assertTrue(at_eof(client))
        self.workload.apis[0].close.assert_called_once_with()
        # The listener still serves the next client.
        self.workload.attach_error = None
        self.connect()
        self.wait_for_attach(1)

    def test_close_ends_listener_client_and_threads(self):
        client = self.connect()
        tty = self.wait_for_attach(1)
        self.listener.close()
        self.assertTrue(at_eof(client))
        self.assertTrue(at_eof(tty))
        self.assertRaises(ConnectionRefusedError, socket.create_connection,
                          ('127.0.0.1', self.port), TIMEOUT)
        self.assertEqual(
            [], threads_named(console.THREAD_PREFIX + self.instance.uuid))


class SerialConsolesTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.FakeLogger())
        cfg = self.useFixture(config_fixture.Config(CONF))
        ports = self.useFixture(console_fixtures.PrivatePortRange())
        cfg.config(proxyclient_address='127.0.0.1',
                   port_range=ports.port_range, group='serial_console')
        self.workload = FakeWorkload(self)
        self.consoles = console.SerialConsoles(self.workload.connect)
        self.addCleanup(self.consoles.close_all)

    def allocated(self, port: int) -> bool:
        return ('127.0.0.1', port) in serial_ports.ALLOCATED_PORTS

    def test_same_port_while_it_lives(self):
        instance = obj_fixtures.instance()
        host, port = self.consoles.open(instance)
        self.assertEqual('127.0.0.1', host)
        self.assertEqual((host, port), self.consoles.open(instance))
        self.assertTrue(self.allocated(port))
        other = self.consoles.open(obj_fixtures.instance())
        self.assertNotEqual(port, other[1])

    def test_close_releases_the_port(self):
        instance = obj_fixtures.instance()
        _, port = self.consoles.open(instance)
        self.consoles.close(instance.uuid)
        self.assertFalse(self.allocated(port))
        self.assertRaises(ConnectionRefusedError, socket.create_connection,
                          ('127.0.0.1', port), TIMEOUT)
        self.assertEqual(
            [], threads_named(console.THREAD_PREFIX + instance.uuid))
        self.consoles.close(instance.uuid)   # idempotent

    def test_close_all(self):
        ports = [self.consoles.open(obj_fixtures.instance())[1]
                 for _ in range(2)]
        self.consoles.close_all()
        self.assertEqual([False, False], [self.allocated(p) for p in ports])
        self.assertEqual([], threads_named(console.THREAD_PREFIX))

    def test_listen_failure_releases_the_port(self):
        self.useFixture(fixtures.MockPatchObject(
            console.ConsoleListener, 'start', autospec=True,
            side_effect=RuntimeError('no thread')))
        taken = []
        real_acquire = serial_ports.acquire_port

        def acquire(host):
            taken.append(real_acquire(host))
            return taken[-1]
        self.useFixture(fixtures.MockPatch(
            'nova.console.serial.acquire_port', autospec=True,
            side_effect=acquire))
        self.assertRaises(RuntimeError, self.consoles.open,
                          obj_fixtures.instance())
        self.assertFalse(self.allocated(taken[0]))
        self.assertRaises(ConnectionRefusedError, socket.create_connection,
                          ('127.0.0.1', taken[0]), TIMEOUT)


class PrivatePortRangeTest(testtools.TestCase):
    """Test processes side by side never share a console port."""

    def test_ranges_held_at_once_are_disjoint_and_freed_after(self):
        first = console_fixtures.PrivatePortRange()
        second = console_fixtures.PrivatePortRange()
        first.setUp()
        second.setUp()
        ports = [set(range(*map(int, f.port_range.split(':'))))
                 for f in (first, second)]
        self.assertEqual(set(), ports[0] & ports[1])
        self.assertTrue(all(1024 < p < 32768 for p in ports[0] | ports[1]))
        slots = {self.slot_inode(f) for f in (first, second)}
        self.assertEqual(slots, slots & self.inodes_locked_here())
        first.cleanUp()
        second.cleanUp()
        # Released (another worker may take a freed slot at once, so only
        # this process's locks are looked at).
        self.assertEqual(set(), slots & self.inodes_locked_here())

    @staticmethod
    def slot_inode(fixture) -> int:
        slot = ((int(fixture.port_range.split(':')[0]) - fixture.FIRST)
                // fixture.WIDTH)
        return os.stat(os.path.join(fixture.LOCKS, str(slot))).st_ino

    @staticmethod
    def inodes_locked_here() -> set:
        """Inodes of the flocks this process holds (/proc/locks: ``1:
        FLOCK ADVISORY WRITE pid major:minor:inode start end``)."""
        with open('/proc/locks') as locks:
            return {int(fields[5].rsplit(':', 1)[1])
                    for fields in map(str.split, locks)
                    if fields[1] == 'FLOCK' and fields[4] == str(os.getpid())}

    def test_nova_allocates_inside_the_range(self):
        ports = self.useFixture(console_fixtures.PrivatePortRange())
        cfg = self.useFixture(config_fixture.Config(CONF))
        cfg.config(port_range=ports.port_range, group='serial_console')
        port = serial_ports.acquire_port('127.0.0.1')
        self.addCleanup(serial_ports.release_port, '127.0.0.1', port)
        self.assertIn(port, range(*map(int, ports.port_range.split(':'))))
