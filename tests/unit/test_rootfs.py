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
import tarfile
import tempfile

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
