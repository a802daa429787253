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

"""Plugging through real privsep daemons, as nova-compute runs them.

The other networking tests run the privileged functions in-process (as
nova's test fixtures require); this one starts real ``privsep-helper``
daemons, which drop every capability but those their context lists, and
proves those are enough: CAP_NET_ADMIN + CAP_SYS_ADMIN for nova-docker's
netlink/setns work, CAP_NET_ADMIN for os-vif's.
"""

import os
import sys

import novadocker
from novadocker.virt.docker import privsep as nd_privsep
from tests.functional import test_network
from tests import net_fixtures as nf
from vif_plug_ovs import privsep as os_vif_privsep

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


def helper_path() -> str:
    return os.path.join(os.path.dirname(sys.executable), 'privsep-helper')


def daemon_pid(context) -> int:
    """PID of the privsep daemon this test started for a context (it
    daemonizes, so it is found by its command line)."""
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as cmdline:
                args = cmdline.read().split(b'\0')
        except OSError:
            continue
        if helper_path().encode() in args and \
                context.pypath.encode() in args:
            found.append(int(pid))
    if len(found) != 1:
        raise AssertionError('privsep daemons of %s: %s'
                             % (context.pypath, found))
    return found[0]


def effective_caps(pid: int) -> int:
    with open('/proc/%d/status' % pid) as status:
        for line in status:
            if line.startswith('CapEff:'):
                return int(line.split()[1], 16)
    raise AssertionError('no CapEff for %d' % pid)


class RealPrivsepDaemonTest(test_network.NetworkTestCase):

    def setUp(self):
        super().setUp()
        helper = helper_path()
        repo = os.path.dirname(os.path.dirname(novadocker.__file__))
        for context in nf.PrivsepInProcess.CONTEXTS:
            # Root already: no sudo/rootwrap in front, and the daemon
            # imports this tree's code.
            self.conf.config(group=context.cfg_section,
                             helper_command='env PYTHONPATH=%s %s'
                             % (repo, helper))
            context.set_client_mode(True)
            self.addCleanup(context.stop)

    def test_plug_attach_destroy_with_minimal_capabilities(self):
        port = self.ports.network(0)
        vif_a, vif_b, vif_c = port(), port(), port()
        a = self.spawn_on([vif_a])
        b = self.spawn_on([vif_b])
        self.assertPings(a, self.ip_of(vif_b))
        self.driver.attach_interface(self.context, b, None, vif_c)
        self.assertPings(a, self.ip_of(vif_c))

        ours = daemon_pid(nd_privsep.vif_plug)
        os_vifs = daemon_pid(os_vif_privsep.vif_plug)
        self.assertNotEqual(os.getpid(), ours)
        self.assertEqual((1 << CAP_NET_ADMIN) | (1 << CAP_SYS_ADMIN),
                         effective_caps(ours))
        # os-vif's holds NET_ADMIN (plus, in this release, DAC_OVERRIDE:
        # its test context shares the config section) and not SYS_ADMIN.
        self.assertTrue(effective_caps(os_vifs) & (1 << CAP_NET_ADMIN))
        self.assertFalse(effective_caps(os_vifs) & (1 << CAP_SYS_ADMIN))

        self.driver.detach_interface(self.context, b, vif_c)
        self.driver.destroy(self.context, a, [vif_a])
        self.driver.destroy(self.context, b, [vif_b])
        self.assertEqual([], self.net_leaks.leftovers())
        self.assertEqual([], nf.bridge_ports(self.bridge))
