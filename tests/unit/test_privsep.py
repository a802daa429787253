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

"""The privsep context's wiring: its path, its entrypoints, and the
rootwrap filters nova-compute starts its helper through. (Its
capabilities are checked on a real daemon by
tests.functional.test_network_privsep.)"""

import os

import fixtures
from oslo_config import cfg
from oslo_privsep import priv_context
from oslo_rootwrap import filters as rw_filters
from oslo_rootwrap import wrapper as rw_wrapper
import testtools
from vif_plug_ovs import privsep as os_vif_privsep

from novadocker.virt.docker import linux_net
from novadocker.virt.docker import privsep

FILTERS_DIR = os.path.join(os.path.dirname(__file__), '..', '..', 'etc',
                           'rootwrap.d')


class PrivsepWiringTest(testtools.TestCase):

    def test_context_path_is_what_the_filters_name(self):
        # (Its capabilities are checked on a real daemon by
        # tests.functional.test_network_privsep.)
        self.assertEqual('novadocker.virt.docker.privsep.vif_plug',
                         privsep.vif_plug.pypath)

    def test_entrypoints_belong_to_the_context(self):
        for name in ('privileged_find_peer', 'privileged_plug_veth',
                     'privileged_set_carrier'):
            self.assertTrue(privsep.vif_plug.is_entrypoint(
                getattr(linux_net, name)), name)
        # The public functions check first, then cross; deleting is
        # os-vif's own privileged helper: this context has no delete.
        for name in ('find_peer', 'plug_veth', 'delete_link', 'set_carrier'):
            self.assertFalse(privsep.vif_plug.is_entrypoint(
                getattr(linux_net, name)), name)
        entrypoints = [name for name in dir(linux_net)
                       if privsep.vif_plug.is_entrypoint(
                           getattr(linux_net, name))]
        self.assertEqual(['privileged_find_peer', 'privileged_plug_veth',
                          'privileged_set_carrier'], entrypoints)

    def test_rootwrap_filters_allow_both_helpers(self):
        """The helper commands nova-compute runs under rootwrap (one or two
        config files) match docker.filters, and nothing else does."""
        # Recent oslo.rootwrap adds a catch-all privsep-helper filter of its
        # own; judge only the lines of docker.filters.
        filters = [f for f in rw_wrapper.load_filters(
            [os.path.abspath(FILTERS_DIR)]) if f.name != 'privsep-helper']
        self.assertEqual(4, len(filters))
        self.assertTrue(all(isinstance(f, rw_filters.RegExpFilter)
                            for f in filters))
        self.useFixture(fixtures.MockPatchObject(
            priv_context, '_HELPER_COMMAND_PREFIX', []))
        # The socket path as oslo.privsep's client makes it (mkdtemp).
        tmpdir = self.useFixture(fixtures.TempDir(rootdir='/tmp')).path
        sock = os.path.join(tmpdir, 'privsep.sock')
        for files in (['/etc/nova/nova.conf'], ['/etc/nova/nova-cpu.conf'],
                      ['/etc/nova/nova.conf', '/etc/nova/nova-compute.conf']):
            # What nova-compute's command line sets (unparsed here).
            self.useFixture(fixtures.MockPatchObject(
                cfg.CONF, 'config_file', files, create=True))
            self.useFixture(fixtures.MockPatchObject(
                cfg.CONF, 'config_dir', None, create=True))
            for context in (privsep.vif_plug, os_vif_privsep.vif_plug,
                            privsep.identity):
                command = context.helper_command(sock)
                self.assertEqual('privsep-helper', command[0])
                self.assertTrue(any(f.match(command) for f in filters),
                                command)
        other = ['privsep-helper', '--config-file', '/etc/nova/nova.conf',
                 '--privsep_context', 'nova.privsep.sys_admin_pctxt',
                 '--privsep_sock_path', '/tmp/x/privsep.sock']
        self.assertFalse(any(f.match(other) for f in filters))

    def docker_filters(self):
        # Recent oslo.rootwrap adds a catch-all privsep-helper filter of its
        # own; judge only the lines of docker.filters.
        return [f for f in rw_wrapper.load_filters(
            [os.path.abspath(FILTERS_DIR)]) if f.name != 'privsep-helper']

    def test_rootwrap_filters_refuse_other_paths(self):
        """Config files only as /etc/nova/<name>.conf, the socket only as
        oslo.privsep makes it: no traversal, no other directory."""
        filters = self.docker_filters()

        def command(configs, sock='/tmp/tmpab12cd_3/privsep.sock',
                    context='novadocker.virt.docker.privsep.vif_plug'):
            argv = ['privsep-helper']
            for config in configs:
                argv += ['--config-file', config]
            return argv + ['--privsep_context', context,
                           '--privsep_sock_path', sock]

        good = command(['/etc/nova/nova.conf'])
        self.assertTrue(any(f.match(good) for f in filters))
        for config in ('/etc/nova/../../tmp/x.conf', '/etc/nova/../shadow',
                       '/etc/nova/../nova.conf', '/etc/nova/./nova.conf',
                       '/etc/nova/nova.conf/../../../tmp/x.conf',
                       '/etc/nova/../../tmp/nova.conf',
                       '/etc/../tmp/evil.conf', '/etc/nova//nova.conf',
                       '/etc/nova/sub/x.conf', '/etc/nova/.x.conf',
                       '/etc/nova/..conf', '/etc/nova/x..conf',
                       '/etc/nova/nova.conf\n', '/etc/nova/nova.conf\x00',
                       '/etc/nova/nova.conf.bak', '/etc/nova/nova',
                       '/etc/novax/nova.conf', '/etc/shadow', '/tmp/x.conf',
                       'nova.conf', 'etc/nova/nova.conf',
                       '/proc/self/fd/0', ''):
            for argv in (command([config]),
                         command(['/etc/nova/nova.conf', config]),
                         command([config, '/etc/nova/nova.conf']),
                         command([config], context='vif_plug_ovs.privsep.'
                                 'vif_plug')):
                self.assertFalse(any(f.match(argv) for f in filters), argv)
        for sock in ('/tmp/x/privsep.sock', '/tmp/../etc/privsep.sock',
                     '/tmp/tmpab12cd_3/../../etc/privsep.sock',
                     '/tmp/tmpab12cd_3/../privsep.sock',
                     '/tmp/tmpab12cd_3/x/privsep.sock',
                     '/tmp/tmpab12cd_3/privsep.sock\n',
                     '/tmp/tmpab12cd_3/other.sock', '/tmp/privsep.sock',
                     '/tmp/tmpAB12CD_3/privsep.sock',
                     '/run/tmpab12cd_3/privsep.sock', 'privsep.sock'):
            self.assertFalse(any(f.match(command(['/etc/nova/nova.conf'],
                                                 sock=sock))
                                 for f in filters), sock)
        # Arguments added or in another order: no line has them.
        for argv in (good + ['--config-dir', '/etc/nova/nova.conf.d'],
                     good[:3] + ['--config-dir', '/tmp'] + good[3:],
                     good[:1] + good[3:] + good[1:3],
                     ['sh'] + good[1:]):
            self.assertFalse(any(f.match(argv) for f in filters), argv)

    def test_rootwrap_own_catch_all_is_documented(self):
        """oslo.rootwrap appends a filter admitting any privsep-helper
        command line: docker.filters narrows nothing while it is there,
        which README says. This fails when oslo.rootwrap drops it."""
        catch_all = [f for f in rw_wrapper.load_filters(
            [os.path.abspath(FILTERS_DIR)]) if f.name == 'privsep-helper']
        self.assertEqual(1, len(catch_all))
        self.assertTrue(catch_all[0].match(
            ['privsep-helper', '--config-file', '/etc/nova/../../tmp/x',
             '--privsep_context', 'x', '--privsep_sock_path', '/x']))
