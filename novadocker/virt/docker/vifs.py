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

"""Neutron ports inside an instance's network namespace.

The interface the driver uses. Work in progress: only instances without
ports are supported until the OVS plugging lands.
"""

import typing

from nova import exception
from nova.i18n import _
from nova.network import model as network_model

SUPPORTED_VIF_TYPES = (network_model.VIF_TYPE_OVS,)


def dns_config(network_info) -> typing.Tuple[typing.List[str],
                                              typing.List[str]]:
    """Nameservers of all subnets, in order, without duplicates."""
    servers: typing.List[str] = []
    for vif in network_info or []:
        for subnet in vif['network']['subnets']:
            for dns in subnet['dns']:
                if dns['address'] not in servers:
                    servers.append(dns['address'])
    return servers, []


class VIFPlugger:
    """Plugs and unplugs all ports of an instance."""

    def validate(self, instance, network_info) -> None:
        for vif in network_info or []:
            if vif['type'] not in SUPPORTED_VIF_TYPES:
                raise exception.VirtualInterfaceCreateException(
                    _('Port %(port)s has VIF type %(type)s; nova-docker '
                      'supports %(ok)s') % {
                        'port': vif['id'], 'type': vif['type'],
                        'ok': ', '.join(SUPPORTED_VIF_TYPES)})

    def plug(self, instance, network_info, netns_pid: int) -> None:
        if network_info:
            raise NotImplementedError()

    def unplug(self, instance, network_info) -> None:
        pass

    def attach(self, instance, vif, netns_pid: int) -> None:
        raise NotImplementedError()

    def detach(self, instance, vif, netns_pid: int) -> None:
        raise NotImplementedError()
