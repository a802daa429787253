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

"""Logging in to a server over SSH, as a tenant would: the busybox-ssh
image (dropbear), the keypair Nova made, the floating IP, from the host.

What the guest sees of its keypair, config drive and user data is read
over that SSH session, not through ``docker exec``. The image has no
cloud-init, so a user-data script is delivered, not run.
"""

import base64
import io
import json
import socket

import paramiko

from tests.scenario import base

SSH_IMAGE = 'busybox-ssh'
SSH_TIMEOUT = 120
USER_DATA = b'#!/bin/sh\necho user-data ran > /tmp/user-data.out\n'


class SshScenarioTest(base.ScenarioTestCase):

    def setUp(self):
        super().setUp()
        self.ssh_image = self.conn.image.find_image(SSH_IMAGE,
                                                    ignore_missing=False)

    def make_keypair(self, what='key'):
        """A keypair Nova generates: its private key comes back once."""
        keypair = self.conn.compute.create_keypair(name=self.name(what))
        self.addCleanup(self.conn.compute.delete_keypair, keypair,
                        ignore_missing=True)
        return keypair

    def boot_with_key(self, keypair, **extra):
        """The SSH image on a routed network with ``keypair``; returns
        (server, its fixed IP, its floating IP)."""
        router = self.make_router()
        net, _ = self.make_network('net', router=router)
        sg, _ = self.make_security_group()
        server = self.boot('ssh', [net], sg, image=self.ssh_image,
                           key_name=keypair.name, **extra)
        return (server, self.fixed_ip(server, net),
                self.add_floating_ip(server))

    def connect(self, address: str, private_key: str,
                timeout: float = 10) -> paramiko.SSHClient:
        self.assertOnAioBridge(address)
        client = paramiko.SSHClient()
        # A new server has a new host key: nothing to check it against.
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect(address, username='root',
                       pkey=paramiko.RSAKey.from_private_key(
                           io.StringIO(private_key)),
                       timeout=timeout, banner_timeout=timeout,
                       auth_timeout=timeout, allow_agent=False,
                       look_for_keys=False)
        self.addCleanup(client.close)
        return client

    def login(self, address: str, private_key: str) -> paramiko.SSHClient:
        """The first session that opens: the port answers once the
        floating IP's flows are in and dropbear is up."""
        def attempt():
            try:
                return self.connect(address, private_key)
            except (OSError, socket.timeout, paramiko.SSHException):
                return None
        client = base.poll(attempt, SSH_TIMEOUT, 1)
        if client is None:
            self.connect(address, private_key)   # fail with its error
        return client

    def run_ssh(self, client: paramiko.SSHClient, command: str) -> str:
        """stdout of ``command``; the test fails on a non-zero exit."""
        _, stdout, stderr = client.exec_command(command, timeout=30)
        out = stdout.read().decode()
        code = stdout.channel.recv_exit_status()
        self.assertEqual(0, code, '%r exited %d: %s' % (
            command, code, stderr.read().decode()))
        return out

    def test_key_login_over_floating_ip(self):
        keypair = self.make_keypair()
        _, fixed, fip = self.boot_with_key(keypair)
        client = self.login(fip, keypair.private_key)
        self.assertEqual('0', self.run_ssh(client, 'id -u').strip())
        authorized = self.run_ssh(client, 'cat /root/.ssh/authorized_keys')
        self.assertIn(keypair.public_key.strip(), authorized.splitlines())
        # The session runs in the server itself: its fixed address.
        self.assertIn(fixed, self.run_ssh(client, 'ip -4 addr'))

    def test_other_key_refused(self):
        keypair = self.make_keypair()
        other = self.make_keypair('other')
        _, _, fip = self.boot_with_key(keypair)
        self.login(fip, keypair.private_key)   # the server is up...
        # ...and turns the key Nova did not inject away.
        self.assertRaises(paramiko.AuthenticationException, self.connect,
                          fip, other.private_key)

    def test_config_drive_and_user_data_read_over_ssh(self):
        keypair = self.make_keypair()
        metadata = {'scenario': self.prefix}
        server, _, fip = self.boot_with_key(
            keypair, config_drive=True, metadata=metadata,
            user_data=base64.b64encode(USER_DATA).decode())
        client = self.login(fip, keypair.private_key)
        meta = json.loads(self.run_ssh(
            client, 'cat /config-drive/openstack/latest/meta_data.json'))
        self.assertEqual(server.id, meta['uuid'])
        self.assertEqual(metadata, meta['meta'])
        self.assertEqual([keypair.public_key.strip()],
                         [k.strip() for k in meta['public_keys'].values()])
        self.assertEqual(USER_DATA.decode(), self.run_ssh(
            client, 'cat /config-drive/openstack/latest/user_data'))
        # Read-only: the guest cannot change what Nova gave it.
        _, stdout, _ = client.exec_command(
            'touch /config-drive/x', timeout=30)
        self.assertNotEqual(0, stdout.channel.recv_exit_status())
