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

"""Keys, user data and the config drive through Nova's REST API: what
``openstack server create --key-name --user-data --config-drive`` gives
the container, and that nothing is left on the host after delete."""

from tests.integration import base  # isort:skip  (imports nova first)

import base64
import json
import os

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives import serialization
from nova.tests.functional.api import client as api_client

from novadocker import conf
from tests.functional import test_keys

CONF = conf.CONF


def _public_key() -> str:
    """A real key: Nova computes its fingerprint."""
    return ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH,
        serialization.PublicFormat.OpenSSH).decode() + ' user@example'


KEY = _public_key()
USER_DATA = b'#!/bin/sh\necho from-user-data\n'


class ConfigDriveTest(base.IntegrationTestCase):

    def run_in(self, server, *cmd) -> int:
        """Exit code of a command in the workload."""
        return self.exec_result(server, *cmd, check=False).exit_code

    def keypair(self) -> str:
        name = 'k-%s' % self.compute_host
        self.api.post_keypair({'keypair': {'name': name,
                                           'public_key': KEY}})
        self.addCleanup(self.api.delete_keypair, name)
        return name

    def host_dir(self, server) -> str:
        return os.path.join(CONF.instances_path, server['id'])

    def test_config_drive_user_data_and_key(self):
        key_name = self.keypair()
        server = self.boot(
            config_drive=True, key_name=key_name,
            user_data=base64.b64encode(USER_DATA).decode())
        meta = json.loads(self.exec_in(
            server, 'cat', '/config-drive/openstack/latest/meta_data.json'))
        self.assertEqual(server['id'], meta['uuid'])
        self.assertEqual({key_name: KEY}, meta['public_keys'])
        self.assertEqual(USER_DATA.decode(), self.exec_in(
            server, 'cat', '/config-drive/openstack/latest/user_data'))
        for path in ('openstack/latest/network_data.json',
                     'openstack/latest/vendor_data2.json',
                     'ec2/latest/meta-data.json'):
            self.assertEqual(0, self.run_in(
                server, 'test', '-f', '/config-drive/' + path), path)
        # Read-only, even for the container's root.
        self.assertNotEqual(0, self.run_in(server, 'touch',
                                           '/config-drive/x'))
        self.assertEqual(KEY + '\n', self.exec_in(
            server, 'cat', '/root/.ssh/authorized_keys'))
        self.assertTrue(os.path.isdir(self.host_dir(server)))
        self.api.delete_server(server['id'])
        self._wait_until_deleted(server)
        self.assertFalse(os.path.exists(self.host_dir(server)))

    def test_no_config_drive_unless_asked(self):
        server = self.boot()
        self.assertNotEqual(0, self.run_in(server, 'test', '-e',
                                           '/config-drive'))
        self.assertFalse(os.path.exists(self.host_dir(server)))

    def test_force_config_drive(self):
        self.flags(force_config_drive=True)
        server = self.boot()
        self.assertIn('"uuid": "%s"' % server['id'], self.exec_in(
            server, 'cat', '/config-drive/openstack/latest/meta_data.json'))

    def test_injected_files(self):
        # personality: API microversions up to 2.56.
        self.addCleanup(setattr, self.api, 'microversion',
                        self.api.microversion)
        self.api.microversion = '2.56'
        server = self.boot(
            config_drive=True,
            personality=[{'path': '/etc/motd', 'contents':
                          base64.b64encode(b'hello motd\n').decode()}])
        # In the container and on the config drive.
        self.assertEqual('hello motd\n', self.exec_in(server, 'cat',
                                                      '/etc/motd'))
        meta = json.loads(self.exec_in(
            server, 'cat', '/config-drive/openstack/latest/meta_data.json'))
        [entry] = meta['files']
        self.assertEqual('/etc/motd', entry['path'])
        self.assertEqual('hello motd\n', self.exec_in(
            server, 'cat', '/config-drive/openstack' + entry['content_path']))


class AdminPasswordTest(base.IntegrationTestCase):
    """changePassword through the API: the image's chpasswd, or 409."""

    def test_change_password(self):
        image = test_keys.image_with(
            ('usr/sbin/chpasswd', 'program',
             test_keys.AdminPasswordTest.CHPASSWD))
        server = self.boot(self.upload_image(image))
        self.api.post_server_action(
            server['id'], {'changePassword': {'adminPass': 'N3w-pass'}})
        self.wait_for_task_done(server)
        self.assertEqual('root:N3w-pass\n', self.exec_in(
            server, 'cat', '/tmp/chpasswd-input'))

    def test_no_chpasswd_is_a_clear_409(self):
        server = self.boot()
        exc = self.assertRaises(
            api_client.OpenStackApiException, self.api.post_server_action,
            server['id'], {'changePassword': {'adminPass': 'N3w-pass'}})
        self.assertEqual(409, exc.response.status_code)
        self.assertIn('not supported', exc.response.text)
        self.assertEqual('ACTIVE', self.wait_for_task_done(server)['status'])
