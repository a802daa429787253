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

"""The config drive directory: nova's metadata written as files (the
builder itself stubbed: it needs nova's database), modes, replacement, the
read-only bind, removal; real files in a temporary instances_path."""

import json
import os
import stat

import fixtures
from nova.api.metadata import base as instance_metadata
from oslo_config import fixture as config_fixture
from oslo_utils import timeutils
import testtools

import nova.conf  # noqa: F401  (registers nova's options)
from novadocker import conf
from novadocker.virt.docker import configdrive
from tests.fixtures import objects as obj_fixtures

CONF = conf.CONF

# What nova's InstanceMetadata.metadata_for_config_drive yields: relative
# paths, str or bytes content.
NOVA_CONTENT = [
    ('ec2/latest/meta-data.json', json.dumps({'instance-id': 'i-1'})),
    ('openstack/latest/meta_data.json', json.dumps({'uuid': 'u'})),
    ('openstack/latest/user_data', b'#!/bin/sh\necho \xff\n'),
    ('openstack/latest/vendor_data2.json', '{}'),
    ('openstack/content/0000', b'hello motd\n'),
]


class ConfigDriveTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.instances_path = self.useFixture(fixtures.TempDir()).path
        self.conf = self.useFixture(config_fixture.Config(CONF))
        self.conf.config(instances_path=self.instances_path,
                         force_config_drive=False)
        self.builder = self.useFixture(fixtures.MockPatchObject(
            instance_metadata, 'InstanceMetadata', autospec=True)).mock
        self.content = list(NOVA_CONTENT)
        self.builder.return_value.metadata_for_config_drive.side_effect = (
            lambda: iter(self.content))
        self.instance = obj_fixtures.instance(config_drive='True',
                                              launched_at=None)

    def build(self, instance=None, files=(), password=None,
              network_info=()):
        return configdrive.build(instance or self.instance, list(files),
                                 password, list(network_info))

    def tree(self, top: str) -> dict:
        """relative path -> bytes of every file under top."""
        found = {}
        for root, _dirs, files in os.walk(top):
            for name in files:
                path = os.path.join(root, name)
                with open(path, 'rb') as handle:
                    found[os.path.relpath(path, top)] = handle.read()
        return found

    # -- when -------------------------------------------------------------

    def test_asked_for_by_the_instance(self):
        self.assertTrue(configdrive.wanted(self.instance))

    def test_not_asked_for_means_no_directory(self):
        instance = obj_fixtures.instance(config_drive='',
                                         launched_at=None)
        self.assertFalse(configdrive.wanted(instance))
        self.assertIsNone(self.build(instance))
        self.assertEqual([], os.listdir(self.instances_path))
        self.builder.assert_not_called()

    def test_forced_only_for_a_new_instance(self):
        self.conf.config(force_config_drive=True)
        self.assertTrue(configdrive.wanted(obj_fixtures.instance(
            config_drive='', launched_at=None)))
        self.assertFalse(configdrive.wanted(obj_fixtures.instance(
            config_drive='', launched_at=timeutils.utcnow())))

    def test_partial_instance_object_never_gets_one(self):
        instance = obj_fixtures.instance(config_drive='True')
        self.assertFalse(instance.obj_attr_is_set('launched_at'))
        self.assertFalse(configdrive.wanted(instance))

    # -- what -------------------------------------------------------------

    def test_nova_content_as_files(self):
        path = self.build(files=[('/etc/motd', b'hello motd\n')],
                          password='s3cret', network_info=['vif'])
        self.assertEqual(os.path.join(self.instances_path,
                                      self.instance.uuid, 'config-drive'),
                         path)
        self.assertEqual({name: data if isinstance(data, bytes)
                          else data.encode()
                          for name, data in NOVA_CONTENT}, self.tree(path))
        self.builder.assert_called_once_with(
            self.instance, content=[('/etc/motd', b'hello motd\n')],
            extra_md={'admin_pass': 's3cret'}, network_info=['vif'])

    def test_no_password_no_extra_metadata(self):
        self.build()
        self.assertEqual({}, self.builder.call_args.kwargs['extra_md'])

    def test_modes_and_owner(self):
        path = self.build()
        umask = os.umask(0)
        os.umask(umask)
        for root, dirs, files in os.walk(path):
            info = os.stat(root)
            self.assertEqual(0o755 & ~umask, stat.S_IMODE(info.st_mode),
                             root)
            for name in files:
                info = os.stat(os.path.join(root, name))
                # World-readable whatever the umask: the workload's user
                # need not be root.
                self.assertEqual(0o644, stat.S_IMODE(info.st_mode), name)
                # nova-compute's own files, not the image's users'.
                self.assertEqual((os.geteuid(), os.getegid()),
                                 (info.st_uid, info.st_gid))

    def test_rebuild_replaces_everything(self):
        path = self.build()
        with open(os.path.join(path, 'stale'), 'w') as handle:
            handle.write('from an earlier build')
        os.makedirs(path + '.new/leftover')   # an interrupted build
        self.content = [('openstack/latest/meta_data.json', '{"v": 2}')]
        self.assertEqual(path, self.build())
        self.assertEqual({'openstack/latest/meta_data.json': b'{"v": 2}'},
                         self.tree(path))
        self.assertEqual(['config-drive'], os.listdir(
            os.path.dirname(path)))

    def test_paths_outside_the_directory_are_never_written(self):
        outside = os.path.join(self.instances_path, 'escaped')
        self.content = [('../escaped', 'x'), (outside, 'x'),
                        ('openstack/../../escaped', 'x'),
                        ('openstack/latest/meta_data.json', '{}')]
        path = self.build()
        self.assertFalse(os.path.exists(outside))
        self.assertEqual({'openstack/latest/meta_data.json': b'{}'},
                         self.tree(path))
        self.assertEqual([self.instance.uuid],
                         os.listdir(self.instances_path))

    # -- the bind and removal ---------------------------------------------

    def test_bind_only_once_built(self):
        self.assertEqual([], configdrive.bind(self.instance))
        path = self.build()
        self.assertEqual(['%s:/config-drive:ro' % path],
                         configdrive.bind(self.instance))

    def test_remove_takes_the_instance_directory_when_empty(self):
        path = self.build()
        os.makedirs(path + '.new')
        configdrive.remove(self.instance)
        self.assertEqual([], os.listdir(self.instances_path))
        configdrive.remove(self.instance)   # idempotent
        self.assertEqual([], configdrive.bind(self.instance))

    def test_remove_keeps_other_instance_files(self):
        path = self.build()
        other = os.path.join(os.path.dirname(path), 'console.log')
        with open(other, 'w') as handle:
            handle.write('not ours')
        configdrive.remove(self.instance)
        self.assertFalse(os.path.exists(path))
        self.assertEqual(['console.log'],
                         os.listdir(os.path.dirname(path)))
