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

"""The serial console as a user gets it: ``openstack console url show
--serial``, nova-serialproxy's websocket, the driver's listener, the
all-in-one image's shell prompt."""

import socket
from urllib import parse

import websocket

from tests.fixtures import console as console_fixtures
from tests.scenario import base

# The prompt of busybox's interactive ash as root, after each command.
PROMPT = b' # '


class SerialConsoleScenarioTest(base.ScenarioTestCase):

    def console_url(self, server) -> str:
        """What ``openstack console url show --serial`` prints."""
        console = self.conn.compute.create_console(server,
                                                   console_type='serial')
        self.assertEqual('serial', console['type'])
        return console['url']

    def listener(self, url: str) -> tuple:
        """The driver's (host, port) behind the URL's token (admin API)."""
        token = parse.parse_qs(parse.urlparse(url).query)['token'][0]
        info = self.admin.compute.validate_console_auth_token(token)
        return info.host, int(info.port)

    def open_console(self, url: str) -> websocket.WebSocket:
        ws = websocket.create_connection(url, subprotocols=['binary'],
                                         timeout=console_fixtures.TIMEOUT)
        self.addCleanup(ws.close)
        return ws

    @staticmethod
    def read_until(ws: websocket.WebSocket, marker: bytes) -> bytes:
        def recv():
            opcode, data = ws.recv_data()
            return None if opcode == websocket.ABNF.OPCODE_CLOSE else data
        return console_fixtures.read_until(recv, marker)

    def round_trip(self, ws: websocket.WebSocket) -> None:
        """A command typed on the console runs in the server's shell,
        which answers and prompts again."""
        ws.send_binary(b'echo $((6*7))\r')
        seen = self.read_until(ws, b'42\r\n')
        if PROMPT not in seen.split(b'42\r\n', 1)[1]:
            self.read_until(ws, PROMPT)

    @staticmethod
    def listening(host: str, port: int) -> bool:
        with socket.socket() as sock:
            sock.settimeout(5)
            return sock.connect_ex((host, port)) == 0

    def test_websocket_shell_round_trip_reconnects_and_delete(self):
        net, _ = self.make_network('net')
        server = self.boot('console', [net])
        url = self.console_url(server)
        self.assertTrue(url.startswith('ws://'), url)
        host, port = self.listener(url)
        # A fresh client first sees the prompt of the shell it reaches.
        first = self.open_console(url)
        first.send_binary(b'\r')
        self.read_until(first, PROMPT)
        self.round_trip(first)
        first.close()
        # Reconnecting (a new URL each time, as a browser would) finds the
        # same shell, which outlived the previous client.
        for _ in range(2):
            again = self.open_console(self.console_url(server))
            self.round_trip(again)
            again.close()
        self.assertEqual((host, port), self.listener(
            self.console_url(server)))
        self.assertTrue(self.listening(host, port))
        self.delete_server(server)
        self.assertTrue(base.poll(lambda: not self.listening(host, port),
                                  30, 0.5),
                        'the console listener %s:%d outlived the server'
                        % (host, port))
