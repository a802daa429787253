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
"""Extra compute nodes of a multi-node all-in-one (issue 14): the
groundwork, without OVN and nova-compute yet.

Node 1 is the host. Node K (K >= 2) is a network namespace ``aio-nodeK``
with a userspace Open vSwitch and a Docker engine of its own::

    host                                   netns aio-nodeK
    OVS bridge aio-underlay (netdev)       OVS bridge br-phy (netdev)
      10.250.0.1/24 on its local port        10.250.0.K/24 on its local port
      port aio-nodeK-u  <--- veth pair --->  port ul0

Why the underlay is an OVS bridge and not a Linux bridge: the host's own
Open vSwitch has the userspace datapath (datapath_type=netdev), and a
userspace datapath sends tunnel packets (Geneve) only out of an OVS bridge
that holds the local tunnel address (OVS's "userspace tunneling" docs:
the IP goes on a netdev bridge, br-phy, with the physical port in it;
``ovs-appctl tnl/route/show`` lists the routes OVS copied from the kernel,
``tnl/neigh/show`` the neighbours it learnt by ARP on that bridge). On a
Linux bridge the host's address would be no use to the host's OVS as a
chassis later; on aio-underlay it is. The nodes' underlay frames are
switched by the host's ovs-vswitchd (NORMAL on aio-underlay); nothing is
routed or NATed: aio-underlay forwards nothing (forwarding=0) and the
nodes have no default route. 10.250.0.0/24 is used nowhere else here.

Inside the namespace (each daemon with its own files, sockets and
logs under the node's directory, laid out like AIO_DIR: data/, run/,
logs/):

* ovsdb-server and ovs-vswitchd (``ip netns exec``, OVS_RUNDIR set, no
  --mlockall), system-id and hostname ``aio-nodeK``; bridges are netdev
  (br-phy holds ul0 and the underlay address).
* containerd and dockerd (own data root, exec root, socket; no bridge, no
  iptables rules, live-restore). They enter only the network namespace
  (``nsenter --net``): ``ip netns exec`` would also give them a mount
  namespace with a fresh /sys, which hides the cgroup mounts dockerd
  needs, and their mounts (overlay, container namespaces) would be out of
  reach of ``down``.

``down`` removes the containers, stops every daemon (process groups),
kills whatever is left in the namespace or runs from the node's files
(shims and their containers too), unmounts what is left under the node's
directory, deletes the veth pair, the port on aio-underlay (the bridge
when it has no ports left) and the namespace. It is idempotent and works
after a partial ``up``. ``clean`` then removes the node's directory.

What was verified (tests/tools/test_aio_node.py; Debian 12, OVS 3.1.0,
Docker 20.10, kernel 6.x), userspace tunnelling in namespaces:

* Two nodes' userspace OVS, each in its own namespace, carry a Geneve
  tunnel between their underlay addresses (br-test with a geneve port
  and a veth into a container of the node's own dockerd): ping between
  the containers works, gnv0 counts the packets, the datapath flows show
  ``tnl_push(... dst=10.250.0.3 ... out_port(br-phy))`` on the sender and
  ``tnl_pop`` on the receiver's br-phy.
* OVS copies the namespace's kernel routes into its own table: in OVS
  3.1 that is ``ovs-appctl ovs/route/show`` (``10.250.0.0/24 dev br-phy
  SRC 10.250.0.K``); there is no ``tnl/route/show``. The host's OVS
  likewise has ``10.250.0.0/24 dev aio-underlay``.
* OVS resolves the peer by ARP out of br-phy itself; ``tnl/neigh/show``
  then lists the peer's address with br-phy's MAC. The packet that
  triggers the ARP is dropped: the first ping may be lost.
* The kernel also sees every frame of an OVS port of a userspace
  datapath (ul0, aio-nodeK-u): without arp_ignore=8 on those it answered
  ARP for the bridge's address a second time, with the port's MAC. The
  Geneve frames themselves go to br-phy's MAC and never reach the
  node's kernel stack (no UDP NoPorts).
* Geneve's UDP checksum is off (csum=0x0): nothing to offload.
* TCP between containers over the tunnel fails while the sending veth
  leaves TX checksums partial (the userspace datapath forwards them as
  they are); with tx-checksumming off inside (what the driver does to
  instances, linux_net._checksum_in_software) it works.
* Interface statistics reach the OVS database every 5 s only.
* One idle node (no containers, no tunnel; ovs-vswitchd without
  --mlockall) takes about 140 MiB RSS (ovsdb-server 10, ovs-vswitchd 20,
  containerd 37, dockerd 73) and 0.2 to 0.8 % of one CPU over 30 s
  (three runs on a busy 2-core machine). The logs of OVS and dockerd
  show no warnings but dockerd's usual blkio ones.

Standard library only, like engine.py.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import typing

from ndtools import aio_state
from ndtools import engine
from ndtools import host

UNDERLAY_BRIDGE = 'aio-underlay'
UNDERLAY_NET = '10.250.0'          # /24: .1 the host, .K node K
UNDERLAY_PREFIX_LEN = 24
UNDERLAY_HOST_IP = UNDERLAY_NET + '.1'
NETNS_PREFIX = 'aio-node'
UPLINK = 'ul0'                     # the node's veth end, inside
PHYS_BRIDGE = 'br-phy'
OVS_SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema'
# The daemons a node runs, in start order (down stops them in reverse).
DAEMONS = ('ovsdb-server', 'ovs-vswitchd', 'containerd', 'dockerd')
MIN_NUMBER, MAX_NUMBER = 2, 254
# The node engine's btrfs file (sparse: it takes what its images and
# containers take).
NODE_DOCKER_GB = int(os.environ.get('AIO_NODE_DOCKER_GB', '10'))


def default_base_dir() -> str:
    return os.path.join(aio_state.Settings().aio_dir, 'nodes')


def quiet(*argv: str) -> bool:
    """A command whose failure is an answer, not an error."""
    return subprocess.run(list(argv), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def link_exists(name: str) -> bool:
    """A link of the host's network namespace (ours: the test's or
    tools/aio's, never a node's)."""
    return os.path.exists(os.path.join('/sys/class/net', name))


def sysctl_path_name(ifname: str) -> str:
    """The name of a link as a sysctl key (dots are slashes there)."""
    return ifname.replace('.', '/')


def unescape_mount(path: str) -> str:
    """/proc/self/mountinfo escapes space, tab, newline and backslash."""
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), path)


def mounts_under(directory: str,
                 mountinfo: str = '/proc/self/mountinfo') -> typing.List[str]:
    """Mount points at or below ``directory``, deepest first."""
    top = directory.rstrip('/')
    found = []
    with open(mountinfo) as f:
        for line in f:
            point = unescape_mount(line.split()[4])
            if point == top or point.startswith(top + '/'):
                found.append(point)
    return sorted(set(found), key=lambda p: (-p.count('/'), p))


def processes() -> typing.Dict[int, typing.Tuple[int, str, str]]:
    """pid -> (parent pid, network namespace link, command line)."""
    table = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open('/proc/%d/stat' % pid) as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                cmdline = f.read().replace(b'\0', b' ').decode(
                    errors='replace')
            netns = os.readlink('/proc/%d/ns/net' % pid)
        except (OSError, IndexError, ValueError):
            continue
        table[pid] = (ppid, netns, cmdline)
    return table


def is_node_daemon(cmdline: str, marker: str) -> bool:
    """A daemon (or shim) started from a node's files: named in its
    command line. Other commands that merely mention them (an operator's
    ``tail -f`` of a log) are not the node's."""
    argv0 = os.path.basename(cmdline.split(' ', 1)[0])
    return marker in cmdline and (argv0 in DAEMONS + ('nsenter', 'ip') or
                                  argv0.startswith('containerd-shim'))


def with_descendants(pids: typing.Iterable[int], table: typing.Dict[
        int, typing.Tuple[int, str, str]]) -> typing.Set[int]:
    """``pids`` and all their children's children (a shim's container)."""
    found = set(pids)
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _, _) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


class Underlay:
    """The host's end: aio-underlay, a netdev bridge of the host's OVS
    holding the nodes' veth ends and the host's underlay address."""

    def __init__(self, bridge: str = UNDERLAY_BRIDGE,
                 host_ip: str = UNDERLAY_HOST_IP):
        self.bridge = bridge
        self.host_ip = host_ip

    def exists(self) -> bool:
        return quiet('ovs-vsctl', '--timeout=10', 'br-exists', self.bridge)

    def up(self) -> None:
        """The bridge, up, with the host's address; it forwards nothing
        (the nodes' underlay ends at the host)."""
        aio_state.sh('ovs-vsctl', '--timeout=30', '--may-exist', 'add-br',
                     self.bridge, '--', 'set', 'bridge', self.bridge,
                     'datapath_type=netdev')
        if not host.wait_for(lambda: link_exists(self.bridge), 30):
            raise aio_state.StepFailed('%s has no local port' % self.bridge)
        key = sysctl_path_name(self.bridge)
        aio_state.sh('sysctl', '-qw', 'net.ipv6.conf.%s.disable_ipv6=1' % key,
                     'net.ipv4.conf.%s.forwarding=0' % key)
        aio_state.sh('ip', 'link', 'set', self.bridge, 'up')
        aio_state.sh('ip', 'addr', 'replace', '%s/%d' % (
            self.host_ip, UNDERLAY_PREFIX_LEN), 'dev', self.bridge)

    def ports(self) -> typing.List[str]:
        return aio_state.output('ovs-vsctl', '--timeout=10', 'list-ports',
                                self.bridge).split()

    def release(self) -> None:
        """Delete the bridge once no node is plugged into it."""
        if self.exists() and not self.ports():
            aio_state.sh('ovs-vsctl', '--timeout=30', '--if-exists', 'del-br',
                         self.bridge)
            print('deleted %s' % self.bridge, flush=True)


class Node:
    """Node K: its namespace, veth pair, userspace OVS and Docker engine."""

    #: The node's directory under the base: DIR_PREFIX + K.
    DIR_PREFIX = 'node'

    def __init__(self, number: int, base_dir: typing.Optional[str] = None,
                 underlay: typing.Optional[Underlay] = None):
        if not MIN_NUMBER <= number <= MAX_NUMBER:
            raise ValueError('node numbers are %d..%d (1 is the host)'
                             % (MIN_NUMBER, MAX_NUMBER))
        self.number = number
        self.name = '%s%d' % (NETNS_PREFIX, number)
        self.netns = self.name
        self.dir = os.path.join(base_dir or default_base_dir(),
                                '%s%d' % (self.DIR_PREFIX, number))
        # The node's directory has AIO_DIR's layout: run/ (PID files,
        # sockets, RUN/started), logs/, data/.
        self.s = aio_state.Settings({'AIO_DIR': self.dir})
        self.state = aio_state.State(self.s)
        self.underlay = underlay or Underlay()
        self.host_link = '%s-u' % self.name      # at most 15 characters
        self.address = '%s.%d' % (UNDERLAY_NET, number)

    # -- paths ---------------------------------------------------------------

    @property
    def netns_path(self) -> str:
        return os.path.join('/run/netns', self.netns)

    @property
    def ovs_run(self) -> str:
        return os.path.join(self.s.run, 'ovs')

    @property
    def ovs_db(self) -> str:
        return os.path.join(self.s.data, 'ovs', 'conf.db')

    @property
    def ovs_socket(self) -> str:
        return os.path.join(self.ovs_run, 'db.sock')

    def ctl(self, daemon: str) -> str:
        """An OVS daemon's control socket (ovs-appctl -t)."""
        return os.path.join(self.ovs_run, daemon + '.ctl')

    @property
    def docker_root(self) -> str:
        return os.path.join(self.s.data, 'docker')

    @property
    def docker_btrfs(self) -> str:
        """The sparse btrfs file mounted at docker_root (down unmounts
        it with the rest under the node's directory, clean removes it)."""
        return os.path.join(self.dir, 'docker.btrfs')

    @property
    def docker_socket(self) -> str:
        return os.path.join(self.s.run, 'docker.sock')

    @property
    def docker_host(self) -> str:
        return 'unix://' + self.docker_socket

    @property
    def containerd_socket(self) -> str:
        return os.path.join(self.s.run, 'containerd.sock')

    # -- commands ------------------------------------------------------------

    def in_netns(self, *argv: str) -> typing.List[str]:
        """For OVS and one-off commands: /sys shows the node's links."""
        return ['ip', 'netns', 'exec', self.netns] + list(argv)

    def in_net_only(self, *argv: str) -> typing.List[str]:
        """For containerd and dockerd: the node's network, the host's
        mounts (cgroups; their own mounts visible to down)."""
        return ['nsenter', '--net=' + self.netns_path] + list(argv)

    def ovs_env(self) -> typing.List[str]:
        """`env` arguments that point OVS's defaults at the node's files
        (ovs-appctl, bridge mgmt sockets), never the host's."""
        return ['env', 'OVS_RUNDIR=' + self.ovs_run,
                'OVS_DBDIR=' + os.path.dirname(self.ovs_db),
                'OVS_LOGDIR=' + self.s.logs]

    def ovsdb_argv(self) -> typing.List[str]:
        return self.in_netns(*self.ovs_env(), 'ovsdb-server', self.ovs_db,
                             '--remote=punix:' + self.ovs_socket,
                             '--pidfile=' + os.path.join(
                                 self.ovs_run, 'ovsdb-server.pid'),
                             '--unixctl=' + self.ctl('ovsdb-server'),
                             '--log-file=' + os.path.join(
                                 self.s.logs, 'ovsdb-server.log'),
                             '-vconsole:off')

    def vswitchd_argv(self) -> typing.List[str]:
        return self.in_netns(*self.ovs_env(), 'ovs-vswitchd',
                             'unix:' + self.ovs_socket,
                             '--pidfile=' + os.path.join(
                                 self.ovs_run, 'ovs-vswitchd.pid'),
                             '--unixctl=' + self.ctl('ovs-vswitchd'),
                             '--log-file=' + os.path.join(
                                 self.s.logs, 'ovs-vswitchd.log'),
                             '-vconsole:off')

    def vsctl_argv(self, *args: str) -> typing.List[str]:
        return ['ovs-vsctl', '--timeout=30', '--db=unix:' + self.ovs_socket
                ] + list(args)

    def vsctl(self, *args: str) -> str:
        """ovs-vsctl against the node's database (never the host's)."""
        return aio_state.sh(*self.vsctl_argv(*args), stdout=subprocess.PIPE,
                            text=True).stdout

    def appctl_argv(self, *args: str,
                    daemon: str = 'ovs-vswitchd') -> typing.List[str]:
        return ['ovs-appctl', '--timeout=30', '-t', self.ctl(daemon)
                ] + list(args)

    def appctl(self, *args: str, daemon: str = 'ovs-vswitchd') -> str:
        return aio_state.sh(*self.appctl_argv(*args, daemon=daemon),
                            stdout=subprocess.PIPE, text=True).stdout

    def ip(self, *args: str) -> subprocess.CompletedProcess:
        """ip in the node's namespace."""
        return aio_state.sh('ip', '-n', self.netns, *args)

    def containerd_config(self) -> str:
        return engine.containerd_config(
            os.path.join(self.s.data, 'containerd'),
            os.path.join(self.s.run, 'containerd'), self.containerd_socket)

    def containerd_argv(self) -> typing.List[str]:
        return self.in_net_only('containerd', '--config',
                                os.path.join(self.s.run, 'containerd.toml'))

    def dockerd_argv(self) -> typing.List[str]:
        run = self.s.run
        return self.in_net_only(
            'dockerd', '--host', self.docker_host,
            '--data-root', self.docker_root,
            '--exec-root', os.path.join(run, 'docker-exec'),
            '--pidfile', os.path.join(run, 'docker.pid'),
            '--config-file', os.path.join(run, 'daemon.json'),
            '--containerd', self.containerd_socket,
            '--storage-driver', 'btrfs', '--live-restore',
            '--bridge', 'none', '--iptables=false', '--ip-masq=false',
            '--userland-proxy=false')

    # -- status --------------------------------------------------------------

    def netns_exists(self) -> bool:
        return os.path.exists(self.netns_path)

    def underlay_address(self) -> bool:
        if not self.netns_exists():
            return False
        shown = aio_state.output('ip', '-n', self.netns, '-4', '-o', 'addr',
                                 'show', 'dev', PHYS_BRIDGE)
        return (' %s/%d ' % (self.address, UNDERLAY_PREFIX_LEN)) in shown

    def status(self) -> typing.Dict[str, bool]:
        """Each part of the node: is it there and answering."""
        return {
            'netns': self.netns_exists(),
            'veth': link_exists(self.host_link),
            'ovsdb-server': quiet(*self.appctl_argv(
                'version', daemon='ovsdb-server')),
            'ovs-vswitchd': quiet(*self.appctl_argv('version')),
            'underlay-ip': self.underlay_address(),
            'dockerd': host.docker_ok(self.docker_socket),
        }

    def ok(self) -> bool:
        return all(self.status().values())

    # -- up ------------------------------------------------------------------

    def up(self) -> None:
        """Everything, each part only if missing; StepFailed if a part
        does not come up (down then undoes the rest)."""
        os.makedirs(self.docker_root, exist_ok=True)
        self.up_to_ovs()
        self.start_docker()
        print('%s up: underlay %s on %s, OVS %s, dockerd %s' % (
            self.name, self.address, PHYS_BRIDGE, self.ovs_socket,
            self.docker_host), flush=True)

    def up_to_ovs(self) -> None:
        """The steps of up that every kind of node shares (a KVM node
        too): its directories, the underlay, the namespace and veth, its
        userspace OVS. What runs on it (dockerd, libvirtd) comes after;
        tests stop here to check that down undoes a partial up."""
        for path in (self.s.run, self.s.logs, self.ovs_run,
                     os.path.dirname(self.ovs_db)):
            os.makedirs(path, exist_ok=True)
        self.underlay.up()
        self.plug()
        self.start_ovs()

    def plug(self) -> None:
        """The namespace and the veth pair, the host end on aio-underlay."""
        if not self.netns_exists():
            aio_state.sh('ip', 'netns', 'add', self.netns)
        # The marks (RUN/started) show how far a failed up got; down
        # removes the node's names whatever they say.
        self.state.mark('netns')
        self.ip('link', 'set', 'lo', 'up')
        # No IPv6 autoconfiguration chatter on the underlay.
        aio_state.sh(*self.in_netns(
            'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1',
            'net.ipv6.conf.default.disable_ipv6=1'))
        if not link_exists(self.host_link):
            aio_state.sh('ip', 'link', 'add', self.host_link, 'type', 'veth',
                         'peer', 'name', UPLINK, 'netns', self.netns)
        self.state.mark('veth')
        # arp_ignore=8 on both veth ends: the kernel sees every frame of
        # a port of a userspace datapath too, and would answer ARP for the
        # bridge's address with the port's MAC (a second, wrong reply that
        # OVS's tunnel neighbour table may keep).
        key = sysctl_path_name(self.host_link)
        aio_state.sh('sysctl', '-qw', 'net.ipv6.conf.%s.disable_ipv6=1' % key,
                     'net.ipv4.conf.%s.arp_ignore=8' % key)
        aio_state.sh(*self.in_netns(
            'sysctl', '-qw', 'net.ipv4.conf.%s.arp_ignore=8' % UPLINK))
        aio_state.sh('ip', 'link', 'set', self.host_link, 'up')
        self.ip('link', 'set', UPLINK, 'up')
        aio_state.sh('ovs-vsctl', '--timeout=30', '--may-exist', 'add-port',
                     self.underlay.bridge, self.host_link)

    def start_ovs(self) -> None:
        if not os.path.exists(self.ovs_db):
            aio_state.sh('ovsdb-tool', 'create', self.ovs_db, OVS_SCHEMA)
        if not quiet(*self.appctl_argv('version', daemon='ovsdb-server')):
            self.state.start_svc('ovsdb-server', *self.ovsdb_argv())
            self.wait('ovsdb-server', host.succeeds(
                *self.vsctl_argv('--no-wait', 'show')))
        self.vsctl('--no-wait', 'init')
        self.vsctl('--no-wait', 'set', 'open_vswitch', '.',
                   'external_ids:system-id=%s' % self.name,
                   'external_ids:hostname=%s' % self.name)
        if not quiet(*self.appctl_argv('version')):
            self.state.start_svc('ovs-vswitchd', *self.vswitchd_argv())
            self.wait('ovs-vswitchd', host.succeeds(
                *self.appctl_argv('version')))
        self.vsctl('--may-exist', 'add-br', PHYS_BRIDGE, '--', 'set',
                   'bridge', PHYS_BRIDGE, 'datapath_type=netdev', '--',
                   '--may-exist', 'add-port', PHYS_BRIDGE, UPLINK)
        self.wait('%s in %s' % (PHYS_BRIDGE, self.netns), host.succeeds(
            'ip', '-n', self.netns, 'link', 'show', PHYS_BRIDGE))
        self.ip('link', 'set', PHYS_BRIDGE, 'up')
        self.ip('addr', 'replace', '%s/%d' % (self.address,
                                              UNDERLAY_PREFIX_LEN),
                'dev', PHYS_BRIDGE)

    def start_docker(self) -> None:
        if host.docker_ok(self.docker_socket):
            return
        run = self.s.run
        with open(os.path.join(run, 'containerd.toml'), 'w') as f:
            f.write(self.containerd_config())
        # Its own daemon.json: the host's must not apply.
        with open(os.path.join(run, 'daemon.json'), 'w') as f:
            json.dump({}, f)
        # A killed run leaves its sockets and pid file behind.
        if not host.unix_socket_answers(self.containerd_socket):
            self.state.stop_pid('containerd')
            host.remove_stale_socket(self.containerd_socket)
            host.remove_stale_socket(self.containerd_socket + '.ttrpc')
            self.state.start_svc('containerd', *self.containerd_argv())
            self.state.wait_ready(
                'containerd',
                lambda: host.unix_socket_answers(self.containerd_socket), 120)
        # Its data root on btrfs with quotas, as the host's engine: a
        # flavor's root_gb is a real limit on the node too.
        engine.mount_btrfs(self.docker_btrfs, self.docker_root,
                           NODE_DOCKER_GB)
        self.state.stop_pid('dockerd')
        engine.remove_file(os.path.join(run, 'docker.pid'))
        self.state.start_svc('dockerd', *self.dockerd_argv())
        self.state.wait_ready('dockerd', lambda: host.docker_ok(
            self.docker_socket), 120)

    def wait(self, what: str, check: typing.Callable[[], bool],
             seconds: float = 120) -> None:
        """Generous: the machine may be busy."""
        if not host.wait_for(check, seconds):
            raise aio_state.StepFailed(
                '%s: %s not ready after %d s (logs in %s)'
                % (self.name, what, seconds, self.s.logs))

    # -- down ----------------------------------------------------------------

    def down(self) -> None:
        """Stop and remove everything up made; keep the node's files.
        Safe to call any number of times, after any partial up."""
        self.remove_containers()
        for daemon in reversed(DAEMONS):
            self.state.stop_pid(daemon)
        self.kill_leftovers()
        self.unmount()
        if link_exists(self.host_link):
            aio_state.sh('ip', 'link', 'del', self.host_link)
        if self.underlay.exists():
            aio_state.sh('ovs-vsctl', '--timeout=30', '--if-exists',
                         'del-port', self.underlay.bridge, self.host_link)
        if self.netns_exists():
            aio_state.sh('ip', 'netns', 'del', self.netns)
        self.underlay.release()
        if os.path.exists(self.state.started_file):
            os.unlink(self.state.started_file)
        print('%s down' % self.name, flush=True)

    def remove_containers(self) -> None:
        """With live-restore, containers outlive dockerd: remove them
        while it still answers."""
        if not host.docker_ok(self.docker_socket):
            return
        docker = ['docker', '-H', self.docker_host]
        ids = aio_state.output(*docker, 'ps', '-aq').split()
        if ids:
            subprocess.run(docker + ['rm', '-f', '-v'] + ids,
                           stdout=subprocess.DEVNULL)

    def leftover_pids(self) -> typing.Set[int]:
        """Processes in the node's namespace or running from its files,
        and their descendants (a shim's container is in a namespace of
        its own)."""
        table = processes()
        try:
            inode = os.stat(self.netns_path).st_ino
        except FileNotFoundError:
            inode = None
        netns = 'net:[%d]' % inode if inode is not None else None
        marker = self.dir.rstrip('/') + '/'
        roots = [pid for pid, (_, ns, cmdline) in table.items()
                 if ns == netns or is_node_daemon(cmdline, marker)]
        found = with_descendants(roots, table)
        found.discard(os.getpid())
        return found

    def kill_leftovers(self) -> None:
        for _ in range(3):
            pids = self.leftover_pids()
            if not pids:
                return
            for pid in pids:
                print('%s: killing leftover process %d' % (self.name, pid),
                      flush=True)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            host.wait_for(lambda: not any(host.pid_alive(p) for p in pids),
                          20)
        if self.leftover_pids():
            raise aio_state.StepFailed('%s: processes left: %s' % (
                self.name, sorted(self.leftover_pids())))

    def unmount(self) -> None:
        """What dockerd left mounted (it mounts in the host's namespace)."""
        for point in mounts_under(self.dir):
            if subprocess.run(['umount', point]).returncode:
                subprocess.run(['umount', '-l', point])
            print('%s: unmounted %s' % (self.name, point), flush=True)

    def clean(self) -> None:
        """down, then the node's directory (databases, images, logs)."""
        self.down()
        if mounts_under(self.dir):
            raise aio_state.StepFailed('%s: still mounted under %s'
                                       % (self.name, self.dir))
        shutil.rmtree(self.dir, ignore_errors=True)
