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

"""Case 5 of the fault matrix: ovs-vswitchd restarted (cleanly, and
SIGKILLed so that its monitor restarts it) with instances running.

Runs alone (test_serial_*): it restarts the host's Open vSwitch daemon.
ovsdb-server keeps running, so the port records stay; the question is
whether the data path comes back for the instances' veths (native and
hybrid ports on a userspace-datapath bridge) without the driver doing
anything, and whether plug_vifs (what nova-compute's start-up calls) leaves
working ports alone.

``OVS_RUNDIR`` selects the Open vSwitch to restart (default
/var/run/openvswitch: its db.sock and ovs-vswitchd.pid), so the test can
be tried against a private Open vSwitch in a network namespace of its own,
leaving the host's alone (the containers come from the shared engine)::

    D=/run/ndovs; mkdir -p $D; ip netns add ndovs
    ovsdb-tool create $D/conf.db /usr/share/openvswitch/vswitch.ovsschema
    ip netns exec ndovs ovsdb-server $D/conf.db --remote=punix:$D/db.sock \
        --pidfile=$D/ovsdb-server.pid --unixctl=$D/ovsdb-server.ctl \
        --log-file=$D/ovsdb-server.log --detach
    ovs-vsctl --db=unix:$D/db.sock --no-wait init
    ip netns exec ndovs env OVS_RUNDIR=$D ovs-vswitchd unix:$D/db.sock \
        --pidfile=$D/ovs-vswitchd.pid --log-file=$D/ovs-vswitchd.log \
        --detach --monitor
    ip netns exec ndovs env OVS_RUNDIR=$D CI=true \
        OS_NOVA_DISABLE_EVENTLET_PATCHING=1 .venv/bin/stestr run \
        test_serial_faults
    # then stop both daemons, ip netns del ndovs, rm -rf $D
"""

import os
import signal
import subprocess
import time

from tests.fixtures import network as net_fixtures
from tests.functional import test_faults


def rundir() -> str:
    return os.environ.get('OVS_RUNDIR') or '/var/run/openvswitch'


def vswitchd_pid() -> int:
    try:
        with open(os.path.join(rundir(), 'ovs-vswitchd.pid')) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return 0


def vswitchd_answers() -> bool:
    return subprocess.run(
        ['ovs-appctl', '--timeout=2', '-t',
         os.path.join(rundir(), 'ovs-vswitchd.%d.ctl' % vswitchd_pid()),
         'version'], capture_output=True).returncode == 0


class VswitchdRestartTest(test_faults.FaultTestCase):

    def private_dockerd(self):
        # The shared engine: only Open vSwitch is restarted here (and a
        # dockerd cannot start inside `ip netns exec`, which hides the
        # cgroup mounts).
        return None

    def setUp(self):
        super().setUp()
        self.conf.config(ovsdb_connection='unix:%s/db.sock' % rundir(),
                         group='docker')
        pid = vswitchd_pid()
        self.assertTrue(pid and vswitchd_answers(), 'ovs-vswitchd is down')
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            self.vswitchd_argv = [
                a.decode() for a in handle.read().split(b'\0') if a]
        # Whatever happens to the test, ovs-vswitchd runs at the end.
        self.addCleanup(self.ensure_vswitchd)

    def ensure_vswitchd(self) -> None:
        if vswitchd_pid() and vswitchd_answers():
            return
        subprocess.run(self.vswitchd_argv, check=True, capture_output=True,
                       timeout=120)
        self.wait_for(vswitchd_answers, 'ovs-vswitchd back')

    def restart_clean(self) -> None:
        """ovs-appctl exit (its monitor lets it go), then the same
        command line again, as an operator or a package upgrade does."""
        old = vswitchd_pid()
        subprocess.run(['ovs-appctl', '-t', os.path.join(
            rundir(), 'ovs-vswitchd.%d.ctl' % old), 'exit'], check=True,
            capture_output=True, timeout=60)
        self.wait_for(lambda: not os.path.exists('/proc/%d' % old),
                      'ovs-vswitchd exited')
        subprocess.run(self.vswitchd_argv, check=True, capture_output=True,
                       timeout=120)

    def crash(self) -> None:
        """SIGKILL, then start it again, as systemd's Restart= does (the
        --monitor parent restarts it only after a crash signal such as
        SIGSEGV, and gives up after a SIGKILL)."""
        old = vswitchd_pid()
        with open('/proc/%d/stat' % old) as handle:
            monitor = int(handle.read().rsplit(')', 1)[1].split()[1])
        os.kill(old, signal.SIGKILL)
        self.wait_for(lambda: not os.path.exists('/proc/%d' % old),
                      'ovs-vswitchd killed')
        with open('/proc/%d/cmdline' % monitor, 'rb') as handle:
            if b'monitoring' in handle.read():
                self.wait_for(
                    lambda: not os.path.exists('/proc/%d' % monitor),
                    'its monitor gone')
        subprocess.run(self.vswitchd_argv, check=True, capture_output=True,
                       timeout=120)

    def pings(self, instance, vif) -> bool:
        try:
            self.exec_in(instance, 'ping', '-c', '1', '-W', '1',
                         self.ip_of(vif))
            return True
        except AssertionError:
            return False

    def ifindexes(self, *vifs) -> dict:
        found = {}
        for vif in vifs:
            for name in net_fixtures.device_names(vif['id']):
                if net_fixtures.link_exists(name):
                    with open('/sys/class/net/%s/ifindex' % name) as handle:
                        found[name] = handle.read().strip()
        return found

    def test_vswitchd_restart_and_crash(self):
        port = self.ports.network(0)
        vif_a, vif_b = port(), port(hybrid=True)
        self.useFixture(net_fixtures.HybridFirewall(vif_b['devname']))
        a = self.spawn_on([vif_a])
        b = self.spawn_on([vif_b])
        pairs = [(a, vif_a, vif_b), (b, vif_b, vif_a)]
        self.assertConnected(pairs)
        pids = self.pids(a, b)
        devices = self.ifindexes(vif_a, vif_b)
        ovs_ports = sorted(net_fixtures.bridge_ports(self.bridge))

        for how, action in (('restart (appctl exit + start)',
                             self.restart_clean),
                            ('crash (SIGKILL, then started)',
                             self.crash)):
            started = time.monotonic()
            action()
            self.wait_for(vswitchd_answers, 'ovs-vswitchd answers')
            back = time.monotonic() - started
            # Nothing but Open vSwitch itself: the data path returns.
            self.wait_for(lambda: self.pings(a, vif_b) and
                          self.pings(b, vif_a), 'pings after %s' % how)
            recovered = time.monotonic() - started
            self.assertConnected(pairs)
            self.assertEqual(ovs_ports,
                             sorted(net_fixtures.bridge_ports(self.bridge)))
            self.assertEqual(devices, self.ifindexes(vif_a, vif_b))
            self.assertEqual(pids, self.pids(a, b))
            # nova-compute's start-up re-plugs: working ports stay as
            # they are.
            self.driver.plug_vifs(a, [vif_a])
            self.driver.plug_vifs(b, [vif_b])
            self.assertEqual(devices, self.ifindexes(vif_a, vif_b))
            self.assertConnected(pairs)
            self.figure('5 ovs-vswitchd %s' % how,
                        nova='nothing (instances ACTIVE)',
                        instances='2/2 RUNNING, same PIDs',
                        network='same devices and OVS ports, pings back',
                        vswitchd_back=back, pings_back=recovered)

        self.destroy_all((a, [vif_a]), (b, [vif_b]))
        self.assertEqual(test_faults.NO_LEAKS, self.leak_count())
