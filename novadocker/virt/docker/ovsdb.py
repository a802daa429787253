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

"""OVSDB over ovsdbapp's native IDL (no ovs-vsctl).

Lookups read the local IDL replica of the Bridge/Port/Interface tables
(one connection per :class:`OVSDB` object, opened on first use), so they
cost no round trip to ovsdb-server: whether a port record exists before a
plug decides it must first clear stale state, the interfaces a reaped
instance left. The one write is a plain port's add (``add_port``: one
transaction, as os-vif's own); os-vif does the rest of the OVS side.
"""

import threading
import typing

from nova import exception
from nova.i18n import _
from ovsdbapp.backend.ovs_idl import connection
from ovsdbapp.schema.open_vswitch import impl_idl

from novadocker import conf

CONF = conf.CONF
# ovsdbapp shares one connection among all OvsdbIdl subclasses of a
# process, os-vif's included: register every table os-vif needs (QoS, which
# it reads when unplugging from a system-datapath bridge), whoever connects
# first.
TABLES = ('Open_vSwitch', 'Bridge', 'Port', 'Interface', 'QoS')


class OVSDBError(exception.NovaException):
    msg_fmt = _('OVSDB at %(connection)s: %(reason)s')


class OVSDB:
    """Lookups over one ovsdbapp connection to [docker]ovsdb_connection,
    opened on first use (and again only if the option changes). The
    driver owns one and hands it to whatever reads OVSDB."""

    def __init__(self):
        self._lock = threading.Lock()
        self._api: typing.Optional[impl_idl.OvsdbIdl] = None
        self._connection: typing.Optional[str] = None

    def api(self) -> impl_idl.OvsdbIdl:
        """The ovsdbapp API on [docker]ovsdb_connection."""
        with self._lock:
            wanted = CONF.docker.ovsdb_connection
            if self._api is None or self._connection != wanted:
                idl = connection.OvsdbIdl.from_server(
                    wanted, 'Open_vSwitch', helper_tables=TABLES)
                self._api = impl_idl.OvsdbIdl(connection.Connection(
                    idl=idl, timeout=CONF.docker.ovsdb_timeout))
                self._connection = wanted
            return self._api

    def _failed(self, exc: Exception) -> OVSDBError:
        return OVSDBError(connection=CONF.docker.ovsdb_connection,
                          reason=str(exc) or type(exc).__name__)

    def port_exists(self, name: str) -> bool:
        """Whether OVS has a port record of that name, on any bridge."""
        try:
            found = self.api().db_find(
                'Port', ('name', '=', name),
                columns=['name']).execute(check_error=True)
        except Exception as exc:
            raise self._failed(exc) from exc
        return bool(found)

    def add_port(self, bridge: str, name: str,
                 external_ids: typing.Mapping[str, str]) -> None:
        """Port ``name`` on ``bridge`` (kept if there already) with its
        Interface's external_ids, in one transaction. A missing bridge
        fails it: nothing is created then."""
        try:
            api = self.api()
            with api.transaction(check_error=True) as txn:
                txn.add(api.add_port(bridge, name, may_exist=True))
                txn.add(api.db_set('Interface', name,
                                   ('external_ids', dict(external_ids))))
        except Exception as exc:
            raise self._failed(exc) from exc

    def instance_interfaces(self, instance_uuid: str) -> typing.List[dict]:
        """The OVS interfaces os-vif tagged with the instance
        (``external_ids:vm-uuid``): name, bridge (and its datapath type),
        iface-id and MAC of each."""
        try:
            api = self.api()
            rows = api.db_find(
                'Interface',
                ('external_ids', '=', {'vm-uuid': instance_uuid}),
                columns=['name', 'external_ids']).execute(check_error=True)
            found = []
            for row in rows:
                bridge = api.port_to_br(row['name']).execute(
                    check_error=True)
                datapath = api.db_get('Bridge', bridge, 'datapath_type'
                                      ).execute(check_error=True) \
                    if bridge else None
                ids = row['external_ids']
                found.append({'name': row['name'], 'bridge': bridge,
                              'datapath_type': datapath or 'system',
                              'iface_id': ids.get('iface-id'),
                              'mac': ids.get('attached-mac')})
            return found
        except Exception as exc:
            raise self._failed(exc) from exc
