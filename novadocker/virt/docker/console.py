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

"""The interactive serial console: the workload's TTY over plain TCP.

nova-serialproxy relays the browser's websocket to a raw TCP host:port, as
it does to QEMU's TCP chardev under libvirt. Here an instance whose console
is asked for gets a listener on ``[serial_console]proxyclient_address``, on
a port from ``nova.console.serial.acquire_port``; each accepted connection
is relayed, by two native threads, to the workload's stdin and stdout
through Docker's attach API (the workload has a TTY and an open stdin, so
its shell outlives every client).

One client at a time: a new connection replaces the current one (which is
closed), so a reconnecting browser never finds its console held by its own
dead tab. The listener lives until the instance is deleted or nova-compute
stops; while the workload is not running (stopped, rescued) a connection is
closed at once.
"""

import socket
import threading
import typing

import docker
from nova.console import serial as serial_ports
from nova import exception
from oslo_log import log as logging

from novadocker import conf
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import guest as guest_mod

CONF = conf.CONF
LOG = logging.getLogger(__name__)

# Docker's attach: stdin in, stdout and stderr (one stream with a TTY) out.
ATTACH_PARAMS = {'stdin': 1, 'stdout': 1, 'stderr': 1, 'stream': 1}
THREAD_PREFIX = 'serial-console-'
_CHUNK = 4096


def _raw_socket(attached) -> socket.socket:
    """The socket under what ``attach_socket`` returns (a SocketIO for
    unix and plain TCP engines, the socket itself for TLS)."""
    return getattr(attached, '_sock', attached)


def _shut(sock: socket.socket) -> None:
    """Wake any thread blocked on ``sock``, then close it."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass   # never connected, or the peer already closed it
    sock.close()


class Relay:
    """One TCP client and one attach stream, copied both ways by two
    threads; whichever side ends first closes both (and the stream's own
    API client)."""

    def __init__(self, name: str, client: socket.socket,
                 attached: socket.socket, api: docker.APIClient):
        self._client = client
        self._attached = attached
        self._api = api
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._copy, args=(client, attached),
                             name=name + '-in', daemon=True),
            threading.Thread(target=self._copy, args=(attached, client),
                             name=name + '-out', daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _copy(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass   # the other side closed: the end of this connection
        finally:
            self.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Idempotent; safe from either copying thread."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        _shut(self._client)
        _shut(self._attached)
        self._api.close()

    def join(self, timeout: typing.Optional[float] = None) -> None:
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current and thread.ident is not None:
                thread.join(timeout)


class ConsoleListener:
    """One instance's listening socket and the relay of its client."""

    def __init__(self, instance, address: str, port: int,
                 connect: typing.Callable[[], docker.APIClient]):
        self.instance = instance
        self.address = address
        self.port = port
        self._connect = connect
        self._name = THREAD_PREFIX + instance.uuid
        family = socket.AF_INET6 if ':' in address else socket.AF_INET
        self._server = socket.create_server((address, port), family=family)
        self._lock = threading.Lock()
        self._closed = False
        self._relay: typing.Optional[Relay] = None
        self._thread = threading.Thread(target=self._accept_loop,
                                        name=self._name + '-accept',
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, peer = self._server.accept()
            except OSError as exc:
                if not self._closed:
                    LOG.error('Serial console: the listener on port %(port)d '
                              'failed: %(exc)s',
                              {'port': self.port, 'exc': exc},
                              instance=self.instance)
                return
            self._serve(client, peer)

    def _serve(self, client: socket.socket, peer) -> None:
        """Relay ``client`` to the workload, replacing the current one."""
        with self._lock:
            old, self._relay = self._relay, None
        if old is not None:
            LOG.info('Serial console: a new client (%s) replaces the '
                     'current one', peer[0], instance=self.instance)
            old.close()
            old.join()
        try:
            attached, api = self._attach()
        except Exception as exc:
            LOG.info('Serial console: refusing %s: %s', peer[0], exc,
                     instance=self.instance)
            _shut(client)
            return
        relay = Relay(self._name, client, attached, api)
        with self._lock:
            if self._closed:
                relay.close()
                return
            self._relay = relay
            # Started under the lock: close() then always finds it
            # started and joins its threads, never one about to start.
            relay.start()

    def _attach(self) -> typing.Tuple[socket.socket, docker.APIClient]:
        """The workload's attach stream on its own API client (no call
        timeout: a console may be idle for hours)."""
        api = self._connect()
        name = guest_mod.container_name(self.instance)
        try:
            with docker_client.translate_errors('attach',
                                                instance=self.instance):
                if not api.inspect_container(name)['State']['Running']:
                    raise exception.InstanceNotReady(
                        instance_id=self.instance.uuid)
                attached = api.attach_socket(name, params=ATTACH_PARAMS)
        except Exception:
            api.close()
            raise
        sock = _raw_socket(attached)
        sock.settimeout(None)
        return sock, api

    def close(self) -> None:
        """Stop listening, end the client's relay, join every thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            relay, self._relay = self._relay, None
        _shut(self._server)
        if relay is not None:
            relay.close()
            relay.join()
        if self._thread.ident is not None:
            self._thread.join()
        # The accept loop may have made a relay just before it saw closed.
        with self._lock:
            relay, self._relay = self._relay, None
        if relay is not None:
            relay.close()
            relay.join()


class SerialConsoles:
    """The serial console listeners of this nova-compute, one per
    instance, owned by the driver."""

    def __init__(self, connect: typing.Callable[[], docker.APIClient]):
        self._connect = connect
        self._lock = threading.Lock()
        self._listeners: typing.Dict[str, ConsoleListener] = {}

    def open(self, instance) -> typing.Tuple[str, int]:
        """The instance's (host, port), listening from the first call on;
        the same port again while it lives."""
        with self._lock:
            listener = self._listeners.get(instance.uuid)
            if listener is None:
                listener = self._listen(instance)
                self._listeners[instance.uuid] = listener
        return listener.address, listener.port

    def _listen(self, instance) -> ConsoleListener:
        address = CONF.serial_console.proxyclient_address
        port = serial_ports.acquire_port(address)
        listener = None
        try:
            listener = ConsoleListener(instance, address, port,
                                       self._connect)
            listener.start()
        except Exception:
            if listener is not None:
                listener.close()
            serial_ports.release_port(address, port)
            raise
        LOG.info('Serial console listening on %(address)s:%(port)d',
                 {'address': address, 'port': port}, instance=instance)
        return listener

    def close(self, instance_uuid: str) -> None:
        """Close the instance's listener and client; release the port."""
        with self._lock:
            listener = self._listeners.pop(instance_uuid, None)
        if listener is not None:
            self._close(listener)

    def close_all(self) -> None:
        with self._lock:
            listeners = list(self._listeners.values())
            self._listeners.clear()
        for listener in listeners:
            self._close(listener)

    @staticmethod
    def _close(listener: ConsoleListener) -> None:
        try:
            listener.close()
        finally:
            serial_ports.release_port(listener.address, listener.port)
