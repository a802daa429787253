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

"""linux_net helpers and the privsep/rootwrap wiring of its context."""

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


class FakeLink:
    def __init__(self, name):
        self.name = name

    def get_attr(self, attr):
        assert attr == 'IFLA_IFNAME'
        return self.name


class FakeIPRoute:
    def __init__(self, *names):
        self.names = names

    def get_links(self):
        return [FakeLink(n) for n in self.names]


class HelperTest(testtools.TestCase):

    def test_free_ifname(self):
        inside = FakeIPRoute('lo', 'eth0', 'eth2')
        self.assertEqual('eth1', linux_net._free_ifname(inside, 'eth1'))
        self.assertEqual('eth1', linux_net._free_ifname(inside, None))
        self.assertEqual('eth1', linux_net._free_ifname(inside, 'eth0'))
        self.assertEqual('eth3', linux_net._free_ifname(
            FakeIPRoute('lo', 'eth0', 'eth1', 'eth2'), None))

    def test_host_mac_differs_from_the_guest_mac(self):
        self.assertEqual('fe:16:3e:01:02:03',
                         linux_net.host_mac('fa:16:3e:01:02:03'))

    def test_missing_namespace(self):
        self.assertRaises(linux_net.NetnsGone, linux_net._open_netns,
                          '/proc/0/ns/net')


class PrivsepWiringTest(testtools.TestCase):

    def test_context_path_is_what_the_filters_name(self):
        # (Its capabilities are checked on a real daemon by
        # tests.functional.test_network_privsep.)
        self.assertEqual('novadocker.virt.docker.privsep.vif_plug',
                         privsep.vif_plug.pypath)

    def test_entrypoints_belong_to_the_context(self):
        for name in ('find_peer', 'plug_veth', 'delete_link'):
            self.assertTrue(privsep.vif_plug.is_entrypoint(
                getattr(linux_net, name)), name)

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
        for files in (['/etc/nova/nova.conf'],
                      ['/etc/nova/nova.conf', '/etc/nova/nova-compute.conf']):
            # What nova-compute's command line sets (unparsed here).
            self.useFixture(fixtures.MockPatchObject(
                cfg.CONF, 'config_file', files, create=True))
            self.useFixture(fixtures.MockPatchObject(
                cfg.CONF, 'config_dir', None, create=True))
            for context in (privsep.vif_plug, os_vif_privsep.vif_plug):
                command = context.helper_command('/tmp/tmpabc/privsep.sock')
                self.assertEqual('privsep-helper', command[0])
                self.assertTrue(any(f.match(command) for f in filters),
                                command)
        other = ['privsep-helper', '--config-file', '/etc/nova/nova.conf',
                 '--privsep_context', 'nova.privsep.sys_admin_pctxt',
                 '--privsep_sock_path', '/tmp/x/privsep.sock']
        self.assertFalse(any(f.match(other) for f in filters))
