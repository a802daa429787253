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
"""The compute nodes of ``tools/aio up --nodes N`` (issue 14): node K
(ndtools.node: namespace aio-nodeK, its own userspace OVS and dockerd)
plus, in it, an OVN chassis and a nova-compute.

Per node, besides ndtools.node's daemons (all files under
AIO_DIR/nodes/nodeK, PID files in its run/, output in its logs/):

* ``relay`` (ndtools.relay): the node's 127.0.0.1 on the control plane's
  ports (Keystone 5000, RabbitMQ 5672, Placement 8778, Glance 9292,
  Neutron 9696) relayed to the host's 127.0.0.1. The services keep
  listening on the host's loopback only and the catalog keeps its URLs;
  nova-compute needs no endpoint overrides. (Binding every service on
  10.250.0.1 as well would change the single-node cloud and still leave
  the catalog's 127.0.0.1 URLs unreachable from a node.) nova-compute
  never opens the databases (the conductor does): MariaDB is not
  relayed.
* ``ovn-controller`` (``ip netns exec``, like the node's OVS; OVS_RUNDIR
  the node's, so it finds br-int.mgmt of the node's ovs-vswitchd): chassis
  ``aio-nodeK`` (the node's OVS system-id and hostname), Geneve from
  10.250.0.K, br-int with the netdev datapath, southbound DB through the
  host's unix socket /var/run/ovn/ovnsb_db.sock (the filesystem is shared;
  the SB DB needs no new listener).
* ``nova-compute`` (``nsenter --net``, like dockerd: the node's network,
  the host's mounts, so /sys/fs/cgroup and LXCFS's /var/lib/lxcfs are
  there; ``ip netns exec`` would remount /sys and hide the cgroups). Its
  privsep helpers are its children: the same namespace. Its
  configuration (``nova-compute.conf`` in the node's etc/) is the host's
  nova.conf without the database connections (nova_conf_text says why)
  and with: host = aio-nodeK, my_ip and the serial console's
  proxyclient_address = 10.250.0.K (nova-serialproxy on the host reaches
  it over aio-underlay), state, instances and lock paths of its own,
  [docker]api_url the node's dockerd, both OVSDB connections the node's
  ovsdb-server, every privsep helper_command with that file. LXCFS stays
  on: the node's dockerd sees the host's mounts, /var/lib/lxcfs
  included.

A node's engine has a disk quota per container as the host's has (its
data root is a btrfs loop file with quotas, ndtools.node). What a node
cannot have: an OVN metadata agent (only the host runs one, so a node's
instances get no 169.254.169.254: the agent's ovnmeta-NET namespaces are
named per network, not per chassis, so a second agent on this machine
would share them with the host's), and it is never a gateway chassis
(floating IPs and router gateways are on the host).

The host's chassis tunnels too once there are nodes: its ovn-encap-ip
becomes 10.250.0.1, which is on aio-underlay, an OVS netdev bridge of
the host's OVS (userspace tunnelling sends from the bridge that holds the
address). A single-node cloud keeps 127.0.0.1 and has no aio-underlay.
Standard library only.
"""

import os
import re
import signal
import socket
import time
import typing

from ndtools import aio_state
from ndtools import host
from ndtools import node
from ndtools import relay

MAX_NODES = 3             # node 1, the host, included (a 2-core machine)
RELAY_PORTS = (5000, 5672, 8778, 9292, 9696)
OVN_SB_SOCKET = '/var/run/ovn/ovnsb_db.sock'
NODE_MARK = 'node:'       # RUN/started: node:K for each node up made
HOST_ENCAP_MARK = 'host-encap-underlay'
# Started after ndtools.node's daemons, stopped before them.
COMPUTE_DAEMONS = ('relay', 'ovn-controller', 'nova-compute')
# What ``tools/aio node-kill K`` kills (a failed node for evacuate);
# ``node-restart K`` (up_compute) starts them again.
CRASHED_DAEMONS = ('nova-compute', 'dockerd')


def numbers(count: int) -> typing.List[int]:
    """The extra nodes of a cloud of ``count`` nodes: 2..count."""
    if not 1 <= count <= MAX_NODES:
        raise ValueError('--nodes is 1 to %d' % MAX_NODES)
    return list(range(node.MIN_NUMBER, count + 1))


def marked_numbers(state: aio_state.State) -> typing.List[int]:
    """The nodes an ``up`` made (RUN/started), in order."""
    found = set()
    for mark in state.marks():
        if mark.startswith(NODE_MARK) and mark[len(NODE_MARK):].isdigit():
            found.add(int(mark[len(NODE_MARK):]))
    return sorted(found)


def existing_numbers(aio_dir: str) -> typing.List[int]:
    """The nodes with a directory under AIO_DIR/nodes (clean's list)."""
    try:
        names = os.listdir(os.path.join(aio_dir, 'nodes'))
    except FileNotFoundError:
        return []
    found = [int(name[4:]) for name in names
             if re.match(r'node\d+\Z', name)]
    return sorted(n for n in found
                  if node.MIN_NUMBER <= n <= node.MAX_NUMBER)


def privsep_sections(conf_text: str) -> typing.List[str]:
    """The sections of a nova.conf that set a privsep helper_command."""
    found, section = [], None
    for line in conf_text.splitlines():
        header = re.match(r'\s*\[([^\]]+)\]', line)
        if header:
            section = header.group(1)
        elif (section and re.match(r'\s*helper_command\s*=', line)
              and section not in found):
            found.append(section)
    return found


def set_host_encap(address: str) -> None:
    """The host chassis's tunnel endpoint (ovn-controller follows)."""
    aio_state.sh('ovs-vsctl', '--timeout=30', 'set', 'open_vswitch', '.',
                 'external_ids:ovn-encap-ip=%s' % address)


def process_tree_usage(pid: int) -> typing.Tuple[int, float]:
    """(RSS in KiB, CPU seconds so far) of ``pid`` and its descendants
    (nova-compute's privsep helpers)."""
    table = node.processes()
    tick = os.sysconf('SC_CLK_TCK')
    rss, cpu = 0, 0.0
    for one in node.with_descendants([pid], table):
        try:
            with open('/proc/%d/status' % one) as f:
                for line in f:
                    if line.startswith('VmRSS:'):
                        rss += int(line.split()[1])
            with open('/proc/%d/stat' % one) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return rss, cpu


class ComputeNode(node.Node):
    """Node K as a compute node of the all-in-one."""

    def __init__(self, number: int, settings: aio_state.Settings, top: str,
                 underlay: typing.Optional[node.Underlay] = None):
        super().__init__(number, os.path.join(settings.aio_dir, 'nodes'),
                         underlay)
        self.aio = settings        # the host's (AIO_DIR): venv, nova.conf
        self.top = top

    # -- paths ---------------------------------------------------------------

    @property
    def host_nova_conf(self) -> str:
        return os.path.join(self.aio.etc, 'nova/nova.conf')

    @property
    def nova_conf(self) -> str:
        """The node's nova.conf, made from the host's."""
        return os.path.join(self.s.etc, 'nova-compute.conf')

    @property
    def ovn_run(self) -> str:
        return os.path.join(self.s.run, 'ovn')

    def ovn_appctl_argv(self, *args: str,
                        timeout: int = 10) -> typing.List[str]:
        """ovn-appctl to the node's ovn-controller: its control socket is
        OVN_RUNDIR/ovn-controller.PID.ctl (OVN 23.03 has no --unixctl),
        found through its pidfile there."""
        return ['env', 'OVN_RUNDIR=' + self.ovn_run, 'ovn-appctl',
                '--timeout=%d' % timeout, '-t', 'ovn-controller'
                ] + list(args)

    def config_args(self) -> typing.List[str]:
        return ['--config-file', self.nova_conf]

    # -- commands ------------------------------------------------------------

    def relay_argv(self) -> typing.List[str]:
        argv = [self.aio.python, os.path.join(self.top, 'tools/ndtools',
                                              'relay.py'),
                '--netns', self.netns_path]
        for port in RELAY_PORTS:
            argv += ['--port', str(port)]
        return argv

    def ovn_controller_argv(self) -> typing.List[str]:
        return self.in_netns(
            *self.ovs_env(), 'OVN_RUNDIR=' + self.ovn_run, 'ovn-controller',
            'unix:' + self.ovs_socket,
            '--pidfile=' + os.path.join(self.ovn_run, 'ovn-controller.pid'),
            '--log-file=' + os.path.join(self.s.logs, 'ovn-controller.log'),
            '-vconsole:off')

    def nova_compute_argv(self) -> typing.List[str]:
        return self.in_net_only(
            'env', 'DOCKER_HOST=' + self.docker_host,
            self.aio.exe('nova-compute'), *self.config_args())

    def ovn_external_ids(self) -> typing.List[str]:
        return ['external_ids:ovn-remote=unix:' + OVN_SB_SOCKET,
                'external_ids:ovn-encap-type=geneve',
                'external_ids:ovn-encap-ip=' + self.address,
                'external_ids:ovn-bridge=br-int',
                'external_ids:ovn-bridge-datapath-type=netdev']

    def nova_conf_text(self, host_conf_text: str) -> str:
        """The host's nova.conf without the options the node sets (below)
        and without the database connections: with [api_database]
        connection set, nova-compute asks every cell's database directly
        at start (nova.utils.raise_if_old_compute), which a compute node
        of a real cloud has no access to, nor a node here (MariaDB is not
        relayed); without, it asks the conductor."""
        overrides = self.nova_conf_overrides(host_conf_text)
        drop = {(section, key) for section, key, _ in overrides}
        drop |= {('database', 'connection'), ('api_database', 'connection')}
        kept, section = [], None
        for line in host_conf_text.splitlines():
            header = re.match(r'\s*\[([^\]]+)\]', line)
            if header:
                section = header.group(1)
            option = re.match(r'\s*([A-Za-z0-9_.-]+)\s*=', line)
            if option and (section, option.group(1)) in drop:
                continue
            kept.append(line)
        text = '\n'.join(kept) + '\n'
        text += '# aio-node: the node\'s own\n'
        for section, key, value in overrides:
            text += '[%s]\n%s = %s\n' % (section, key, value)
        return text

    def nova_conf_overrides(self, host_conf_text: str
                            ) -> typing.List[typing.Tuple[str, str, str]]:
        """(section, option, value) the node sets."""
        ovsdb = 'unix:' + self.ovs_socket
        helper = ' '.join([self.aio.exe('privsep-helper')]
                          + self.config_args())
        data = self.s.data
        found = [('DEFAULT', 'host', self.name),
                 ('DEFAULT', 'my_ip', self.address),
                 ('DEFAULT', 'state_path', data + '/nova'),
                 ('DEFAULT', 'instances_path', data + '/nova/instances'),
                 ('DEFAULT', 'log_file', self.s.logs + '/nova-compute.log'),
                 ('oslo_concurrency', 'lock_path', data + '/lock'),
                 ('serial_console', 'proxyclient_address', self.address),
                 ('docker', 'api_url', self.docker_host),
                 ('docker', 'ovsdb_connection', ovsdb),
                 ('os_vif_ovs', 'ovsdb_connection', ovsdb)]
        for section in privsep_sections(host_conf_text):
            found.append((section, 'helper_command', helper))
        return found

    # -- status --------------------------------------------------------------

    def status(self) -> typing.Dict[str, bool]:
        found = super().status()
        found['relay'] = host.pid_alive(self.state.pid('relay'))
        found['ovn-controller'] = node.quiet(
            *self.ovn_appctl_argv('version'))
        found['nova-compute'] = host.pid_alive(self.state.pid('nova-compute'))
        return found

    def daemon_pids(self) -> typing.Dict[str, typing.Optional[int]]:
        return {name: self.state.pid(name)
                for name in node.DAEMONS + COMPUTE_DAEMONS}

    def usage_lines(self) -> typing.List[str]:
        """Each daemon: running or not, its RSS (with its children) and
        CPU time so far."""
        lines = []
        total = 0
        for name, pid in self.daemon_pids().items():
            if not host.pid_alive(pid):
                lines.append('    %-15s NOT RUNNING' % name)
                continue
            rss, cpu = process_tree_usage(pid)
            total += rss
            lines.append('    %-15s running (pid %d)  RSS %6.1f MiB  CPU '
                         '%7.1f s' % (name, pid, rss / 1024.0, cpu))
        lines.append('    %-15s RSS %6.1f MiB' % ('total', total / 1024.0))
        return lines

    # -- up ------------------------------------------------------------------

    def up_compute(self, wait_compute: typing.Callable[[str, int, int],
                                                       bool]) -> None:
        """The node (ndtools.node), then its relay, OVN chassis and
        nova-compute; ``wait_compute(host, since, pid)`` waits for the
        service to report up. Each part only if missing."""
        self.up()
        for path in (self.s.etc, self.ovn_run,
                     os.path.join(self.s.data, 'nova/instances'),
                     os.path.join(self.s.data, 'lock')):
            os.makedirs(path, exist_ok=True)
        self.start_relay()
        self.start_ovn_controller()
        self.start_nova_compute(wait_compute)
        print('%s: ovn-controller (chassis %s, geneve %s), nova-compute '
              '(host %s, %s)' % (self.name, self.name, self.address,
                                 self.name, self.nova_conf), flush=True)

    def start_relay(self) -> None:
        if host.pid_alive(self.state.pid('relay')):
            return
        self.state.start_svc('relay', *self.relay_argv())
        self.state.wait_ready('relay', self.relay_answers, 60)

    def relay_answers(self) -> bool:
        """Every relayed port accepts connections in the node."""
        try:
            with relay.inside(self.netns_path):
                for port in RELAY_PORTS:
                    socket.create_connection((relay.ADDRESS, port),
                                             timeout=2).close()
        except OSError:
            return False
        return True

    def start_ovn_controller(self) -> None:
        self.vsctl('set', 'open_vswitch', '.', *self.ovn_external_ids())
        if not node.quiet(*self.ovn_appctl_argv('version')):
            self.state.start_svc('ovn-controller',
                                 *self.ovn_controller_argv())
            self.state.wait_ready('ovn-controller', lambda: node.quiet(
                *self.ovn_appctl_argv('version')), 60)
        self.wait('br-int (made by ovn-controller)', host.succeeds(
            *self.vsctl_argv('br-exists', 'br-int')), 60)
        self.wait('chassis %s in the southbound DB' % self.name,
                  host.succeeds('ovn-sbctl', '--timeout=10',
                                '--db=unix:' + OVN_SB_SOCKET, 'get',
                                'chassis', self.name, 'name'), 60)

    def start_nova_compute(self, wait_compute: typing.Callable[
            [str, int, int], bool]) -> None:
        if host.pid_alive(self.state.pid('nova-compute')):
            return
        with open(self.host_nova_conf) as f:
            host_text = f.read()
        with open(self.nova_conf, 'w') as f:
            f.write(self.nova_conf_text(host_text))
        since = int(time.time())
        pid = self.state.start_svc('nova-compute', *self.nova_compute_argv())
        if not wait_compute(self.name, since, pid):
            raise aio_state.StepFailed(
                '%s: nova-compute did not come up; the end of %s:\n%s\n'
                '(its log: %s/nova-compute.log)' % (
                    self.name, self.state.output_path('nova-compute'),
                    self.state.output_tail('nova-compute', 15),
                    self.s.logs))

    # -- failure (evacuate) --------------------------------------------------

    def crash(self) -> typing.List[str]:
        """KILL the node's nova-compute (with its privsep helpers) and
        dockerd, as a node failing would: no clean stop, containerd and
        the containers (live-restore) keep running, Nova only notices the
        service stops reporting. Returns the daemons it killed."""
        killed = []
        for name in CRASHED_DAEMONS:
            pid = self.state.pid(name)
            if pid is None or not host.pid_alive(pid):
                continue
            aio_state.signal_group_or_pid(pid, signal.SIGKILL)
            if not host.wait_for(lambda: not (host.pid_alive(pid) or
                                              aio_state.group_alive(pid)),
                                 20):
                raise aio_state.StepFailed('%s: %s (pid %d) survived '
                                           'SIGKILL' % (self.name, name, pid))
            killed.append(name)
        return killed

    # -- down ----------------------------------------------------------------

    def down(self) -> None:
        """nova-compute, then the chassis (``exit`` removes it from the
        southbound DB), the relay, then ndtools.node's down."""
        self.state.stop_pid('nova-compute')
        if node.quiet(*self.ovn_appctl_argv('exit', timeout=30)):
            print('%s: ovn-controller exited (chassis removed)' % self.name,
                  flush=True)
            host.wait_for(lambda: not host.pid_alive(
                self.state.pid('ovn-controller')), 20)
        self.state.stop_pid('ovn-controller')
        self.state.stop_pid('relay')
        super().down()
