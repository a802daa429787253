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

"""What every scenario test needs: the cloud, its resources, pings.

Each test builds its own networks, routers, security groups and servers
(names start with a per-test prefix) and deletes them in cleanups, so
tests can run in parallel against one all-in-one. Traffic stays on this
machine: pings from the host go only to the external network's floating
IPs, after checking the kernel routes them to the all-in-one's own bridge;
pings between servers run inside their containers (``docker exec``).

On a multi-node all-in-one (``tools/aio up --nodes N``) a server may land
on a node ``aio-nodeK``: its containers are in that node's engine and its
ports in that node's OVS (both under AIO_DIR/nodes/nodeK), and the helpers
below look there. ``tools/aio scenario`` says how many nodes the cloud
was made with in AIO_NODES.
"""

import ipaddress
import json
import os
import random
import re
import subprocess
import time
import uuid

import docker
import openstack
import testtools

from tests.fixtures import docker as docker_fixtures

EXT_BRIDGE = os.environ.get('AIO_EXT_BRIDGE', 'br-aio-ex')
BOOT_TIMEOUT = 240
NET_TIMEOUT = 90
LABEL_INSTANCE = 'org.openstack.nova.instance-uuid'
LABEL_ROLE = 'org.openstack.nova-docker.role'
AIO_DIR = os.environ.get('AIO_DIR', '/opt/nova-docker-aio')
# The compute nodes the cloud was made with (the host is node 1).
EXPECTED_NODES = int(os.environ.get('AIO_NODES', '1') or '1')


def node_number(host: str):
    """K for a node aio-nodeK, None for the host."""
    found = re.match(r'aio-node(\d+)\Z', host or '')
    return int(found.group(1)) if found else None


def kvm_number(host: str):
    """K for the KVM node aio-kvmK (tools/aio add-kvm-node), else None."""
    found = re.match(r'aio-kvm(\d+)\Z', host or '')
    return int(found.group(1)) if found else None


def node_dir(number: int) -> str:
    return os.path.join(AIO_DIR, 'nodes', 'node%d' % number)


def kvm_dir(number: int) -> str:
    return os.path.join(AIO_DIR, 'nodes', 'kvm%d' % number)


def engine_url(host: str) -> str:
    """The Docker engine of a compute host."""
    number = node_number(host)
    if number is None:
        return docker_fixtures.api_url()
    return 'unix://' + os.path.join(node_dir(number), 'run/docker.sock')


def ovsdb_args(host: str) -> list:
    """ovs-vsctl's arguments for a compute host's Open vSwitch."""
    number, kvm = node_number(host), kvm_number(host)
    if kvm is not None:
        return ['--db=unix:' + os.path.join(kvm_dir(kvm), 'run/ovs/db.sock')]
    if number is None:
        return []
    return ['--db=unix:' + os.path.join(node_dir(number), 'run/ovs/db.sock')]


def node_hosts() -> list:
    """aio-node2.. as the cloud was made."""
    return ['aio-node%d' % k for k in range(2, EXPECTED_NODES + 1)]


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True,
                          timeout=60)


def poll(predicate, timeout: float, interval: float = 1.0):
    """The first truthy value of predicate(), or None at the deadline."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value or time.time() > deadline:
            return value
        time.sleep(interval)


class ScenarioTestCase(testtools.TestCase):
    """A test against the live all-in-one, as its demo user."""

    def setUp(self):
        super().setUp()
        self.conn = openstack.connect(cloud='aio')
        self.admin = openstack.connect(cloud='aio-admin')
        self.prefix = 'scn-%s' % uuid.uuid4().hex[:8]
        self.image = self.conn.image.find_image('busybox',
                                                ignore_missing=False)
        self.flavor = self.conn.compute.find_flavor('m1.tiny',
                                                    ignore_missing=False)
        self.public = self.conn.network.find_network('public',
                                                     ignore_missing=False)
        hosts = [svc.host for svc in self.admin.compute.services(
            binary='nova-compute')]
        # The host's own nova-compute (node 1), not a node's.
        self.compute_host = next(
            (h for h in hosts if node_number(h) is None
             and kvm_number(h) is None), hosts[0])
        # The all-in-one's engine: the host's.
        self.docker = docker_fixtures.docker_api()
        self._engines = {docker_fixtures.api_url(): self.docker}

    # -- resources ---------------------------------------------------------

    def name(self, what: str) -> str:
        return '%s-%s' % (self.prefix, what)

    @staticmethod
    def random_cidr() -> str:
        return '10.%d.%d.0/24' % (random.randint(100, 250),
                                  random.randint(0, 255))

    def make_network(self, what: str, router=None, gateway=True):
        """A network with one subnet; attached to ``router`` if given."""
        net = self.conn.network.create_network(name=self.name(what))
        self.addCleanup(self.admin.network.delete_network, net,
                        ignore_missing=True)
        subnet = self.conn.network.create_subnet(
            network_id=net.id, name=self.name(what), ip_version=4,
            cidr=self.random_cidr(),
            **({} if gateway else {'gateway_ip': None}))
        self.addCleanup(self.admin.network.delete_subnet, subnet,
                        ignore_missing=True)
        if router is not None:
            self.route(router, subnet)
        return net, subnet

    def make_router(self, what='router'):
        """A router with its gateway on the external network."""
        router = self.conn.network.create_router(
            name=self.name(what),
            external_gateway_info={'network_id': self.public.id})
        self.addCleanup(self.admin.network.delete_router, router,
                        ignore_missing=True)
        return router

    def route(self, router, subnet):
        self.conn.network.add_interface_to_router(router,
                                                  subnet_id=subnet.id)
        self.addCleanup(self._remove_interface, router, subnet)

    def _remove_interface(self, router, subnet):
        try:
            self.conn.network.remove_interface_from_router(
                router, subnet_id=subnet.id)
        except openstack.exceptions.NotFoundException:
            pass

    def make_security_group(self, icmp=True, ssh=True):
        """Returns (group, icmp rule or None)."""
        sg = self.conn.network.create_security_group(name=self.name('sg'))
        self.addCleanup(self.admin.network.delete_security_group, sg,
                        ignore_missing=True)
        icmp_rule = None
        if icmp:
            icmp_rule = self.allow_icmp(sg)
        if ssh:
            self.conn.network.create_security_group_rule(
                security_group_id=sg.id, direction='ingress',
                ethertype='IPv4', protocol='tcp', port_range_min=22,
                port_range_max=22)
        return sg, icmp_rule

    def allow_icmp(self, sg):
        return self.conn.network.create_security_group_rule(
            security_group_id=sg.id, direction='ingress', ethertype='IPv4',
            protocol='icmp')

    def boot(self, what: str, networks, sg=None, image=None, wait=True,
             **extra):
        """A server on ``networks`` (networks or ports), ACTIVE;
        ``extra``: more create_server arguments (key_name, user_data...)."""
        nics = []
        for item in networks:
            if item.__class__.__name__ == 'Port':
                nics.append({'port': item.id})
            else:
                nics.append({'uuid': item.id})
        kwargs = dict(extra)
        if sg is not None:
            kwargs['security_groups'] = [{'name': sg.name}]
        server = self.conn.compute.create_server(
            name=self.name(what), image_id=(image or self.image).id,
            flavor_id=self.flavor.id, networks=nics, **kwargs)
        self.addCleanup(self.delete_server, server)
        if wait:
            server = self.wait_status(server, 'ACTIVE')
        return server

    def wait_status(self, server, status: str, timeout=BOOT_TIMEOUT):
        def check():
            current = self.conn.compute.get_server(server.id)
            if current.status == 'ERROR' and status != 'ERROR':
                self.fail('server %s went to ERROR: %s' % (
                    current.name, (current.fault or {}).get('message')))
            if current.status == status and not current.task_state:
                return current
            return None
        found = poll(check, timeout, 0.5)
        if found is None:
            current = self.conn.compute.get_server(server.id)
            self.fail('server %s is %s/%s, not %s after %ds' % (
                current.name, current.status, current.task_state, status,
                timeout))
        return found

    def delete_server(self, server):
        try:
            self.conn.compute.delete_server(server.id)
            self.conn.compute.wait_for_delete(server, interval=0.5,
                                              wait=BOOT_TIMEOUT)
        except openstack.exceptions.NotFoundException:
            pass

    def ports_of(self, server) -> list:
        return list(self.admin.network.ports(device_id=server.id))

    def fixed_ip(self, server, network) -> str:
        for port in self.ports_of(server):
            if port.network_id == network.id:
                return port.fixed_ips[0]['ip_address']
        self.fail('server %s has no port on %s' % (server.name,
                                                   network.name))

    def add_floating_ip(self, server, network=None) -> str:
        ports = [p for p in self.ports_of(server)
                 if network is None or p.network_id == network.id]
        fip = self.conn.network.create_ip(
            floating_network_id=self.public.id, port_id=ports[0].id)
        self.addCleanup(self.admin.network.delete_ip, fip,
                        ignore_missing=True)
        return fip.floating_ip_address

    def addresses(self, server) -> dict:
        """{port id: (mac, [fixed IPs])} as Neutron sees them."""
        return {p.id: (p.mac_address,
                       sorted(ip['ip_address'] for ip in p.fixed_ips))
                for p in self.ports_of(server)}

    # -- the host side -------------------------------------------------------

    def host_of(self, server) -> str:
        """The compute host Nova put the server on."""
        return self.admin.compute.get_server(server.id).compute_host

    def all_hosts(self) -> list:
        return [self.compute_host] + node_hosts()

    def docker_of(self, server):
        """An API client of the engine the server runs in."""
        url = engine_url(self.host_of(server))
        if url not in self._engines:
            self._engines[url] = docker.APIClient(
                base_url=url, version='auto', timeout=120)
        return self._engines[url]

    def docker_cli(self, host: str, *args: str) -> subprocess.CompletedProcess:
        return run('docker', '-H', engine_url(host), *args)

    def containers(self, server, role='workload') -> list:
        out = self.docker_cli(
            self.host_of(server), 'ps', '-aq', '--filter',
            'label=%s=%s' % (LABEL_INSTANCE, server.id),
            '--filter', 'label=%s=%s' % (LABEL_ROLE, role)).stdout
        return out.split()

    def inspect(self, server, template: str) -> str:
        """docker inspect -f TEMPLATE of the server's workload."""
        ids = self.containers(server)
        return self.docker_cli(self.host_of(server), 'inspect', '-f',
                               template, ids[0]).stdout

    def all_containers(self, server_id: str, hosts=None) -> list:
        """The server's containers in every engine of the cloud (or of
        ``hosts``): the server may be gone."""
        found = []
        for host in hosts or self.all_hosts():
            found += self.docker_cli(host, 'ps', '-aq', '--filter', 'label='
                                     '%s=%s' % (LABEL_INSTANCE, server_id)
                                     ).stdout.split()
        return found

    def container_exec(self, server, *cmd,
                       check=False) -> docker_fixtures.ExecResult:
        """Exit code and output of a command in the server's workload."""
        ids = self.containers(server)
        self.assertEqual(1, len(ids), 'workload containers of %s' %
                         server.name)
        return docker_fixtures.exec_in(self.docker_of(server), ids[0], *cmd,
                                       check=check)

    def container_ping(self, server, address: str) -> bool:
        result = self.container_exec(server, 'ping', '-c', '1', '-W', '1',
                                     address)
        return result.exit_code == 0

    def ovs_interfaces(self, port_id: str, hosts=None) -> list:
        """The port's interfaces in every OVS of the cloud (or of
        ``hosts``)."""
        found = []
        for host in hosts or self.all_hosts():
            found += run('ovs-vsctl', *ovsdb_args(host), '--bare',
                         '--columns=name', 'find', 'Interface',
                         'external_ids:iface-id=%s' % port_id).stdout.split()
        return found

    def assertOnAioBridge(self, address: str) -> None:
        """Traffic from the host to ``address`` stays on this machine: the
        kernel routes it to the all-in-one's own bridge."""
        route = run('ip', '-j', 'route', 'get', address).stdout
        dev = json.loads(route)[0].get('dev')
        self.assertEqual(EXT_BRIDGE, dev,
                         'refusing to reach %s: routed via %s, not the '
                         'all-in-one bridge' % (address, dev))
        self.assertTrue(ipaddress.ip_address(address).is_private)

    def host_ping(self, address: str) -> bool:
        """One ping from the host, only to the all-in-one's own bridge."""
        self.assertOnAioBridge(address)
        return run('ping', '-c', '1', '-W', '1', address,
                   check=False).returncode == 0

    # -- assertions ----------------------------------------------------------

    def assertReachable(self, ping, *args, timeout=NET_TIMEOUT):
        """ping(*args) succeeds within timeout (ports bind, flows land)."""
        if not poll(lambda: ping(*args), timeout, 0.5):
            self.fail('%s%s: no answer within %ds' % (ping.__name__, args,
                                                      timeout))

    def assertUnreachable(self, ping, *args, timeout=NET_TIMEOUT):
        """ping(*args) fails, and keeps failing three times in a row."""
        if not poll(lambda: not ping(*args), timeout, 0.5):
            self.fail('%s%s: still answers after %ds' % (ping.__name__,
                                                         args, timeout))
        for _ in range(3):
            self.assertFalse(ping(*args), '%s%s answered again' % (
                ping.__name__, args))
