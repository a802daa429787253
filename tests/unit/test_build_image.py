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

"""``python -m novadocker.cmd.build_image``, the builder's command line."""

import os
import subprocess
import sys

import fixtures
import testtools

from novadocker.cmd import build_image
from novadocker import rootfs
from tests.fixtures import images as image_fixtures

members_of = image_fixtures.tar_members


class BuildImageTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.busybox = os.path.join(self.dir, 'busybox')
        with open(self.busybox, 'wb') as f:
            f.write(b'\x7fELF not really busybox')

    def test_command_line_writes_the_same_tarball(self):
        out = os.path.join(self.dir, 'rootfs.tar')
        extra = os.path.join(self.dir, 'motd')
        with open(extra, 'wb') as f:
            f.write(b'hello\n')
        self.assertEqual(0, build_image.main(
            ['--busybox', self.busybox, '--dir', 'www',
             '--file', 'etc/motd=' + extra, '-o', out]))
        with open(out, 'rb') as f:
            members = members_of(f.read())
        self.assertTrue(members['www'].isdir())
        self.assertEqual(6, members['etc/motd'].size)
        self.assertIn('bin/sh', members)

    def test_command_line_to_stdout_as_module(self):
        result = subprocess.run(
            [sys.executable, '-m', 'novadocker.cmd.build_image', '--sandbox',
             '--busybox', self.busybox], capture_output=True, check=True)
        sandbox = rootfs.sandbox_rootfs(self.busybox)
        self.assertEqual(members_of(sandbox).keys(),
                         members_of(result.stdout).keys())

    def test_command_line_refuses_bad_file_argument(self):
        with testtools.ExpectedException(SystemExit):
            build_image.main(['--busybox', self.busybox, '--file', 'nosource'])

    def test_ssh_image_from_the_command_line(self):
        out = os.path.join(self.dir, 'ssh.tar')
        self.assertEqual(0, build_image.main(
            ['--busybox', self.busybox, '--ssh', '--sshd',
             os.path.realpath(sys.executable), '-o', out]))
        with open(out, 'rb') as f:
            members = members_of(f.read())
        self.assertIn('usr/sbin/dropbear', members)
        self.assertIn('usr/bin/sudo', members)

    def test_ssh_refuses_other_layout_options(self):
        with testtools.ExpectedException(SystemExit):
            build_image.main(['--busybox', self.busybox, '--ssh',
                              '--sandbox'])
