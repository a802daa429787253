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

"""The pool sandbox's identity: what the privileged side accepts, and the
resolv.conf it writes (the privileged calls themselves run on the real
engine: tests.functional.test_pool)."""

import testtools

from novadocker.virt.docker import identity


class IdentityTest(testtools.TestCase):

    def test_arguments_are_checked(self):
        for bad in ('', '-x', 'a b', 'x' * 64, None, 'a/b'):
            self.assertRaises(identity.InvalidArgument,
                              identity.check_hostname, bad)
        self.assertEqual('web-1.example', identity.check_hostname(
            'web-1.example'))
        cid = 'a' * 64
        for bad in ('/var/lib/docker/containers/%s/..' % cid,
                    'var/lib/docker/containers/%s' % cid,
                    '/var/lib/docker/containers/../containers/%s' % cid,
                    '/etc', '/var/lib/docker/containers/%s' % cid[:12]):
            self.assertRaises(identity.InvalidArgument,
                              identity.check_container_dir, bad)
        identity.check_container_dir('/var/lib/docker/containers/%s' % cid)
        for bad in ('10.0.0.1', ['x'], [1], ['10.0.0.1'] * 17, None):
            self.assertRaises(identity.InvalidArgument,
                              identity.check_nameservers, bad)
        self.assertEqual(['fd00::1'], identity.check_nameservers(
            ['fd00:0::1']))
        self.assertEqual(['10.0.0.1'], identity.check_nameservers(
            ('10.0.0.1',)))

    def test_resolv_conf_keeps_search_and_options(self):
        current = ('# Generated\nsearch example.org\nnameserver 1.1.1.1\n'
                   'nameserver 8.8.8.8\noptions ndots:2\n')
        self.assertEqual(
            '# Generated\nsearch example.org\nnameserver 10.0.0.2\n'
            'nameserver 10.0.0.3\noptions ndots:2\n',
            identity.resolv_conf(current, ['10.0.0.2', '10.0.0.3']))
        self.assertEqual(current, identity.resolv_conf(current, []))
        self.assertEqual('options x\nnameserver 10.0.0.2\n',
                         identity.resolv_conf('options x\n', ['10.0.0.2']))
