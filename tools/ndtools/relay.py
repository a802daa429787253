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
"""A TCP relay from a node's 127.0.0.1 to the host's 127.0.0.1.

The all-in-one's control plane (Keystone, RabbitMQ, Placement, Glance,
Neutron) listens on the host's 127.0.0.1 only, and the catalog names
those addresses; a process in a node's network namespace has a loopback
of its own. This relay is one process holding both ends: its listening
sockets are made inside the node's namespace (a socket stays in the
namespace it was created in), then the process returns to the host's
namespace, where every connection it makes to a service is opened. So
nova-compute in the node reaches ``127.0.0.1:5672`` and the catalog's
URLs unchanged, the services keep their addresses, and nothing listens
anywhere new on the host.

    relay.py --netns /run/netns/aio-node2 --port 5000 --port 5672 ...
    (--port LISTEN:TARGET listens on one port and connects to another)

Standard library only (setns through ctypes: os.setns is Python 3.12).
"""

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading
import typing

CLONE_NEWNET = 0x40000000
ADDRESS = '127.0.0.1'
BUFFER = 65536


def setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, 'setns: %s' % os.strerror(err))


@contextlib.contextmanager
def inside(netns_path: str) -> typing.Iterator[None]:
    """This thread in the namespace ``netns_path`` for the block; back
    in its own afterwards, whatever happens."""
    own = os.open('/proc/thread-self/ns/net', os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(own)
    finally:
        os.close(own)


def parse_port(text: str) -> typing.Tuple[int, int]:
    """'5672' -> (5672, 5672); '15672:5672' -> (15672, 5672)."""
    listen, _, target = text.partition(':')
    pair = int(listen), int(target or listen)
    for port in pair:
        if not 0 < port < 65536:
            raise ValueError('bad port %r' % text)
    return pair


def listeners(netns_path: str, ports: typing.Sequence[typing.Tuple[int, int]]
              ) -> typing.List[typing.Tuple[socket.socket, int]]:
    """(listening socket in the node's namespace, target port) each."""
    made = []
    with inside(netns_path):
        for listen, target in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ADDRESS, listen))
            sock.listen(128)
            made.append((sock, target))
    return made


def pump(source: socket.socket, sink: socket.socket) -> None:
    """One direction until EOF, then half-close the other side."""
    try:
        while True:
            data = source.recv(BUFFER)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


def serve_connection(client: socket.socket, target: int) -> None:
    """Called in the host's namespace: the upstream socket is there."""
    try:
        upstream = socket.create_connection((ADDRESS, target), timeout=30)
    except OSError as exc:
        print('relay: 127.0.0.1:%d: %s' % (target, exc), file=sys.stderr,
              flush=True)
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=pump, args=(upstream, client),
                            daemon=True)
    back.start()
    pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def accept_loop(listener: socket.socket, target: int) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve_connection, args=(client, target),
                         daemon=True).start()


def serve(netns_path: str, ports: typing.Sequence[typing.Tuple[int, int]]
          ) -> typing.List[socket.socket]:
    """Start relaying (listeners first, so a caller may connect as soon
    as this returns); the listening sockets (closing one ends its
    accept thread)."""
    made = listeners(netns_path, ports)
    for sock, target in made:
        threading.Thread(target=accept_loop, args=(sock, target),
                         daemon=True).start()
    return [sock for sock, _ in made]


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--netns', required=True,
                        help='the namespace to listen in (/run/netns/NAME)')
    parser.add_argument('--port', action='append', required=True,
                        type=parse_port, help='PORT or LISTEN:TARGET')
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.netns, args.port)
    print('relay: 127.0.0.1:%s in %s -> 127.0.0.1 here' % (
        ','.join(str(listen) for listen, _ in args.port), args.netns),
        flush=True)
    while True:
        signal.pause()


if __name__ == '__main__':
    sys.exit(main())
