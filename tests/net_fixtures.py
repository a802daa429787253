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

"""Networking test helpers: a private OVS bridge, Neutron-like VIFs,
privsep in-process, and a leak check for veths, OVS ports and qbr bridges.

The checks read the host with ``ovs-vsctl`` and ``/sys/class/net``, i.e.
independently of the code under test. Bridges have no uplink; addresses
come from the documentation/ULA ranges and live only in the namespaces of
the test's containers.
"""

import ipaddress
import json
import os
import subprocess
import typing
import uuid

import fixtures
from nova.network import model as network_model
from vif_plug_ovs import privsep as os_vif_privsep

from novadocker.virt.docker import privsep as nd_privsep

# Address plans used by the tests (never routed anywhere).
NET_A = ('10.251.%d.0/24', 'fd00:251:%x::/64')


def ovs_vsctl(*args: str) -> str:
    return subprocess.run(['ovs-vsctl', '--timeout=30'] + list(args),
                          check=True, capture_output=True,
                          text=True).stdout.strip()


def link_exists(name: str) -> bool:
    return os.path.exists('/sys/class/net/%s' % name)


def link_master(name: str) -> typing.Optional[str]:
    path = '/sys/class/net/%s/master' % name
    return os.path.basename(os.readlink(path)) if os.path.exists(path) \
        else None


def link_mtu(name: str) -> int:
    with open('/sys/class/net/%s/mtu' % name) as handle:
        return int(handle.read())


def bridge_ports(bridge: str) -> typing.List[str]:
    out = ovs_vsctl('list-ports', bridge)
    return out.split() if out else []


def port_bridge(port: str) -> typing.Optional[str]:
    try:
        return ovs_vsctl('port-to-br', port)
    except subprocess.CalledProcessError:
        return None


def interface_external_ids(name: str) -> dict:
    out = ovs_vsctl('--format=json', '--columns=external_ids', 'list',
                    'Interface', name)
    cell = json.loads(out)['data'][0][0]   # ["map", [[k, v], ...]]
    return dict(cell[1])


class OVSBridge(fixtures.Fixture):
    """A private userspace-datapath bridge with a random name, no uplink."""

    def _setUp(self):
        self.name = 'ndbr%s' % uuid.uuid4().hex[:8]
        ovs_vsctl('add-br', self.name, '--', 'set', 'Bridge', self.name,
                  'datapath_type=netdev')
        self.addCleanup(self._delete)

    def _delete(self):
        leftover = bridge_ports(self.name)
        ovs_vsctl('--if-exists', 'del-br', self.name)
        if leftover:
            raise AssertionError('ports left on %s: %s'
                                 % (self.name, leftover))


class HybridFirewall(fixtures.Fixture):
    """Let bridged traffic of one tap through iptables, as Neutron's
    iptables_hybrid agent does for a port whose security group allows it.

    The host's FORWARD policy is DROP (dockerd sets it) and br_netfilter
    sends frames crossing the qbr Linux bridge through FORWARD.
    """

    def __init__(self, tap: str):
        super().__init__()
        self.tap = tap

    def _setUp(self):
        for tool in ('iptables', 'ip6tables'):
            for direction in ('--physdev-in', '--physdev-out'):
                rule = ['FORWARD', '-m', 'physdev', direction, self.tap,
                        '--physdev-is-bridged', '-j', 'ACCEPT']
                subprocess.run([tool, '-w', '-I'] + rule, check=True)
                self.addCleanup(subprocess.run, [tool, '-w', '-D'] + rule,
                                check=True)


class PrivsepInProcess(fixtures.Fixture):
    """Run nova-docker's and os-vif's privsep entrypoints in this (root)
    process, as nova's PrivsepNoHelperFixture demands of tests."""

    CONTEXTS = (nd_privsep.vif_plug, os_vif_privsep.vif_plug)

    def _setUp(self):
        for context in self.CONTEXTS:
            context.set_client_mode(False)
            self.addCleanup(context.set_client_mode, True)


class Ports:
    """Builds network_info the way Neutron + nova would for OVS ports."""

    def __init__(self, bridge: str):
        self.bridge = bridge
        self.ids: typing.List[str] = []

    def network(self, number: int = 0, mtu: int = 1450, ipv6: bool = True,
                dns: typing.Sequence[str] = ('10.251.0.53',),
                routes: typing.Sequence[typing.Tuple[str, str]] = (),
                gateway: bool = True):
        """A network with one IPv4 (+ one IPv6) subnet; returns a factory
        of ports on it, each with the next host address."""
        v4_net = ipaddress.ip_network(NET_A[0] % number)
        v6_net = ipaddress.ip_network(NET_A[1] % number)
        v4_cidr, v6_cidr = str(v4_net), str(v6_net)
        network_id = str(uuid.uuid4())
        state = {'host': 10}

        def port(active: bool = True, hybrid: bool = False,
                 vif_type: str = network_model.VIF_TYPE_OVS,
                 host: int = None) -> network_model.VIF:
            state['host'] += 1
            host_number = host or state['host']
            subnets = []
            v4 = network_model.Subnet(
                cidr=v4_cidr,
                gateway=network_model.IP(
                    address=str(v4_net[1]), type='gateway')
                if gateway else None,
                dns=[network_model.IP(address=a, type='dns') for a in dns],
                ips=[network_model.FixedIP(
                    address=str(v4_net[host_number]))],
                routes=[network_model.Route(
                    cidr=cidr, gateway=network_model.IP(address=gw,
                                                        type='gateway'))
                        for cidr, gw in routes])
            subnets.append(v4)
            if ipv6:
                subnets.append(network_model.Subnet(
                    cidr=v6_cidr,
                    gateway=network_model.IP(
                        address=str(v6_net[1]),
                        type='gateway') if gateway else None,
                    ips=[network_model.FixedIP(
                        address=str(v6_net[host_number]))]))
            network = network_model.Network(
                id=network_id, bridge=self.bridge, label='net%d' % number,
                subnets=subnets, mtu=mtu, tunneled=True)
            port_id = str(uuid.uuid4())
            self.ids.append(port_id)
            details = {network_model.VIF_DETAILS_PORT_FILTER: hybrid,
                       network_model.VIF_DETAILS_OVS_HYBRID_PLUG: hybrid,
                       network_model.VIF_DETAILS_BRIDGE_NAME: self.bridge,
                       network_model.VIF_DETAILS_OVS_DATAPATH_TYPE: 'netdev'}
            return network_model.VIF(
                id=port_id, address='fa:16:3e:%02x:%02x:%02x' % tuple(
                    uuid.uuid4().bytes[:3]),
                network=network, type=vif_type, details=details,
                devname=('tap' + port_id)[:network_model.NIC_NAME_LEN],
                ovs_interfaceid=port_id, active=active,
                vnic_type=network_model.VNIC_TYPE_NORMAL,
                delegate_create=True, preserve_on_delete=True)
        return port


def device_names(port_id: str) -> typing.List[str]:
    """Host devices nova-docker/os-vif may create for a port."""
    return [(prefix + port_id)[:network_model.NIC_NAME_LEN]
            for prefix in ('tap', 'qbr', 'qvb', 'qvo')]


LEAK_KINDS = ('container', 'image', 'veth', 'OVS port', 'qbr', 'netns')


def leak_counts(docker_check, net_check, instances=None,
                vifs=None) -> dict:
    """The leak count of the fault matrix, every kind of LEAK_KINDS: from a
    DockerLeakCheck and a NetworkLeakCheck, everything the test made or
    only what belongs to ``instances`` and ``vifs`` (a failed spawn's, while
    other instances run)."""
    total = dict.fromkeys(LEAK_KINDS, 0)
    total.update(docker_check.counts(
        None if instances is None else [i.uuid for i in instances]))
    total.update(net_check.counts(
        None if vifs is None else [vif['id'] for vif in vifs]))
    return total


class NetworkLeakCheck(fixtures.Fixture):
    """Fail the test if devices, OVS ports or netns entries of its ports
    remain. ``port_ids`` is read at cleanup time (tests add to it)."""

    def __init__(self, port_ids: typing.List[str]):
        super().__init__()
        self.port_ids = port_ids

    def leftovers(self, port_ids=None) -> typing.List[str]:
        found = []
        netns = set(os.listdir('/var/run/netns')) \
            if os.path.isdir('/var/run/netns') else set()
        for port_id in self.port_ids if port_ids is None else port_ids:
            for name in device_names(port_id):
                if link_exists(name):
                    found.append('device %s' % name)
                bridge = port_bridge(name)
                if bridge:
                    found.append('OVS port %s on %s' % (name, bridge))
            found += ['netns %s' % n for n in netns if port_id[:11] in n]
        return found

    def counts(self, port_ids=None) -> dict:
        """Leftovers by kind: host veth ends (tap/qvb/qvo), qbr bridges,
        OVS port records, netns entries; of ``port_ids`` if given."""
        found = self.leftovers(port_ids)
        return {
            'veth': len([f for f in found if f.startswith('device ')
                         and not f.startswith('device qbr')]),
            'qbr': len([f for f in found if f.startswith('device qbr')]),
            'OVS port': len([f for f in found if f.startswith('OVS port')]),
            'netns': len([f for f in found if f.startswith('netns ')])}

    def _setUp(self):
        self.addCleanup(self._check)

    def _check(self):
        leftovers = self.leftovers()
        for port_id in self.port_ids:
            for name in device_names(port_id):
                bridge = port_bridge(name)
                if bridge:
                    ovs_vsctl('--if-exists', 'del-port', bridge, name)
                if link_exists(name):
                    subprocess.run(['ip', 'link', 'del', name],
                                   capture_output=True)
        if leftovers:
            raise AssertionError('test left behind: %s'
                                 % ', '.join(leftovers))
