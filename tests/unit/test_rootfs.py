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

"""The one root-filesystem builder."""

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from unittest import mock

import testtools

from novadocker import rootfs
from tests.fixtures import images as image_fixtures

members_of = image_fixtures.tar_members


class BusyboxRootfsTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        handle, self.busybox = tempfile.mkstemp()
        os.write(handle, b'\x7fELF not really busybox')
        os.close(handle)
        self.addCleanup(os.unlink, self.busybox)

    def test_directories_first_and_reachable(self):
        built = rootfs.busybox_rootfs(self.busybox)
        members = list(members_of(built).values())
        dirs = [m for m in members if m.isdir()]
        self.assertEqual(list(rootfs.DIRECTORIES), [m.name for m in dirs])
        self.assertEqual(members[:len(dirs)], dirs)
        self.assertEqual(0o1777, {m.name: m for m in dirs}['tmp'].mode)
        self.assertEqual({0o755}, {m.mode for m in dirs if m.name != 'tmp'})

    def test_binary_owned_by_root_and_executable(self):
        binary = members_of(rootfs.busybox_rootfs(self.busybox))['bin/busybox']
        self.assertEqual((0, 0, 0o755), (binary.uid, binary.gid, binary.mode))
        self.assertEqual(os.path.getsize(self.busybox), binary.size)

    def test_applets_are_links_to_busybox(self):
        members = members_of(rootfs.busybox_rootfs(
            self.busybox, applets=('sh', 'ip')))
        links = {n: m.linkname for n, m in members.items() if m.issym()}
        self.assertEqual({'bin/sh': 'busybox', 'bin/ip': 'busybox'}, links)

    def test_sandbox_has_no_applets(self):
        members = members_of(rootfs.sandbox_rootfs(self.busybox))
        self.assertFalse([m for m in members.values() if m.issym()])
        self.assertIn('bin/busybox', members)

    def test_extra_file_replaces_base_file_once(self):
        data = rootfs.busybox_rootfs(
            self.busybox, extra_files={'etc/passwd': b'me:x:1:1::/:/bin/sh\n'})
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names = tar.getnames()
            self.assertEqual(1, names.count('etc/passwd'))
            self.assertEqual(b'me:x:1:1::/:/bin/sh\n',
                             tar.extractfile('etc/passwd').read())

    def test_parents_of_extra_files_are_explicit_directories(self):
        members = list(members_of(rootfs.busybox_rootfs(
            self.busybox, extra_files={'lib/x/libz.so': b'z'})).values())
        names = [m.name for m in members]
        self.assertLess(names.index('lib'), names.index('lib/x'))
        self.assertLess(names.index('lib/x'), names.index('lib/x/libz.so'))
        self.assertEqual({0o755}, {m.mode for m in members
                                   if m.name in ('lib', 'lib/x')})


class SshRootfsTest(testtools.TestCase):
    """The SSH image: this very Python stands in for the SSH server (a
    dynamically linked binary whose libraries ldd can list)."""

    def setUp(self):
        super().setUp()
        self.sshd = os.path.realpath(sys.executable)
        # tar stands in for curl: a dynamically linked tool every host
        # has, outside busybox's /bin.
        self.tool = shutil.which('tar')
        self.members = members_of(rootfs.ssh_rootfs(
            self.sshd_busybox(), self.sshd, tools=(self.tool,)))

    def sshd_busybox(self):
        handle, path = tempfile.mkstemp()
        os.write(handle, b'\x7fELF not really busybox')
        os.close(handle)
        self.addCleanup(os.unlink, path)
        return path

    def test_server_and_every_library_at_their_paths(self):
        self.assertEqual(os.path.getsize(self.sshd),
                         self.members['usr/sbin/dropbear'].size)
        libraries = rootfs.shared_libraries(self.sshd)
        self.assertTrue(libraries)
        for library in libraries:
            member = self.members[library.lstrip('/')]
            self.assertTrue(member.isfile(), library)
            self.assertEqual(os.path.getsize(library), member.size)

    def test_tools_and_their_libraries_at_their_paths(self):
        self.assertEqual(os.path.getsize(self.tool),
                         self.members[self.tool.lstrip('/')].size)
        for library in rootfs.shared_libraries(self.tool):
            self.assertEqual(os.path.getsize(library),
                             self.members[library.lstrip('/')].size)

    def test_root_login_needs_host_key_dir_shells_and_sudo(self):
        self.assertTrue(self.members['etc/dropbear'].isdir())
        self.assertTrue(self.members['mnt'].isdir())
        self.assertIn('etc/shells', self.members)
        self.assertEqual(0o755, self.members['usr/bin/sudo'].mode)
        self.assertIn('bin/sh', self.members)

    def test_missing_library_is_an_error(self):
        listing = 'libgone.so.1 => not found\n'
        with mock.patch.object(rootfs.subprocess, 'run', autospec=True,
                               return_value=subprocess.CompletedProcess(
                                   [], 0, stdout=listing)):
            self.assertRaises(RuntimeError, rootfs.shared_libraries, '/x')
