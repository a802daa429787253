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

"""The serial console end to end: the API's console URL, nova-serialproxy's
own websocket handler (token check, validate_console_port through RPC to
the compute), the driver's listener, the workload's shell."""

import socket
import threading
from urllib import parse
import uuid

from nova.console import websocketproxy
from websockify import websocket

from tests.fixtures import console as console_fixtures
from tests.fixtures import images as image_fixtures
from tests.integration import base

TIMEOUT = 60   # only stops a hung test


class OneClientProxy:
    """nova-serialproxy's NovaWebSocketProxy serving one client in a
    thread of this process: its server loop forks per client and sets
    signal handlers, which a test cannot do; the per-client path
    (top_new_client: handshake, token, port check, relay) is nova's."""

    def __init__(self):
        self.server = websocketproxy.NovaWebSocketProxy(
            listen_host='127.0.0.1', listen_port=0, file_only=True,
            RequestHandlerClass=websocketproxy.NovaProxyRequestHandler)
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve_one,
                                       name='test-serialproxy', daemon=True)
        self.thread.start()

    def _serve_one(self):
        client, address = self.listener.accept()
        try:
            self.server.top_new_client(client, address)
        finally:
            client.close()
            self.listener.close()


class TokenWebSocket(websocket.WebSocket):
    """websockify's client, which sends the URL's path without its query:
    the proxy reads the console token from the query string."""

    def __init__(self, query: str):
        super().__init__()
        self.query = query

    def send_request(self, type, path):
        super().send_request(type, '%s?%s' % (path, self.query))


def read_until(ws: websocket.WebSocket, marker: bytes) -> bytes:
    def recv():
        try:
            return ws.recv()
        except websocket.WebSocketWantReadError:
            return b''   # half a frame so far
    return console_fixtures.read_until(recv, marker, TIMEOUT)


class SerialConsoleProxyTest(base.IntegrationTestCase):

    def setUp(self):
        super().setUp()
        ports = self.useFixture(console_fixtures.PrivatePortRange())
        self.flags(enabled=True, port_range=ports.port_range,
                   group='serial_console')

    def console_url(self, server) -> str:
        self.addCleanup(setattr, self.api, 'microversion',
                        self.api.microversion)
        self.api.microversion = '2.6'
        body = self.api.api_post(
            '/servers/%s/remote-consoles' % server['id'],
            {'remote_console': {'protocol': 'serial', 'type': 'serial'}}
        ).body['remote_console']
        self.assertEqual('serial', body['type'])
        return body['url']

    def test_websocket_reaches_the_shell(self):
        server = self.boot(self.upload_image(
            image_fixtures.shell_image_tarball()))
        url = parse.urlparse(self.console_url(server))
        self.assertIn('token=', url.query)
        proxy = OneClientProxy()
        ws = TokenWebSocket(url.query)
        ws.connect('ws://127.0.0.1:%d/' % proxy.port, protocols=['binary'])
        ws.socket.settimeout(TIMEOUT)
        token = uuid.uuid4().hex[:8].encode()
        ws.send(b'echo hello-%s-"marker"\n' % token)
        self.assertIn(b'hello-%s-marker' % token,
                      read_until(ws, b'hello-%s-marker' % token))
        ws.close()   # the proxy's relay ends with it
        proxy.thread.join(TIMEOUT)
        self.assertFalse(proxy.thread.is_alive())
