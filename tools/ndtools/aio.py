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
"""The all-in-one: one command turns a Debian 12 machine (root) into a small
real OpenStack whose compute runs DockerDriver from this checkout.

  tools/aio up [--nodes N] [--kvm-node]
                        install what is missing, start everything, create a
                        demo network/router/security group/flavors/image,
                        boot one server, print how to use the cloud; with
                        --nodes N (2 or 3), N-1 more compute nodes
                        aio-node2.. (ndtools.aio_nodes) after that; with
                        --kvm-node, then add-kvm-node
  tools/aio down        stop exactly what `up` started (by PID), delete the
                        servers, their containers and loaded images
  tools/aio clean       down, then remove the state (databases, OVN DBs,
                        bridges and OVS settings `up` made, configs); keeps
                        Debian packages, the venv and the logs
  tools/aio status      what runs, what answers, the servers
  tools/aio scenario [REGEX | --multinode | --mixed]   scenario tests
                        against the running cloud (--multinode: the
                        cross-node ones; --mixed: VMs beside containers)
  tools/aio tempest [REGEX | --multinode]   Tempest (tools/tempest/
                        include.txt) on it (--multinode: its tests that
                        need two compute nodes)
  tools/aio browser [REGEX]    browser tests of the dashboard (Horizon)
  tools/aio add-nodes N  grow the running cloud to N compute nodes (2 or 3),
                        as `up --nodes N` would have made it
  tools/aio add-kvm-node   a KVM compute node aio-kvm10 (libvirt, QEMU;
                        ndtools.aio_kvm) joins the running cloud, and the
                        VM image vm-tiny goes into Glance
  tools/aio remove-kvm-node   its servers, service, vm-tiny and the node
                        itself gone again (down does it too)
  tools/aio compute-driver DRIVER   restart nova-compute with DRIVER
  tools/aio node-kill K SIGKILL node K's nova-compute and dockerd (a
                        failed node, for evacuate; containers keep running)
  tools/aio node-restart K   start again what node K is missing

Environment: AIO_DIR (default /opt/nova-docker-aio), AIO_COMPUTE_DRIVER
(or COMPUTE_DRIVER; default docker.DockerDriver, e.g.
fake.FakeDriverWithoutFakeNodes for Nova's fake driver), AIO_PASSWORD,
AIO_EXT_CIDR/AIO_EXT_HOST_IP (the host's side of the external network,
default 172.24.4.0/24 and .1 on bridge br-aio-ex; with AIO_EXT_POOL_START
and AIO_EXT_POOL_END), AIO_PRIVATE_CIDR, AIO_SKIP_DEMO_SERVER=1,
AIO_HORIZON_PORT (the dashboard's, default 8090).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import typing

from ndtools import aio_horizon
from ndtools import aio_kvm
from ndtools import aio_nodes
from ndtools import aio_services
from ndtools import aio_state
from ndtools.aio_state import die
from ndtools.aio_state import say
from ndtools.aio_state import sh
from ndtools.aio_state import warn
from ndtools import engine
from ndtools import host
from ndtools import node
from ndtools import runtests
from ndtools import vmimage

TOP = aio_state.TOP
TEMPEST_DIR = os.path.join(TOP, 'tools/tempest')
IMAGE_TAG = 'nova-docker-aio/busybox:latest'
BROWSER_DEBS = ('chromium', 'chromium-driver')
# An interactive shell on the workload's TTY: the serial console's prompt
# (after the addresses, in the console log). Such a shell ignores SIGTERM,
# so the image's stop signal is SIGHUP (a hung-up terminal ends it; tini
# passes it on): stops end at once, without waiting for SIGKILL.
IMAGE_CMD = ('CMD ["/bin/sh", "-c", "hostname; ip -4 addr; '
             'exec /bin/sh"]')
IMAGE_STOP_SIGNAL = 'SIGHUP'
# Scenario tests that take a compute node down: never run alongside the
# others (tools/aio scenario without a REGEX runs them last, alone, and
# only on a cloud with nodes: on one node they would only skip).
SOLO_SCENARIOS = r'tests\.scenario\.test_evacuate\.'
# The cross-node scenario tests: `tools/aio scenario --multinode`.
MULTINODE_SCENARIOS = r'tests\.scenario\.test_(multinode|migration|evacuate)\.'
# Tempest's tests that need two compute nodes and run on ours (cold
# migration, its revert, resize across hosts, scheduling to every node):
# `tools/aio tempest --multinode`. Live migration is off in tempest.conf.
MULTINODE_TEMPEST = (r'tempest\.(api\.compute\.admin\.test_migrations\.'
                     r'MigrationsAdminTest|scenario\.'
                     r'test_network_advanced_server_ops\..*'
                     r'(cold_migration|resize)|scenario\.'
                     r'test_server_multinode\.)')
# VMs beside containers (the KVM node): `tools/aio scenario --mixed`.
MIXED_SCENARIOS = r'tests\.scenario\.test_mixed\.'
# Never in the run of everything: the node-down tests run after it, the
# mixed ones need the KVM node (CI adds it after the multi-node phase).
NOT_BY_DEFAULT = '(%s|%s)' % (SOLO_SCENARIOS, MIXED_SCENARIOS)


class SuiteResult(typing.NamedTuple):
    """A test run's counts; ``rc`` is a command's exit code for them."""
    passed: int
    failed: int

    @property
    def rc(self) -> int:
        return 0 if self.failed == 0 and self.passed > 0 else 1

    def __add__(self, other: 'SuiteResult') -> 'SuiteResult':
        return SuiteResult(self.passed + other.passed,
                           self.failed + other.failed)
# The image Tempest and the scenario tests log in to: busybox plus
# dropbear in the foreground as PID 1 (it exits on TERM), host keys made
# at the first connection (-R), root by key only (-g), log on stderr
# (the console output).
SSH_IMAGE = 'busybox-ssh'
SSH_IMAGE_TAG = 'nova-docker-aio/busybox-ssh:latest'
SSH_IMAGE_CMD = ('CMD ["/bin/sh", "-c", "hostname; ip -4 addr; exec '
                 '/usr/sbin/dropbear -F -E -R -g -p 22"]')


class AllInOne:
    """The commands of tools/aio."""

    def __init__(self, settings: aio_state.Settings):
        self.s = settings
        self.state = aio_state.State(settings)
        self.services = aio_services.Services(self.state, TOP)
        # Every docker command and test of ours goes to the all-in-one's
        # own engine (ndtools.engine), never to the host's.
        os.environ['DOCKER_HOST'] = settings.docker_host
        os.environ['NOVA_DOCKER_TEST_API_URL'] = settings.docker_host

    # -- helpers -------------------------------------------------------------

    def cloud_env(self) -> dict:
        return dict(os.environ, OS_CLIENT_CONFIG_FILE=self.s.clouds_yaml)

    def cloud(self, *args: str, capture: bool = False):
        """tools/ndtools/cloud.py in the services' venv (openstacksdk):
        its exit code, or its stdout with ``capture`` (None on failure)."""
        argv = [self.s.exe('python'), os.path.join(TOP, 'tools/ndtools',
                                                   'cloud.py')] + list(args)
        if not capture:
            return subprocess.run(argv, env=self.cloud_env()).returncode
        result = subprocess.run(argv, env=self.cloud_env(),
                                stdout=subprocess.PIPE, text=True)
        return result.stdout if result.returncode == 0 else None

    def cloud_ok(self, *args: str) -> bool:
        """cloud.py as a step: False when it failed."""
        return self.cloud(*args) == 0

    @staticmethod
    def need_root() -> None:
        if os.geteuid() != 0:
            die('must run as root')

    def admin_env(self) -> dict:
        """What adminrc exports."""
        return dict(os.environ, OS_AUTH_URL='http://127.0.0.1:5000/v3',
                    OS_USERNAME='admin', OS_PASSWORD=self.s.password,
                    OS_PROJECT_NAME='admin', OS_USER_DOMAIN_ID='default',
                    OS_PROJECT_DOMAIN_ID='default',
                    OS_IDENTITY_API_VERSION='3', OS_REGION_NAME='RegionOne',
                    PATH=self.s.bin + ':' + os.environ.get('PATH', ''))

    # -- up ------------------------------------------------------------------

    def build_image(self) -> None:
        """busybox-static as a root filesystem from the project's one
        builder, uploaded to Glance as ``busybox``."""
        self.upload_image('busybox', IMAGE_TAG, ['--dir', 'www'],
                          [IMAGE_CMD, 'WORKDIR /root'], IMAGE_STOP_SIGNAL)

    def build_ssh_image(self) -> None:
        """The same with an SSH server (build_image --ssh), uploaded as
        ``busybox-ssh``: Tempest's validation logs in to it."""
        self.upload_image(SSH_IMAGE, SSH_IMAGE_TAG, ['--ssh'],
                          [SSH_IMAGE_CMD, 'WORKDIR /root'])

    def upload_image(self, name: str, tag: str, builder_args: list,
                     changes: list, stop_signal: str = '') -> None:
        """The builder's tarball `docker import`ed, then `docker save |
        openstack image create`: the format the driver loads. The local
        tag is removed afterwards; the driver loads its own copy from
        Glance."""
        builder = subprocess.Popen(
            [self.s.exe('python'), '-m', 'novadocker.cmd.build_image']
            + builder_args, stdout=subprocess.PIPE)
        imported = subprocess.run(
            ['docker', 'import']
            + [arg for change in changes for arg in ('--change', change)]
            + ['-', tag], stdin=builder.stdout)
        builder.stdout.close()
        if builder.wait() or imported.returncode:
            raise aio_state.StepFailed('building %s failed' % tag)
        if stop_signal:
            set_stop_signal(tag, stop_signal)
        save = subprocess.Popen(['docker', 'save', tag],
                                stdout=subprocess.PIPE)
        created = subprocess.run(
            [self.s.exe('openstack'), 'image', 'create', '--container-format',
             'docker', '--disk-format', 'raw', '--public', '--property',
             'os_type=linux', '--property',
             'hypervisor_type=' + aio_kvm.DOCKER_HV_TYPE, '-f', 'value',
             '-c', 'id', name],
            stdin=save.stdout, env=self.admin_env())
        save.stdout.close()
        if save.wait() or created.returncode:
            raise aio_state.StepFailed('uploading %s failed' % tag)
        sh('docker', 'rmi', tag)

    def catalog(self) -> bool:
        if not host.wait_for(lambda: aio_state.http_ok(
                'http://127.0.0.1:5000/v3'), 120):
            print('timed out after 120s waiting for Keystone on :5000')
            return False
        return self.cloud('catalog', '--password', self.s.password) == 0

    def demo(self) -> bool:
        return self.cloud('demo', '--ext-cidr', self.s.ext_cidr,
                          '--gateway', self.s.ext_host_ip,
                          '--pool-start', self.s.ext_pool_start,
                          '--pool-end', self.s.ext_pool_end,
                          '--private-cidr', self.s.private_cidr) == 0

    def auto_allocation(self) -> bool:
        return self.cloud('auto-allocation') == 0

    def boot_demo_server(self) -> bool:
        return self.cloud('boot', '--name', 'demo1', '--output',
                          os.path.join(self.s.aio_dir,
                                       'demo-server.json')) == 0

    def up(self, args: typing.Sequence[str] = ()) -> int:
        self.need_root()
        try:
            count, kvm = parse_up(args)
            extra = aio_nodes.numbers(count)
        except ValueError as exc:
            die('up: %s (usage: tools/aio up [--nodes N] [--kvm-node], N '
                'from 1 to %d)' % (exc, aio_nodes.MAX_NODES))
        s, svc, step = self.s, self.services, self.state.run_step
        if self.state.any_running():
            die("the all-in-one is already running ('tools/aio status'; "
                "'tools/aio down' first)")
        for path in (s.etc, s.data, s.run, s.logs):
            os.makedirs(path, exist_ok=True)
        for name in os.listdir(s.logs):
            if name.endswith(('.log', '.out')):
                os.unlink(os.path.join(s.logs, name))
        aio_services.remove(os.path.join(s.aio_dir, 'demo-server.json'))
        print('tools/aio up: all-in-one OpenStack in %s (compute_driver=%s)'
              % (s.aio_dir, s.compute_driver), flush=True)
        step('packages', 'Debian packages (MariaDB, RabbitMQ, OVN, OVS, '
             'Docker, compilers)', aio_services.install_debs, s)
        step('venv', 'Python venv: nova, neutron, glance, keystone, '
             'placement, uwsgi + this checkout', aio_services.install_venv,
             s, TOP)
        step('horizon-venv', 'Horizon venv, its static files collected and '
             'compressed', aio_horizon.install, s, TOP)
        step('base', 'dockerd (own, btrfs data root), Open vSwitch, '
             'MariaDB (databases), RabbitMQ',
             svc.start_base)
        step('ovn', 'OVN central + controller, br-int, external bridge %s '
             '(%s)' % (s.ext_bridge, s.ext_host_ip), svc.start_ovn)
        step('keystone', 'Keystone: database, fernet keys, bootstrap, API '
             'on :5000', svc.setup_keystone)
        step('configs', 'configuration files', svc.write_configs)
        step('dbsync-start', 'database migrations (placement, glance, '
             'neutron, nova) in the background', svc.start_dbsyncs)
        svc.write_rc_files()
        step('catalog', 'Keystone catalog, service users, demo project',
             self.catalog)
        step('dbsync', 'waiting for the database migrations',
             svc.wait_dbsyncs)
        step('apis', 'Placement, Glance, Neutron (+OVN workers), Nova APIs',
             svc.start_apis)
        step('nova', 'nova-conductor, nova-scheduler, nova-compute; host '
             'discovery', svc.start_nova_services, self.cloud)
        step('dashboard', 'Horizon on 127.0.0.1:%d (sessions in MariaDB)'
             % s.horizon_port, aio_horizon.start, self.state)
        step('demo', 'networks public/private, router1, security group, '
             'flavors', self.demo)
        step('auto-allocation', 'default external network and subnet '
             'pool (server create --nic auto)', self.auto_allocation)
        step('image', 'busybox image built locally, uploaded to Glance',
             self.build_image)
        step('ssh-image', '%s image (busybox + dropbear) built locally, '
             'uploaded to Glance' % SSH_IMAGE, self.build_ssh_image)
        if not s.skip_demo_server:
            step('server', 'booting server demo1 with a floating IP',
                 self.boot_demo_server)
        self.start_nodes(extra)
        if kvm:
            self.start_kvm_node()
        say('up')
        self.summary()
        self.nodes_summary()
        return 0

    def add_nodes(self, args: typing.Sequence[str]) -> int:
        """Grow a running cloud to N compute nodes: CI runs the cross-node
        tests on the cloud its single-node phase used, without a second
        ``up``."""
        self.need_root()
        self.need_cloud()
        try:
            if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 2:
                raise ValueError('N, the number of compute nodes wanted, '
                                 'is one number of 2 or more')
            wanted = aio_nodes.numbers(int(args[0]))
        except ValueError as exc:
            die('add-nodes: %s (usage: tools/aio add-nodes N, N from 2 to '
                '%d)' % (exc, aio_nodes.MAX_NODES))
        if not host.pid_alive(self.state.pid('nova-compute')):
            die("add-nodes: the all-in-one's nova-compute is not running "
                "('tools/aio status')")
        have = aio_nodes.marked_numbers(self.state)
        self.start_nodes([n for n in wanted if n not in have])
        say('add-nodes')
        self.nodes_summary()
        return 0

    def start_nodes(self, numbers: typing.Sequence[int]) -> None:
        """Compute nodes aio-nodeK for each K, then cell host discovery."""
        step = self.state.run_step
        if numbers:
            self.ensure_underlay()
        for number in numbers:
            self.state.mark(aio_nodes.NODE_MARK + str(number))
            step('node%d' % number, 'compute node aio-node%d: namespace, '
                 'OVS, dockerd, relay, ovn-controller, nova-compute'
                 % number, self.up_node, number)
        if numbers:
            step('discover-nodes', 'cell host discovery: %s' % ', '.join(
                'aio-node%d' % n for n in numbers), self.discover_hosts)

    def ensure_underlay(self) -> None:
        """aio-underlay and the host chassis's encap on it, once."""
        if not self.state.marked(aio_nodes.HOST_ENCAP_MARK):
            self.state.run_step('underlay', 'host chassis tunnels from %s '
                                'on %s' % (node.UNDERLAY_HOST_IP,
                                           node.UNDERLAY_BRIDGE),
                                self.host_underlay)

    # -- the KVM node (--kvm-node) -------------------------------------------

    def kvm_node(self) -> aio_kvm.KvmComputeNode:
        return aio_kvm.KvmComputeNode(aio_kvm.KVM_NUMBER, self.s, TOP)

    def add_kvm_node(self, args: typing.Sequence[str]) -> int:
        """The KVM node joins a running cloud (CI adds it after the
        docker nodes' phase)."""
        self.need_root()
        self.need_cloud()
        if args:
            die('usage: tools/aio add-kvm-node')
        if not host.pid_alive(self.state.pid('nova-compute')):
            die("add-kvm-node: the all-in-one's nova-compute is not running "
                "('tools/aio status')")
        self.start_kvm_node()
        say('add-kvm-node')
        self.nodes_summary()
        return 0

    def start_kvm_node(self) -> None:
        """Packages, the node, host discovery, vm-tiny in Glance."""
        step = self.state.run_step
        n = self.kvm_node()
        step('kvm-packages', 'Debian packages (%s) and libvirt-python in '
             'the venv' % ', '.join(aio_kvm.KVM_DEBS), aio_kvm.install_kvm,
             self.s)
        step('docker-hv-type', 'docker images hypervisor_type=%s, before '
             'the KVM node can take any' % aio_kvm.DOCKER_HV_TYPE,
             self.cloud_ok, 'docker-hv-type', '--hv', aio_kvm.DOCKER_HV_TYPE)
        self.ensure_underlay()
        self.state.mark(aio_kvm.KVM_MARK)
        step('kvm-node', 'KVM compute node %s: namespace, OVS, libvirtd, '
             'relay, ovn-controller, nova-compute (libvirt, virt_type %s)'
             % (n.name, n.virt[0]), n.up_compute, self.wait_node_compute)
        if n.virt[1]:
            warn('%s runs QEMU without KVM (virt_type qemu): %s' % (
                n.name, n.virt[1]))
        step('discover-kvm', 'cell host discovery: %s' % n.name,
             self.discover_hosts)
        step('vm-image', '%s (Debian\'s kernel, busybox initramfs) into '
             'Glance' % vmimage.NAME, self.upload_vm_image, n)

    def upload_vm_image(self, n: aio_kvm.KvmComputeNode) -> bool:
        manifest = vmimage.build_cached(log=print)
        path = os.path.join(n.s.run, 'vm-tiny.json')
        with open(path, 'w') as f:
            json.dump(manifest, f)
        props = sorted(vmimage.GLANCE_PROPERTIES.items())
        return self.cloud('vm-image', '--manifest', path, '--name',
                          vmimage.NAME,
                          *['--property=%s=%s' % kv for kv in props]) == 0

    def remove_kvm_node(self, args: typing.Sequence[str]) -> int:
        """Undo add-kvm-node on a running cloud: nothing of it stays."""
        self.need_root()
        if args:
            die('usage: tools/aio remove-kvm-node')
        n = self.kvm_node()
        if (aio_state.http_ok('http://127.0.0.1:8774/')
                and os.path.exists(self.s.clouds_yaml)):
            self.state.run_step(
                'forget-kvm', 'deleting the servers on %s, its service and '
                'the %s images' % (n.name, vmimage.NAME), self.cloud_ok,
                'forget-host', '--host', n.name, *vm_image_args())
        self.state.run_step('down-kvm', 'stopping %s, removing its '
                            'namespace, veth and files' % n.name,
                            self.down_kvm_node)
        say('remove-kvm-node')
        return 0

    def down_kvm_node(self) -> None:
        """The node and its files (clean), its mark, and the underlay when
        no node is left."""
        self.kvm_node().clean()
        self.state.unmark(aio_kvm.KVM_MARK)
        if not aio_nodes.marked_numbers(self.state):
            self.release_underlay()

    def release_underlay(self) -> None:
        """The host chassis's encap address back to a single-node cloud's,
        and aio-underlay gone once nothing is plugged in."""
        if self.state.marked(aio_nodes.HOST_ENCAP_MARK):
            if host.ovs_ok():
                aio_nodes.set_host_encap('127.0.0.1')
                print('host chassis ovn-encap-ip = 127.0.0.1', flush=True)
            self.state.unmark(aio_nodes.HOST_ENCAP_MARK)
        if host.ovs_ok():
            node.Underlay().release()

    # -- compute nodes (--nodes) ---------------------------------------------

    def compute_node(self, number: int) -> aio_nodes.ComputeNode:
        return aio_nodes.ComputeNode(number, self.s, TOP)

    def host_underlay(self) -> None:
        """aio-underlay with 10.250.0.1, the host chassis's Geneve
        endpoint from now on (ovn-controller updates its Encap)."""
        node.Underlay().up()
        self.state.mark(aio_nodes.HOST_ENCAP_MARK)
        aio_nodes.set_host_encap(node.UNDERLAY_HOST_IP)
        print('host chassis ovn-encap-ip = %s (on %s)' % (
            node.UNDERLAY_HOST_IP, node.UNDERLAY_BRIDGE), flush=True)

    def wait_node_compute(self, name: str, since: int, pid: int) -> bool:
        return self.cloud('wait-compute', '--timeout', '240', '--host', name,
                          '--since', str(since), '--pid', str(pid)) == 0

    def up_node(self, number: int) -> None:
        self.compute_node(number).up_compute(self.wait_node_compute)

    def node_number_arg(self, args: typing.Sequence[str]) -> int:
        """K of ``node-kill K``/``node-restart K``: a node up made."""
        made = aio_nodes.marked_numbers(self.state)
        if len(args) != 1 or not args[0].isdigit() or int(args[0]) not in made:
            die('which node? one of %s (the nodes up made)' % (
                ', '.join(str(n) for n in made) or 'none'))
        return int(args[0])

    def node_kill(self, args: typing.Sequence[str]) -> int:
        self.need_root()
        number = self.node_number_arg(args)
        killed = self.compute_node(number).crash()
        print('aio-node%d: killed %s' % (number, ', '.join(killed) or
                                         'nothing (not running)'), flush=True)
        return 0

    def node_restart(self, args: typing.Sequence[str]) -> int:
        self.need_root()
        number = self.node_number_arg(args)
        try:
            self.up_node(number)
        except aio_state.StepFailed as exc:
            print('aio-node%d: %s' % (number, exc), file=sys.stderr)
            return 1
        return 0

    def discover_hosts(self) -> None:
        sh(*self.services.nova_manage(), 'cell_v2', 'discover_hosts',
           '--verbose')

    def nodes_summary(self) -> None:
        if self.state.marked(aio_kvm.KVM_MARK):
            n = self.kvm_node()
            print('KVM node: %s (virt_type %s); VMs boot from --image %s '
                  'beside the containers' % (n.name, n.virt[0],
                                             vmimage.NAME))
            print('    virsh -c "%s" list' % n.connection_uri, flush=True)
        numbers = aio_nodes.marked_numbers(self.state)
        if not numbers:
            return
        print('Compute nodes: %s (tools/aio status); boot on one with '
              '--availability-zone nova:aio-nodeK (admin)' % ', '.join(
                  'aio-node%d' % n for n in numbers))
        for number in numbers:
            n = self.compute_node(number)
            print('    DOCKER_HOST=%s docker ps   # aio-node%d' % (
                n.docker_host, number), flush=True)

    def down_nodes(self) -> None:
        """Every node up made (its nova-compute, chassis, relay, OVS,
        engine, namespace, veth), aio-underlay, and the host chassis's
        encap address back to what a single-node cloud has."""
        if self.state.marked(aio_kvm.KVM_MARK):
            self.kvm_node().down()
            self.state.unmark(aio_kvm.KVM_MARK)
        for number in reversed(aio_nodes.marked_numbers(self.state)):
            self.compute_node(number).down()
            self.state.unmark(aio_nodes.NODE_MARK + str(number))
        self.release_underlay()

    def summary(self) -> None:
        s = self.s
        print()
        print('The cloud is up (compute_driver=%s). To use it:'
              % s.compute_driver)
        print('    source %s/demorc      # or adminrc; then e.g. openstack '
              'server list' % s.aio_dir)
        print('    export OS_CLIENT_CONFIG_FILE=%s OS_CLOUD=aio   # clouds '
              'aio, aio-admin' % s.clouds_yaml)
        print('Logs: %s/   Stop: tools/aio down   Remove state: tools/aio '
              'clean' % s.logs, flush=True)
        self.dashboard_summary()
        path = os.path.join(s.aio_dir, 'demo-server.json')
        if not os.path.exists(path) or not os.path.getsize(path):
            return
        with open(path) as f:
            server = json.load(f)
        fip = server['floating_ip']
        print('Server demo1: fixed IP %s (network private), floating IP %s '
              '(network public)' % (server['fixed_ip'], fip), flush=True)
        if s.compute_driver != 'docker.DockerDriver':
            return
        route = aio_state.output('ip', 'route', 'get', fip)
        if 'dev %s' % s.ext_bridge in route:
            if host.wait_for(host.succeeds('ping', '-c', '1', '-W', '1', fip),
                             30):
                print('    ping %s from this host: answers' % fip)
            else:
                warn("demo1's floating IP %s does not answer ping yet" % fip)
        else:
            warn('%s is not routed via %s; not pinging it' % (fip,
                                                              s.ext_bridge))
        print('    docker ps --filter label=org.openstack.nova.instance-uuid='
              '%s' % server['id'], flush=True)
        self.console_summary()

    @staticmethod
    def console_summary() -> None:
        print("    openstack console url show --serial demo1   # a shell "
              "prompt, through nova-serialproxy (ws://127.0.0.1:%d/)"
              % aio_services.SERIALPROXY_PORT)
        print("    inside it: printf 'GET /openstack/latest/meta_data.json "
              "HTTP/1.0\\r\\n\\r\\n' | nc 169.254.169.254 80   # the "
              "metadata service", flush=True)

    def dashboard_summary(self) -> None:
        s = self.s
        print('Dashboard: %s   user demo (or admin), password %s, domain '
              'Default' % (aio_horizon.url(s), s.password))
        print('    from another machine: ssh -L 8080:127.0.0.1:%d -L '
              '%d:127.0.0.1:%d root@THIS-HOST, then http://127.0.0.1:8080/'
              % (s.horizon_port, aio_services.SERIALPROXY_PORT,
                 aio_services.SERIALPROXY_PORT), flush=True)

    # -- down / clean --------------------------------------------------------

    def remove_instances(self) -> None:
        # Through the API first, so the driver unplugs ports as it
        # should...
        images = []
        if (self.state.any_running()
                and aio_state.http_ok('http://127.0.0.1:8774/')
                and os.path.exists(self.s.clouds_yaml)):
            found = self.cloud('cleanup', '--timeout', '120', capture=True)
            if found is None:
                print('API cleanup failed; removing containers directly',
                      flush=True)
            else:
                images = found.split()
        # ...then whatever is left on this host, by the driver's labels.
        ids = aio_state.output(
            'docker', 'ps', '-aq', '--filter', 'label=org.openstack.nova.host'
            '=%s' % aio_state.chassis_hostname()).split()
        if ids:
            print('removing leftover containers: %s' % '\n'.join(ids),
                  flush=True)
            subprocess.run(['docker', 'rm', '-f'] + ids)
        for image in images:
            if subprocess.run(['docker', 'rmi', 'nova-docker/glance:' + image],
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                print('removed image nova-docker/glance:%s' % image,
                      flush=True)

    def down(self) -> int:
        self.need_root()
        if not os.path.exists(self.state.started_file):
            print('tools/aio down: nothing was started (no %s)'
                  % self.state.started_file)
            return 0
        os.makedirs(self.s.logs, exist_ok=True)
        print("tools/aio down: stopping what 'tools/aio up' started",
              flush=True)
        step = self.state.run_step
        step('down-servers', 'deleting servers, their containers and loaded '
             'images', self.remove_instances)
        if (aio_nodes.marked_numbers(self.state)
                or self.state.marked(aio_kvm.KVM_MARK)
                or self.state.marked(aio_nodes.HOST_ENCAP_MARK)):
            step('down-nodes', 'stopping the compute nodes, removing their '
                 'namespaces, veths and aio-underlay', self.down_nodes)
        step('down-openstack', 'stopping the OpenStack services',
             self.services.stop_openstack)
        step('down-base', 'stopping OVN, RabbitMQ, MariaDB, dockerd (only '
             'those up started)', self.services.stop_base)
        say('down')
        return 0

    def drop_databases(self) -> bool:
        if not (self.state.marked('databases')
                or self.state.marked('db-user')):
            return True
        temporary = False
        if not host.succeeds('mysqladmin', 'ping')():
            # `down` stopped it: start it just long enough to drop ours.
            self.services.start_mysqld()
            temporary = True
            if not host.wait_for(host.succeeds('mysqladmin', 'ping'), 60):
                print('timed out after 60s waiting for MariaDB')
                return False
        for name in aio_services.DATABASES:
            sh('mysql', '-e', 'DROP DATABASE IF EXISTS aio_%s' % name)
        sh('mysql', '-e', "DROP USER IF EXISTS 'openstack'@'localhost'; "
           "DROP USER IF EXISTS 'openstack'@'127.0.0.1'")
        print('dropped the aio_* databases and the openstack user',
              flush=True)
        if temporary:
            subprocess.run(['mysqladmin', 'shutdown'])
            self.state.stop_pid('mysqld_safe')
        return True

    def clean_state(self) -> bool:
        s, marked = self.s, self.state.marked
        if not self.drop_databases():
            return False
        if marked('mariadb-cnf'):
            aio_services.remove(aio_services.MARIADB_CNF)
        for bridge in (s.ext_bridge, 'br-int'):
            if marked('bridge:' + bridge):
                if subprocess.run(['ovs-vsctl', '--if-exists', 'del-br',
                                   bridge]).returncode == 0:
                    print('deleted bridge %s' % bridge, flush=True)
        if marked('ovs-external-ids'):
            subprocess.run(['ovs-vsctl', 'remove', 'open_vswitch', '.',
                            'external_ids', 'ovn-remote', 'ovn-encap-type',
                            'ovn-encap-ip', 'ovn-bridge-datapath-type',
                            'ovn-bridge-mappings', 'ovn-cms-options'])
        for path in aio_services.OVN_DBS:
            aio_services.remove(path)
        engine.Engine(self.state).remove()
        # down stopped them; their directories (databases, images, logs).
        for number in aio_nodes.existing_numbers(s.aio_dir):
            self.compute_node(number).clean()
        kvm = self.kvm_node()
        if os.path.isdir(kvm.dir):
            kvm.clean()
        nodes_dir = os.path.join(s.aio_dir, 'nodes')
        if os.path.isdir(nodes_dir) and not os.listdir(nodes_dir):
            os.rmdir(nodes_dir)
        aio_horizon.remove_settings(s)
        for path in (s.etc, s.data, s.run,
                     os.path.join(s.aio_dir, 'stestr-repo'),
                     os.path.join(s.aio_dir, 'stestr-repo-browser')):
            shutil.rmtree(path, ignore_errors=True)
        for name in ('adminrc', 'demorc', 'clouds.yaml', 'demo-server.json'):
            aio_services.remove(os.path.join(s.aio_dir, name))
        print('state removed (kept: %s, Debian packages, %s)' % (s.venv,
                                                                 s.logs))
        return True

    def clean(self) -> int:
        self.need_root()
        self.down()
        if not os.path.exists(self.state.started_file):
            print('tools/aio clean: nothing to clean')
            return 0
        self.state.run_step('clean', 'removing databases, OVN databases, '
                            'bridges and settings up made, configs',
                            self.clean_state)
        say('clean')
        return 0

    # -- status, compute-driver ----------------------------------------------

    def status(self) -> int:
        rc = 0
        print('all-in-one in %s' % self.s.aio_dir)
        for name in ('mysqld_safe', 'containerd', 'dockerd'
                     ) + aio_state.SERVICES:
            if not self.state.marked('svc:' + name):
                continue
            pid = self.state.pid(name)
            if host.pid_alive(pid):
                print('  %s: running (pid %d)' % (name, pid))
            else:
                print('  %s: NOT RUNNING' % name)
                rc = 1
        if not os.path.exists(self.state.started_file):
            print('  not started')
            return 1
        for number in aio_nodes.marked_numbers(self.state):
            n = self.compute_node(number)
            parts = n.status()
            missing = sorted(k for k, ok in parts.items() if not ok)
            print('  node aio-node%d (%s, %s): %s' % (
                number, n.address, n.dir,
                'ok' if not missing else 'MISSING ' + ', '.join(missing)))
            for line in n.usage_lines():
                print(line)
            if missing:
                rc = 1
        if self.state.marked(aio_kvm.KVM_MARK):
            n = self.kvm_node()
            parts = n.status()
            missing = sorted(k for k, ok in parts.items() if not ok)
            print('  KVM node %s (%s, %s, virt_type %s): %s' % (
                n.name, n.address, n.dir, n.virt[0],
                'ok' if not missing else 'MISSING ' + ', '.join(missing)))
            for line in n.usage_lines():
                print(line)
            if missing:
                rc = 1
        sys.stdout.flush()
        if aio_state.http_ok('http://127.0.0.1:5000/v3'):
            if self.cloud('status') != 0:
                rc = 1
        return rc

    def restart_compute(self, nova_conf: str) -> bool:
        self.state.stop_pid('nova-compute')
        since = int(time.time())
        pid = self.state.start_svc('nova-compute',
                                   self.s.exe('nova-compute'),
                                   '--config-file', nova_conf)
        return self.cloud('wait-compute', '--timeout', '180', '--since',
                          str(since), '--pid', str(pid)) == 0

    def compute_driver(self, args: typing.Sequence[str]) -> int:
        """Switch nova-compute to another driver (same host and node
        identity): benchmarks/boot.py measures DockerDriver against Nova's
        fake driver."""
        self.need_root()
        if not args:
            die('usage: tools/aio compute-driver DRIVER')
        driver = args[0]
        nova_conf = os.path.join(self.s.etc, 'nova/nova.conf')
        if not os.path.exists(nova_conf):
            die('the all-in-one is not up')
        with open(nova_conf) as f:
            text = f.read()
        with open(nova_conf, 'w') as f:
            f.write(re.sub(r'(?m)^compute_driver = .*$',
                           lambda m: 'compute_driver = ' + driver, text))
        self.state.run_step('compute-restart', 'restarting nova-compute with '
                            '%s' % driver, self.restart_compute, nova_conf)
        say('nova-compute runs %s' % driver)
        return 0

    # -- scenario, tempest ---------------------------------------------------

    def need_cloud(self) -> None:
        if not os.path.exists(self.s.clouds_yaml):
            die("the all-in-one is not up ('tools/aio up')")

    def scenario(self, args: typing.Sequence[str]) -> int:
        """A separate stestr repository and test path: the normal `stestr
        run` of tests/ never collects these (tests/scenario/__init__.py
        only loads them when NOVA_DOCKER_AIO_SCENARIO is set)."""
        self.need_cloud()
        s = self.s
        # How many compute nodes the cloud was made with: with 2 or more,
        # the multi-node tests fail (never skip) when some are missing.
        nodes = 1 + len(aio_nodes.marked_numbers(self.state))
        env = dict(NOVA_DOCKER_AIO_SCENARIO='1', AIO_NODES=str(nodes),
                   AIO_KVM_NODE=(self.kvm_node().name if self.state.marked(
                       aio_kvm.KVM_MARK) else ''))
        if list(args) == ['--mixed']:
            return self.run_suite('scenario', 'stestr-repo',
                                  s.scenario_concurrency, [MIXED_SCENARIOS],
                                  log='scenario-mixed', **env).rc
        if args and list(args) != ['--multinode']:
            return self.run_suite('scenario', 'stestr-repo',
                                  s.scenario_concurrency, args, **env).rc
        select = [MULTINODE_SCENARIOS] if args else []
        # The tests that take a node down (evacuate) alone, after the
        # others, which need every node up.
        result = self.run_suite(
            'scenario', 'stestr-repo', s.scenario_concurrency,
            select + ['--exclude-regex', NOT_BY_DEFAULT], **env)
        if nodes >= 2:
            result += self.run_suite('scenario', 'stestr-repo', '1',
                                     [SOLO_SCENARIOS], log='scenario-alone',
                                     **env)
            print('%d passed, %d failed' % result, flush=True)
        return result.rc

    def browser(self, args: typing.Sequence[str]) -> int:
        """The dashboard driven by Debian's headless chromium
        (tests/browser, loaded only with NOVA_DOCKER_AIO_BROWSER set), one
        test at a time; screenshots in LOGS/browser/."""
        self.need_root()
        self.need_cloud()
        s = self.s
        os.makedirs(s.logs, exist_ok=True)
        self.state.run_step('browser-packages', 'Debian packages: %s'
                            % ' '.join(BROWSER_DEBS), install_browser)
        shots = os.path.join(s.logs, 'browser')
        shutil.rmtree(shots, ignore_errors=True)
        return self.run_suite('browser', 'stestr-repo-browser', '1', args,
                              NOVA_DOCKER_AIO_BROWSER='1',
                              AIO_BROWSER_SHOTS=shots,
                              AIO_HORIZON_URL=aio_horizon.url(s),
                              AIO_PASSWORD=s.password).rc

    def run_suite(self, name: str, repo: str, concurrency: str,
                  args: typing.Sequence[str], log: str = '',
                  **env: str) -> SuiteResult:
        """tests/NAME with stestr (repository AIO_DIR/REPO), output in
        LOGS/NAME.log (or LOG.log); prints and returns its count (a run
        that ended without its totals counts one failure more)."""
        s = self.s
        out = os.path.join(s.logs, '%s.log' % (log or name))
        os.makedirs(os.path.join(s.aio_dir, repo), exist_ok=True)
        os.makedirs(s.logs, exist_ok=True)
        os.environ.update(dict(self.cloud_env(), AIO_DIR=s.aio_dir,
                               AIO_EXT_BRIDGE=s.ext_bridge, **env))
        runtests.tee([s.exe('stestr'), '--test-path', './tests/' + name,
                      '--top-dir', './', '--repo-url',
                      os.path.join(s.aio_dir, repo), 'run',
                      '--concurrency', concurrency] + list(args),
                     out, cwd=TOP)
        with open(out, errors='replace') as f:
            totals = runtests.stestr_totals(f.read())
        passed = totals['Passed'] if totals else 0
        failed = totals['Failed'] if totals else 0
        with open(out, errors='replace') as f:
            if 'Totals' not in f.read():
                failed += 1
        print()
        print('%d passed, %d failed' % (passed, failed), flush=True)
        return SuiteResult(passed, failed)

    def write_tempest_conf(self) -> None:
        s = self.s
        ws = s.tempest_ws
        if not os.path.exists(os.path.join(ws, '.stestr.conf')):
            shutil.rmtree(ws, ignore_errors=True)
            sh(os.path.join(s.tempest_venv, 'bin/tempest'), 'init',
               '--workspace-path', os.path.join(s.aio_dir,
                                                'tempest-workspace.yaml'), ws)
        os.makedirs(os.path.join(ws, 'logs'), exist_ok=True)
        conf = os.path.join(ws, 'etc/tempest.conf')
        sh(s.exe('python'), os.path.join(TOP, 'tools/ndtools',
                                         'tempest_conf.py'),
           '--output', conf, '--password', s.password, '--nova-conf',
           os.path.join(s.etc, 'nova/nova.conf'), '--log-dir',
           os.path.join(ws, 'logs'), env=self.cloud_env())
        with open(conf) as f:
            print(f.read(), end='')

    def tempest(self, args: typing.Sequence[str]) -> int:
        """Tempest, the community's test suite for OpenStack clouds,
        against the running all-in-one. The selection is
        tools/tempest/include.txt minus tools/tempest/exclude.txt (or REGEX
        instead of include.txt); the configuration is written from the
        cloud itself by tools/ndtools/tempest_conf.py on every run."""
        s = self.s
        self.need_cloud()
        if not aio_state.http_ok('http://127.0.0.1:8774/'):
            die("Nova's API does not answer: is the all-in-one up? "
                "('tools/aio status')")
        os.makedirs(s.logs, exist_ok=True)
        self.state.run_step('tempest-install', 'Tempest in %s (pinned by '
                            'tools/tempest/constraints.txt)' % s.tempest_venv,
                            aio_services.install_tempest, s, TOP)
        self.state.run_step('tempest-config', '%s/etc/tempest.conf, written '
                            'from the running cloud' % s.tempest_ws,
                            self.write_tempest_conf)
        select = ['--include-list', os.path.join(TEMPEST_DIR, 'include.txt')]
        if list(args) == ['--multinode']:
            select = ['--regex', MULTINODE_TEMPEST]
        elif args:
            select = ['--regex', args[0]]
        out = os.path.join(s.logs, 'tempest-run.log')
        start = time.time()
        say('tempest: running %s minus tools/tempest/exclude.txt, concurrency'
            ' %s' % (' '.join(args) or 'tools/tempest/include.txt',
                     s.tempest_concurrency))
        runtests.tee([os.path.join(s.tempest_venv, 'bin/tempest'), 'run']
                     + select + ['--exclude-list',
                                 os.path.join(TEMPEST_DIR, 'exclude.txt'),
                                 '--concurrency', s.tempest_concurrency],
                     out, cwd=s.tempest_ws)
        secs = int(time.time() - start)
        with open(out, errors='replace') as f:
            text = f.read()
        passed, skipped, failed = tempest_counts(text)
        print()
        print('Tempest summary: %d passed, %d skipped, %d failed in %dm%ds '
              '(config %s/etc/tempest.conf, log %s/logs/tempest.log, output '
              '%s)' % (passed, skipped, failed, secs // 60, secs % 60,
                       s.tempest_ws, s.tempest_ws, out))
        if failed:
            print('Failed tests:', flush=True)
            listing = subprocess.run(
                [os.path.join(s.tempest_venv, 'bin/stestr'), 'failing',
                 '--list'], cwd=s.tempest_ws, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True).stdout
            for line in listing.splitlines():
                print('    ' + line)
        print('%d passed, %d failed' % (passed, failed), flush=True)
        return 0 if failed == 0 and passed > 0 else 1

    def install(self) -> int:
        self.need_root()
        os.makedirs(self.s.logs, exist_ok=True)
        self.state.run_step('packages', 'Debian packages',
                            aio_services.install_debs, self.s)
        self.state.run_step('venv', 'Python venv', aio_services.install_venv,
                            self.s, TOP)
        return 0


def set_stop_signal(tag: str, stop_signal: str) -> None:
    """Give the local image ``tag`` a STOPSIGNAL, which ``docker import
    --change`` cannot set: a one-line build on top of it (the classic
    builder, which needs no BuildKit and pulls nothing; no network: the
    engine has no bridge)."""
    sh('docker', 'build', '--quiet', '--network', 'none', '--tag', tag, '-',
       input=('FROM %s\nSTOPSIGNAL %s\n' % (tag, stop_signal)).encode(),
       env=dict(os.environ, DOCKER_BUILDKIT='0'))


def install_browser() -> bool:
    """chromium and its WebDriver, from Debian (never a download at run
    time)."""
    missing = host.missing_packages(
        (p, lambda p=p: host.dpkg_installed(p)) for p in BROWSER_DEBS)
    if not missing:
        print('all present', flush=True)
        return True
    return host.apt_install(missing, recommends=False)


def tempest_counts(output: str) -> typing.Tuple[int, int, int]:
    """(passed, skipped, failed) from Tempest's stestr totals; an
    unexpected success is a failure, and no totals at all (Tempest
    crashed, nothing selected) is one more."""
    def count(label: str) -> int:
        found = re.findall(r'^ - %s: (\d+)' % label, output, re.MULTILINE)
        return int(found[-1]) if found else 0
    failed = count('Failed') + count('Unexpected Success')
    if not re.search(r'^ - Passed: ', output, re.MULTILINE):
        failed += 1
    return count('Passed'), count('Skipped'), failed


def vm_image_args() -> typing.List[str]:
    """forget-host's --image arguments: vm-tiny's three images."""
    return ['--image=%s%s' % (vmimage.NAME, suffix)
            for suffix in ('', '-kernel', '-ramdisk')]


def parse_up(args: typing.Sequence[str]) -> typing.Tuple[int, bool]:
    """up's arguments: (node count, whether --kvm-node); ValueError
    else."""
    args = list(args)
    return (parse_nodes([a for a in args if a != '--kvm-node']),
            '--kvm-node' in args)


def parse_nodes(args: typing.Sequence[str]) -> int:
    """``--nodes N`` or ``--nodes=N`` (default 1); ValueError else."""
    count = 1
    args = list(args)
    while args:
        arg = args.pop(0)
        if arg == '--nodes' and args:
            value = args.pop(0)
        elif arg.startswith('--nodes='):
            value = arg.split('=', 1)[1]
        else:
            raise ValueError('unknown argument %r' % arg)
        if not value.isdigit():
            raise ValueError('--nodes wants a number, not %r' % value)
        count = int(value)
    return count


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args else ''
    aio = AllInOne(aio_state.Settings())
    commands = {
        'up': lambda: aio.up(args), 'down': aio.down, 'clean': aio.clean,
        'add-nodes': lambda: aio.add_nodes(args),
        'add-kvm-node': lambda: aio.add_kvm_node(args),
        'remove-kvm-node': lambda: aio.remove_kvm_node(args),
        'status': aio.status, 'install': aio.install,
        'scenario': lambda: aio.scenario(args),
        'browser': lambda: aio.browser(args),
        'tempest': lambda: aio.tempest(args),
        'compute-driver': lambda: aio.compute_driver(args),
        'node-kill': lambda: aio.node_kill(args),
        'node-restart': lambda: aio.node_restart(args),
    }
    if command not in commands:
        print(__doc__.strip())
        return 2
    return commands[command]()


if __name__ == '__main__':
    sys.exit(main())
