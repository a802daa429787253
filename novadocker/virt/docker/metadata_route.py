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

"""The next hop to the metadata service (169.254.169.254) on each subnet.

A VM learns its route to 169.254.169.254 from DHCP (option 121: Neutron
puts ``169.254.169.254/32 via <metadata port>`` in every DHCP-enabled
subnet's options). A container's addresses are static, so the driver adds
that route itself, via the same address: the subnet's IP of the network's
metadata port. With ML2/OVN that is the ``network:distributed`` port (the
OVN metadata agent's namespace answers behind it), which nova's network
model does not carry; with the DHCP agent it is the ``network:dhcp`` port,
which nova reports as the subnet's ``dhcp_server``.
"""

import ipaddress
import typing

from nova import context as nova_context
from nova.network import neutron
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

METADATA_CIDR = '169.254.169.254/32'
# Neutron's OVN driver: the metadata port of each network.
OVN_METADATA_OWNER = 'network:distributed'


def _wanted(network_info) -> typing.Dict[str, typing.List[str]]:
    """{network id: [IPv4 CIDRs]} of the DHCP-enabled subnets (a VM on a
    subnet without DHCP gets no metadata route either)."""
    wanted: typing.Dict[str, typing.List[str]] = {}
    for vif in network_info or []:
        network = vif.get('network') or {}
        for subnet in network.get('subnets') or []:
            cidr = subnet.get('cidr')
            if (cidr and subnet.get_meta('enable_dhcp')
                    and ipaddress.ip_network(cidr, strict=False).version == 4):
                wanted.setdefault(network['id'], []).append(cidr)
    return wanted


def _dhcp_servers(network_info) -> typing.Dict[str, str]:
    """What nova already knows: the DHCP agent's port, per subnet."""
    return {subnet['cidr']: subnet.get_meta('dhcp_server')
            for vif in network_info or []
            for subnet in (vif.get('network') or {}).get('subnets') or []
            if subnet.get('cidr') and subnet.get_meta('dhcp_server')}


def _ovn_metadata_ports(networks: typing.List[str]) -> list:
    client = neutron.get_client(nova_context.get_admin_context(),
                                admin=True)
    return client.list_ports(network_id=networks,
                             device_owner=OVN_METADATA_OWNER,
                             fields=['network_id', 'fixed_ips'])['ports']


def next_hops(network_info) -> typing.Dict[str, str]:
    """{subnet CIDR: metadata next hop} for the DHCP-enabled IPv4 subnets
    of network_info; a subnet whose hop cannot be found is left out (its
    instance boots without the route, and logs why)."""
    wanted = _wanted(network_info)
    known = _dhcp_servers(network_info)
    hops = {cidr: known[cidr] for cidrs in wanted.values() for cidr in cidrs
            if cidr in known}
    missing = sorted(net for net, cidrs in wanted.items()
                     if any(cidr not in hops for cidr in cidrs))
    if not missing:
        return hops
    try:
        ports = _ovn_metadata_ports(missing)
    except Exception as exc:
        LOG.warning('No route to the metadata service: looking up the '
                    'metadata ports of networks %(nets)s failed: %(exc)s',
                    {'nets': ', '.join(missing), 'exc': exc})
        return hops
    for port in ports:
        for fixed in port.get('fixed_ips') or []:
            address = ipaddress.ip_address(fixed['ip_address'])
            for cidr in wanted.get(port['network_id'], []):
                if cidr not in hops and address in ipaddress.ip_network(
                        cidr, strict=False):
                    hops[cidr] = str(address)
    return hops
