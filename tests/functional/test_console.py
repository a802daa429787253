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

"""The serial console on the real engine: a raw TCP client, as
nova-serialproxy is, reaches the workload's shell."""

import socket
import threading
import time
import uuid

from nova.console import serial as serial_ports
from nova.console import type as ctype
from nova import exception

from novadocker.virt.docker import console
from tests.fixtures import console as console_fixtures
from tests.fixtures import images as image_fixtures
from tests.functional import base


def console_threads(instance) -> list:
    return [t.name for t in threading.enumerate()
            if t.name.startswith(console.THREAD_PREFIX + instance.uuid)]


def read_until(sock: socket.socket, marker: bytes, timeout=60) -> bytes:
    """What the console sent until ``marker`` appeared (the deadline only
    stops a hung test)."""
    deadline = time.monotonic() + timeout
    seen = b''
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError('no %r in %r' % (marker, seen))
        sock.settimeout(left)
        data = sock.recv(4096)
        if not data:
            raise AssertionError('console closed; got %r' % seen)
        seen += data
    return seen


def closed_by_peer(sock: socket.socket, timeout=30) -> bool:
    """True once the console closed ``sock`` (after what it still sent,
    such as the shell's prompt); False if it stays open."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except socket.timeout:
        return False
    except ConnectionResetError:
        pass
    return True


class SerialConsoleTest(base.DriverTestCase):

    def setUp(self):
        super().setUp()
        ports = self.useFixture(console_fixtures.PrivatePortRange())
        self.conf.config(enabled=True, port_range=ports.port_range,
                         group='serial_console')

    def spawn_shell(self):
        return self.spawn(
            self.add_image(image_fixtures.shell_image_tarball()))

    def round_trip(self, sock: socket.socket) -> None:
        """Type a command; its output comes back (the echo of the typed
        line has the marker's parts apart, the output has them joined)."""
        token = uuid.uuid4().hex[:8]
        sock.sendall(b'echo hello-%s-"marker"\n' % token.encode())
        self.assertIn(b'hello-%s-marker' % token.encode(),
                      read_until(sock, b'hello-%s-marker' % token.encode()))

    def connect(self, address):
        sock = socket.create_connection(address, timeout=60)
        self.addCleanup(sock.close)
        return sock

    def console_in_use(self):
        """A shell instance, its console's address and a client that has
        made a round trip."""
        instance = self.spawn_shell()
        info = self.driver.get_serial_console(self.context, instance)
        address = (info.host, info.port)
        sock = self.connect(address)
        self.round_trip(sock)
        return instance, address, sock

    def test_round_trip_reconnect_and_destroy(self):
        instance = self.spawn_shell()
        first = self.driver.get_serial_console(self.context, instance)
        self.assertIsInstance(first, ctype.ConsoleSerial)
        address = (first.host, first.port)
        self.assertEqual('127.0.0.1', first.host)
        self.assertIn(('127.0.0.1', first.port), serial_ports.ALLOCATED_PORTS)

        sock = self.connect(address)
        self.round_trip(sock)
        sock.close()
        # Reconnects reach the same shell (it outlived the client).
        for _ in range(2):
            sock = self.connect(address)
            self.round_trip(sock)
            sock.close()
        # The same port while the listener lives.
        again = self.driver.get_serial_console(self.context, instance)
        self.assertEqual(first.port, again.port)
        self.assertTrue(self.driver._guests.get(instance).running)

        self.driver.destroy(self.context, instance, [])
        self.assertRaises(ConnectionRefusedError,
                          socket.create_connection, address, 5)
        self.assertNotIn(('127.0.0.1', first.port),
                         serial_ports.ALLOCATED_PORTS)
        self.assertEqual([], console_threads(instance))

    def test_new_client_replaces_current(self):
        _, address, old = self.console_in_use()
        new = self.connect(address)
        self.round_trip(new)
        self.assertTrue(closed_by_peer(old))

    def test_detach_keys_end_the_client_not_the_shell(self):
        """Docker's ctrl-p ctrl-q detach the attach, as README says."""
        _, address, sock = self.console_in_use()
        sock.sendall(b'\x10\x11')
        self.assertTrue(closed_by_peer(sock))
        sock = self.connect(address)
        self.round_trip(sock)

    def test_stopped_instance_refused(self):
        instance = self.spawn_shell()
        info = self.driver.get_serial_console(self.context, instance)
        self.driver.power_off(instance, timeout=0)
        self.assertRaises(exception.InstanceNotReady,
                          self.driver.get_serial_console,
                          self.context, instance)
        # The listener stays, but a client of a stopped workload is
        # closed at once.
        sock = self.connect((info.host, info.port))
        self.assertTrue(closed_by_peer(sock))
        self.driver.power_on(self.context, instance, [])
        sock = self.connect((info.host, info.port))
        self.round_trip(sock)

    def test_disabled(self):
        instance = self.spawn_shell()
        self.conf.config(enabled=False, group='serial_console')
        self.assertRaises(exception.ConsoleTypeUnavailable,
                          self.driver.get_serial_console,
                          self.context, instance)
        self.assertEqual([], console_threads(instance))

    def test_cleanup_host_closes_every_console(self):
        instance, address, sock = self.console_in_use()
        self.driver.cleanup_host(self.host)
        self.assertTrue(closed_by_peer(sock))
        self.assertRaises(ConnectionRefusedError,
                          socket.create_connection, address, 5)
        self.assertEqual([], console_threads(instance))
