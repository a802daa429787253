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

"""The instance's public key in root's authorized_keys on the real engine,
without anything in the image; odd images never get a write outside."""

import io
import os
import tarfile
import uuid

import fixtures
from nova import exception

from tests.fixtures import docker as docker_fixtures
from tests.fixtures import images as image_fixtures
from tests.functional import base

KEY = ('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtestkeytestkeytestkeytestkey'
       'testkeytest user@example')
IMAGE_KEY = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABimagekey image@build'


def image_with(*members) -> bytes:
    """The busybox rootfs plus members (name, 'file'/'program'/'symlink',
    content or link target)."""
    api = docker_fixtures.docker_api()
    repo = 'nova-docker-test/keys-%s' % uuid.uuid4().hex[:12]
    buf = io.BytesIO(image_fixtures.busybox_rootfs())
    # Append to the rootfs tar: rewrite it with the extra members.
    out = io.BytesIO()
    with tarfile.open(fileobj=buf) as src, \
            tarfile.open(fileobj=out, mode='w') as dst:
        replaced = {name for name, _kind, _value in members}
        for member in src.getmembers():
            if member.name in replaced:
                continue
            dst.addfile(member, src.extractfile(member)
                        if member.isfile() else None)
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            if kind == 'symlink':
                info.type, info.linkname = tarfile.SYMTYPE, value
                dst.addfile(info)
            else:
                info.size = len(value)
                info.mode = 0o755 if kind == 'program' else 0o644
                dst.addfile(info, io.BytesIO(value))
    api.import_image_from_data(out.getvalue(), repository=repo, tag='1',
                               changes=['CMD ["/bin/sleep", "2147483647"]'])
    try:
        return b''.join(api.get_image(repo + ':1'))
    finally:
        api.remove_image(repo + ':1', force=True)


class _KeyedTestCase(base.DriverTestCase):
    """Spawns an instance with a key pair; reads modes and owners."""

    def spawn_keyed(self, image: bytes = None, key_data=KEY,
                    system_metadata=None):
        meta = self.add_image(image)
        instance = self.make_instance(meta, key_data=key_data)
        if system_metadata is not None:
            instance.system_metadata = system_metadata
        self.driver.spawn(self.context, instance, meta, [], None, {},
                          network_info=[])
        self.addCleanup(self.driver.destroy, self.context, instance, [])
        return instance

    def stat(self, instance, path) -> str:
        return self.exec_in(instance, '/bin/busybox', 'stat', '-c',
                            '%a %u %g %F', path).strip()


class KeyInjectionTest(_KeyedTestCase):

    def read(self, instance, path) -> str:
        return self.exec_in(instance, 'cat', path)

    def test_key_in_root_authorized_keys_with_modes(self):
        instance = self.spawn_keyed()
        self.assertEqual(KEY + '\n', self.read(
            instance, '/root/.ssh/authorized_keys'))
        self.assertEqual('700 0 0 directory',
                         self.stat(instance, '/root/.ssh'))
        self.assertEqual('600 0 0 regular file',
                         self.stat(instance, '/root/.ssh/authorized_keys'))

    def test_image_keys_are_kept(self):
        instance = self.spawn_keyed(image_with(
            ('root/.ssh/authorized_keys', 'file', IMAGE_KEY.encode() + b'\n')))
        self.assertEqual(IMAGE_KEY + '\n' + KEY + '\n', self.read(
            instance, '/root/.ssh/authorized_keys'))

    def test_no_key_nothing_written(self):
        instance = self.spawn_keyed(key_data=None)
        self.assertEqual('no', self.exec_in(
            instance, 'sh', '-c', 'test -e /root/.ssh && echo yes || echo no'
        ).strip())

    def test_symlinked_ssh_dir_never_writes_outside(self):
        # An image pointing /root/.ssh at a host-looking absolute path.
        target = '/tmp/nova-docker-keys-%s' % uuid.uuid4().hex
        instance = self.spawn_keyed(image_with(('root/.ssh', 'symlink',
                                                target)))
        self.assertFalse(os.path.lexists(target))
        # Documented result: the link is replaced by root's own directory.
        self.assertEqual('700 0 0 directory',
                         self.stat(instance, '/root/.ssh'))
        self.assertEqual(KEY + '\n', self.read(
            instance, '/root/.ssh/authorized_keys'))
        self.assertEqual('no', self.exec_in(
            instance, 'sh', '-c', 'test -e %s && echo yes || echo no'
            % target).strip())

    def test_symlinked_authorized_keys_replaced_not_followed(self):
        target = '/tmp/nova-docker-keys-%s' % uuid.uuid4().hex
        instance = self.spawn_keyed(image_with(
            ('root/.ssh/authorized_keys', 'symlink', target)))
        self.assertFalse(os.path.lexists(target))
        self.assertEqual('600 0 0 regular file',
                         self.stat(instance, '/root/.ssh/authorized_keys'))
        self.assertEqual(KEY + '\n', self.read(
            instance, '/root/.ssh/authorized_keys'))


class FileInjectionTest(base.DriverTestCase):
    """Nova's injected files (personality), inside the container only."""

    def test_files_at_their_paths(self):
        linked = '/tmp/nova-docker-files-%s' % uuid.uuid4().hex
        meta = self.add_image(image_with(('etc/link', 'symlink', linked)))
        target = '/tmp/nova-docker-files-%s' % uuid.uuid4().hex
        instance = self.make_instance(meta)
        files = [('/etc/motd', b'hello\n'), ('new/dir/file', b'x'),
                 ('/../../%s' % target.lstrip('/'), b'escaped?'),
                 ('/etc/link', b'not followed')]
        self.driver.spawn(self.context, instance, meta, files, None, {},
                          network_info=[])
        self.addCleanup(self.driver.destroy, self.context, instance, [])
        self.assertEqual('hello\n', self.exec_in(instance, 'cat',
                                                 '/etc/motd'))
        self.assertEqual('x', self.exec_in(instance, 'cat',
                                           '/new/dir/file'))
        # ".." cannot climb above the container's root.
        self.assertEqual('escaped?', self.exec_in(instance, 'cat', target))
        self.assertFalse(os.path.lexists(target))
        # A symlink at the path is replaced, not followed.
        self.assertFalse(os.path.lexists(linked))
        self.assertEqual('not followed', self.exec_in(instance, 'cat',
                                                      '/etc/link'))
        self.assertEqual('644 0 0 regular file', self.exec_in(
            instance, '/bin/busybox', 'stat', '-c', '%a %u %g %F',
            '/etc/motd').strip())


class AdminPasswordTest(base.DriverTestCase):
    """set_admin_password by the image's own chpasswd. Debian's static
    busybox has no chpasswd applet: a stand-in records its stdin."""

    CHPASSWD = (b'#!/bin/sh\n'
                b'cat > /tmp/chpasswd-input\n'
                b'grep -q "^root:fail" /tmp/chpasswd-input && exit 1\n'
                b'exit 0\n')

    def spawn_image(self, image: bytes):
        meta = self.add_image(image)
        instance = self.make_instance(meta)
        self.driver.spawn(self.context, instance, meta, [], None, {},
                          network_info=[])
        self.addCleanup(self.driver.destroy, self.context, instance, [])
        return instance

    def chpasswd_image(self):
        return image_with(('usr/sbin/chpasswd', 'program', self.CHPASSWD))

    def test_password_on_chpasswd_stdin_never_in_a_command_line(self):
        instance = self.spawn_image(self.chpasswd_image())
        password = 'S3cret:with colon'
        self.driver.set_admin_password(instance, password)
        self.assertEqual('root:%s\n' % password, self.exec_in(
            instance, 'cat', '/tmp/chpasswd-input'))
        container = self.driver._guests.get(instance).workload_id
        self.assertNotIn(password, str(self.api.inspect_container(
            container)))

    def test_chpasswd_failure_is_a_fault_without_the_password(self):
        instance = self.spawn_image(self.chpasswd_image())
        exc = self.assertRaises(exception.InstancePasswordSetFailed,
                                self.driver.set_admin_password, instance,
                                'fail-me')
        self.assertIn('chpasswd exited 1', str(exc))
        self.assertNotIn('fail-me', str(exc))

    def test_no_chpasswd_is_not_supported(self):
        instance = self.spawn_image(image_fixtures.default_image_tarball())
        self.assertRaises(exception.SetAdminPasswdNotSupported,
                          self.driver.set_admin_password, instance, 'pw')

    def test_line_break_refused_before_running_anything(self):
        instance = self.spawn_image(self.chpasswd_image())
        self.assertRaises(exception.InstancePasswordSetFailed,
                          self.driver.set_admin_password, instance,
                          'pw\nother:pw')
        self.assertEqual('absent', self.exec_in(
            instance, 'sh', '-c',
            'test -e /tmp/chpasswd-input && echo present || echo absent'
        ).strip())


class ImageUserKeyTest(_KeyedTestCase):
    """The image's default user (os_admin_user) gets the key too."""

    PASSWD = (b'root:x:0:0:root:/root:/bin/sh\n'
              b'debian:x:1000:1000:Debian:/home/debian:/bin/sh\n')

    def spawn_with_user(self, user, image):
        return self.spawn_keyed(
            image, system_metadata={'image_os_admin_user': user})

    def test_default_user_and_root(self):
        instance = self.spawn_with_user('debian', image_with(
            ('etc/passwd', 'file', self.PASSWD)))
        for home, owner in (('/root', '0 0'), ('/home/debian',
                                               '1000 1000')):
            self.assertEqual(KEY + '\n', self.exec_in(
                instance, 'cat', home + '/.ssh/authorized_keys'))
            self.assertEqual('700 %s directory' % owner,
                             self.stat(instance, home + '/.ssh'))
            self.assertEqual('600 %s regular file' % owner, self.stat(
                instance, home + '/.ssh/authorized_keys'))

    def test_unknown_user_root_only(self):
        logs = self.useFixture(fixtures.FakeLogger())
        instance = self.spawn_with_user('nobody-here', image_with(
            ('etc/passwd', 'file', self.PASSWD)))
        self.assertEqual(KEY + '\n', self.exec_in(
            instance, 'cat', '/root/.ssh/authorized_keys'))
        self.assertIn('nobody-here (os_admin_user) is not in the image',
                      logs.output)
