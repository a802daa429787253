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

Per port: a veth pair whose host end is named ``vif['devname']`` and whose
other end is ``ethN`` in the sandbox's namespace (named by the sandbox's PID;
``linux_net`` refuses the host's).
The OVS side: a plain port (``VIFOpenVSwitch`` on a bridge that exists,
no per-port bridge, dead-VLAN isolation or QoS row, which os-vif gives
every port on the kernel datapath) is added by the driver in one OVSDB
transaction with the external_ids os-vif would set (iface-id,
iface-status, attached-mac, vm-uuid): os-vif's plug makes that port
transaction too, plus a bridge transaction and a privileged MTU set the
veth does not need (it is made with its MTU). Anything else goes through
os-vif: for ``ovs_hybrid_plug`` ports (``VIFBridge``) it
builds ``qbr``/``qvb``/``qvo`` and the host end is enslaved to ``qbr``;
os-vif also does every unplug. Everything else (veth, MAC, MTU,
addresses, routes, sysctls) is ``linux_net``: netlink in a privsep context.
The routes are network_info's, plus the default route(s) and the route to
the metadata service (``metadata_route``), each via the first port that
has one.

Plugging is idempotent: a host end whose peer is a veth in the sandbox's
namespace with the port's MAC is kept and reconfigured in place; anything
else of that name (and any stale OVS port or qbr layout) is replaced.
"""

import copy
import ipaddress
import os
import threading
import typing

import os_vif
from os_vif import exception as osv_exception
from os_vif.objects import instance_info as osv_instance
from os_vif.objects import network as osv_network
from os_vif.objects import vif as osv_vif
from nova import exception
from nova.i18n import _
from nova.network import model as network_model
from nova.network import os_vif_util
from oslo_log import log as logging
from pyroute2 import NetlinkError
from vif_plug_ovs import constants as ovs_constants
from vif_plug_ovs import ovs as ovs_plugin

from novadocker import conf
from novadocker.virt.docker import linux_net
from novadocker.virt.docker import metadata_route
from novadocker.virt.docker import ovsdb

CONF = conf.CONF
LOG = logging.getLogger(__name__)

SUPPORTED_VIF_TYPES = (network_model.VIF_TYPE_OVS,)
SUPPORTED_VNIC_TYPES = (network_model.VNIC_TYPE_NORMAL,)

# Failures of one plugging step, turned into Nova exceptions.
_PLUG_ERRORS = (osv_exception.ExceptionBase, NetlinkError, OSError,
                linux_net.NetnsGone, linux_net.InvalidArgument, RuntimeError,
                exception.NovaException)


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


def _version(address: str) -> int:
    return ipaddress.ip_address(address).version


def _gateway(subnet) -> typing.Optional[str]:
    gateway = subnet.get('gateway')
    return gateway['address'] if gateway and gateway.get('address') \
        else None


def _subnets_with_ips(vif) -> list:
    return [s for s in vif['network']['subnets']
            if s.get('cidr') and any(ip['type'] == 'fixed'
                                     for ip in s['ips'])]


def default_gateways(network_info) -> typing.Dict[str, typing.Tuple]:
    """Per IP version, (port id, gateway) of the first port in
    network_info order that has a subnet gateway."""
    chosen: typing.Dict[int, typing.Tuple[str, str]] = {}
    for vif in network_info or []:
        for subnet in _subnets_with_ips(vif):
            gateway = _gateway(subnet)
            if gateway and _version(gateway) not in chosen:
                chosen[_version(gateway)] = (vif['id'], gateway)
    return chosen


def metadata_hop(vif, hops: typing.Mapping[str, str]) -> typing.Optional[str]:
    """This port's next hop to the metadata service, if one of its subnets
    has one (``hops`` from metadata_route.next_hops)."""
    for subnet in _subnets_with_ips(vif):
        if subnet['cidr'] in hops:
            return hops[subnet['cidr']]
    return None


def vif_spec(vif, ifname: typing.Optional[str],
             default_via: typing.Sequence[str] = (),
             default_if_missing: bool = False,
             metadata_via: typing.Optional[str] = None) -> dict:
    """What linux_net needs for one port (see its module docstring).

    ``default_via`` are the gateways this port carries the default
    route(s) through; ``default_if_missing`` adds them (and the metadata
    route via ``metadata_via``) only where the namespace has none yet
    (hot-plug).
    """
    addresses = []
    routes = []
    for subnet in _subnets_with_ips(vif):
        prefixlen = ipaddress.ip_network(subnet['cidr'],
                                         strict=False).prefixlen
        for ip in subnet['ips']:
            if ip['type'] == 'fixed':
                addresses.append([ip['address'], prefixlen])
        for route in subnet.get('routes') or []:
            gateway = _gateway(route)
            if gateway and route.get('cidr'):
                routes.append({'dst': route['cidr'], 'gateway': gateway,
                               'if_missing': False})
    for gateway in default_via:
        routes.append({'dst': '::/0' if _version(gateway) == 6
                       else '0.0.0.0/0',
                       'gateway': gateway, 'if_missing': default_if_missing})
    if metadata_via:
        routes.append({'dst': metadata_route.METADATA_CIDR,
                       'gateway': metadata_via,
                       'if_missing': default_if_missing})
    mtu = vif['network'].get_meta('mtu') if vif.get('network') else None
    return {'host_dev': vif['devname'], 'mac': vif['address'],
            'mtu': int(mtu) if mtu else None, 'ifname': ifname,
            'master': None, 'addresses': addresses, 'routes': routes}


def vif_specs(network_info,
              metadata_hops: typing.Mapping[str, str] = None
              ) -> typing.List[dict]:
    """Specs of all ports: eth0, eth1, ... in network_info order; the
    default route per IP version via the first port with a gateway, the
    metadata route via the first port with a hop in ``metadata_hops``."""
    gateways = default_gateways(network_info)
    metadata_hops = metadata_hops or {}
    metadata_done = False
    specs = []
    for index, vif in enumerate(network_info or []):
        via = [gw for port_id, gw in gateways.values() if port_id == vif['id']]
        hop = None if metadata_done else metadata_hop(vif, metadata_hops)
        metadata_done = metadata_done or hop is not None
        specs.append(vif_spec(vif, 'eth%d' % index, via, metadata_via=hop))
    return specs


def _os_vif_ovs_default() -> typing.Optional[str]:
    for opt in ovs_plugin.OvsPlugin.CONFIG_OPTS:
        if opt.name == 'ovsdb_connection':
            return opt.default
    return None


def _validate_vif(vif) -> None:
    if vif['type'] not in SUPPORTED_VIF_TYPES:
        raise exception.VirtualInterfaceCreateException(
            _('Port %(port)s has VIF type %(type)s; nova-docker '
              'supports %(ok)s') % {
                'port': vif['id'], 'type': vif['type'],
                'ok': ', '.join(SUPPORTED_VIF_TYPES)})
    vnic_type = vif.get('vnic_type') or network_model.VNIC_TYPE_NORMAL
    if vnic_type not in SUPPORTED_VNIC_TYPES:
        raise exception.VirtualInterfaceCreateException(
            _('Port %(port)s has vnic_type %(vnic)s; nova-docker supports '
              'only %(ok)s ports (a veth per port)') % {
                'port': vif['id'], 'vnic': vnic_type,
                'ok': ', '.join(SUPPORTED_VNIC_TYPES)})
    if not vif.get('devname') or not vif.get('address'):
        raise exception.VirtualInterfaceCreateException(
            _('Port %s has no device name or MAC address') % vif['id'])
    try:
        # What the privileged side will accept (it checks again).
        gateways = [gw for _port, gw in default_gateways([vif]).values()]
        linux_net.VifSpec.from_dict(vif_spec(vif, None, gateways))
    except ValueError as exc:     # InvalidArgument is one
        raise exception.VirtualInterfaceCreateException(
            _('Port %(port)s cannot be plugged: %(exc)s') % {
                'port': vif['id'], 'exc': exc}) from exc


class VIFPlugger:
    """Plugs and unplugs the ports of an instance.

    The driver owns one, with its OVSDB, and calls ``initialize()`` at
    start-up (a plugger never initialised does it on first use).
    """

    def __init__(self, ovsdb_api: ovsdb.OVSDB):
        self._ovsdb = ovsdb_api
        self._lock = threading.Lock()
        # The [os_vif_ovs]ovsdb_connection os-vif was loaded with.
        self._os_vif_connection: typing.Optional[str] = None

    def initialize(self) -> None:
        """Load os-vif with its OVS plugin talking to
        [docker]ovsdb_connection: at init_host (as nova-compute's main
        loads os-vif), and again only if that connection changed since.

        The plugin copies [os_vif_ovs]ovsdb_connection when it loads, and
        nova-compute loads it at start-up with the TCP default, which a
        stock Open vSwitch does not listen on. Unless the operator changed
        that option, point it at ours and reload the plugins. Every use
        checks (a string comparison): a plug never runs on a plugin loaded
        for another connection.
        """
        with self._lock:
            os_vif.initialize()   # registers [os_vif_ovs]; no-op if loaded
            current = CONF.os_vif_ovs.ovsdb_connection
            wanted = (CONF.docker.ovsdb_connection
                      if current == _os_vif_ovs_default() else current)
            if self._os_vif_connection == wanted:
                return
            if current != wanted:
                CONF.set_override('ovsdb_connection', wanted, 'os_vif_ovs')
            os_vif.initialize(reset=True)
            self._os_vif_connection = wanted

    def validate(self, instance, network_info) -> None:
        """Reject ports this driver cannot plug, before anything exists."""
        for vif in network_info or []:
            _validate_vif(vif)

    # -- helpers -----------------------------------------------------------

    def os_vif_objects(self, instance, vif):
        """The os-vif VIF and InstanceInfo for a port.

        The driver makes the host device itself, so os-vif must always add
        it to OVS (create_port), never make a tap of its own.
        """
        self.initialize()
        obj = os_vif_util.nova_to_osvif_vif(vif)
        if obj is None:
            raise exception.VirtualInterfacePlugException(
                _('Port %s cannot be converted for os-vif') % vif['id'])
        profile = obj.port_profile
        if isinstance(obj, osv_vif.VIFOpenVSwitch):
            profile.create_port = True
            if 'create_tap' in profile.fields:
                profile.create_tap = False
        if CONF.docker.integration_bridge:
            obj.network.bridge = CONF.docker.integration_bridge
            if isinstance(obj, osv_vif.VIFOpenVSwitch):
                obj.bridge_name = CONF.docker.integration_bridge
        return obj, os_vif_util.nova_to_osvif_instance(instance)

    def _plug_one(self, instance, vif, spec: dict, pid: int,
                  new_netns: bool = False) -> str:
        obj, info = self.os_vif_objects(instance, vif)
        hybrid = isinstance(obj, osv_vif.VIFBridge)
        if hybrid:
            spec = dict(spec, master=obj.bridge_name)
        self._clear_stale_ovs_state(instance, vif, spec, pid, obj, info,
                                    new_netns)
        if hybrid:
            os_vif.plug(obj, info)
            ifname = linux_net.plug_veth(pid, spec)
        else:
            ifname = linux_net.plug_veth(pid, spec)
            if not self._add_plain_ovs_port(obj, info):
                os_vif.plug(obj, info)
        LOG.debug('Port %(port)s plugged: %(host)s <-> %(ifname)s',
                  {'port': vif['id'], 'host': spec['host_dev'],
                   'ifname': ifname}, instance=instance)
        return ifname

    def _add_plain_ovs_port(self, obj, info) -> bool:
        """Add a plain port's host end to its bridge in one transaction,
        as os-vif's generic plug would; False when os-vif must plug it
        (what it does beyond that transaction, or a bridge to create)."""
        if not isinstance(obj, osv_vif.VIFOpenVSwitch):
            return False
        options = CONF.os_vif_ovs
        datapath = (obj.port_profile.datapath_type
                    if 'datapath_type' in obj.port_profile
                    and obj.port_profile.datapath_type else
                    ovs_constants.OVS_DATAPATH_SYSTEM)
        bridge = obj.network.bridge
        if (options.per_port_bridge or options.isolate_vif
                or ovs_plugin.is_trunk_bridge(bridge)
                or (options.default_qos_type and datapath
                    == ovs_constants.OVS_DATAPATH_SYSTEM)):
            return False
        try:
            self._ovsdb.add_port(bridge, obj.vif_name, {
                'iface-id': obj.port_profile.interface_id,
                'iface-status': 'active',
                'attached-mac': str(obj.address),
                'vm-uuid': info.uuid})
        except ovsdb.OVSDBError as exc:
            LOG.debug('Adding port %(port)s to %(bridge)s in one '
                      'transaction failed (%(exc)s): os-vif plugs it',
                      {'port': obj.vif_name, 'bridge': bridge, 'exc': exc})
            return False
        return True

    def _clear_stale_ovs_state(self, instance, vif, spec, pid: int, obj,
                               info, new_netns: bool = False) -> None:
        """Remove OVS state a plug must not build on.

        - A native port whose veth was lost (a restarted sandbox) leaves an
          OVS port record: OVS's userspace datapath does not pick up a new
          device under it, so the record goes first. In a ``new_netns``
          (a sandbox just made) no veth can be the port's yet: no look.
        - A port whose binding switched between hybrid and native leaves the
          other layout: the qbr/qvb/qvo devices, or the tap as an OVS port.
        Hybrid ports otherwise need nothing: qvo survives a restart and
        only the tap is recreated on qbr.
        """
        host_dev = spec['host_dev']
        if isinstance(obj, osv_vif.VIFBridge):
            if self._ovsdb.port_exists(host_dev):
                native = copy.deepcopy(vif)
                native['details'][network_model.VIF_DETAILS_OVS_HYBRID_PLUG] \
                    = False
                native_obj, _info = self.os_vif_objects(instance, native)
                os_vif.unplug(native_obj, info)
            return
        qbr = ('qbr' + vif['id'])[:network_model.NIC_NAME_LEN]
        # The record first: a local replica lookup, where the peer's is a
        # netlink dump; no record, nothing stale whatever the peer.
        if os.path.exists('/sys/class/net/%s' % qbr) or (
                self._ovsdb.port_exists(host_dev) and
                (new_netns or
                 linux_net.find_peer(pid, host_dev, spec['mac']) is None)):
            os_vif.unplug(obj, info)

    def _unplug_one(self, instance, vif) -> None:
        if not linux_net.HOST_DEV_RE.match(vif.get('devname') or ''):
            # validate() refused it: nothing was plugged, and nothing of
            # that name (another device, a bridge) is ours to remove.
            LOG.warning('Port %(port)s has a foreign device name %(dev)r: '
                        'not unplugging', {'port': vif['id'],
                                           'dev': vif.get('devname')},
                        instance=instance)
            return
        obj, info = self.os_vif_objects(instance, vif)
        os_vif.unplug(obj, info)
        # os-vif removes the host end itself only when it is the OVS port;
        # for hybrid ports the veth on qbr is ours to delete.
        linux_net.delete_link(vif['devname'])

    # -- interface used by the driver --------------------------------------

    def plug(self, instance, network_info, netns_pid: int,
             new_netns: bool = False) -> None:
        """Plug every port into the sandbox namespace. Idempotent.

        ``new_netns``: the sandbox was just made (a spawn), so none of the
        ports can be in it yet.
        """
        if not network_info:
            return
        try:
            self.validate(instance, network_info)
        except exception.VirtualInterfaceCreateException as exc:
            # What nova-compute expects of plug_vifs for a port whose
            # binding failed: it puts the instance in ERROR.
            raise exception.VirtualInterfacePlugException(
                exc.format_message()) from exc
        if not netns_pid:
            raise exception.VirtualInterfacePlugException(
                _('the network sandbox of instance %s is not running')
                % instance.uuid)
        try:
            linux_net.check_pid(netns_pid)
        except linux_net.InvalidArgument as exc:
            raise exception.VirtualInterfacePlugException(
                _('instance %(uuid)s: %(exc)s') % {
                    'uuid': instance.uuid, 'exc': exc}) from exc
        specs = vif_specs(network_info,
                          metadata_route.next_hops(network_info))
        for vif, spec in zip(network_info, specs):
            try:
                self._plug_one(instance, vif, spec, netns_pid, new_netns)
            except _PLUG_ERRORS as exc:
                LOG.error('Plugging port %(port)s failed: %(exc)s',
                          {'port': vif['id'], 'exc': exc},
                          instance=instance)
                raise exception.VirtualInterfacePlugException(
                    _('plugging port %(port)s failed: %(exc)s') % {
                        'port': vif['id'], 'exc': exc}) from exc

    def unplug(self, instance, network_info) -> None:
        """Remove the host side of every port (the veth, the OVS port, the
        qbr layout). Tries every port; re-raises the first failure."""
        failure = None
        for vif in network_info or []:
            if vif['type'] not in SUPPORTED_VIF_TYPES or not vif.get(
                    'devname'):
                continue    # rejected by validate: nothing was created
            try:
                self._unplug_one(instance, vif)
            except _PLUG_ERRORS as exc:
                LOG.error('Unplugging port %(port)s failed: %(exc)s',
                          {'port': vif['id'], 'exc': exc},
                          instance=instance)
                failure = failure or exception.VirtualInterfaceUnplugException(
                    reason='port %s: %s' % (vif['id'], exc))
        if failure is not None:
            raise failure

    def set_carrier(self, instance, network_info, up: bool) -> None:
        """Carrier on or off for every port of the instance (see
        linux_net.set_carrier): off while the workload is stopped or
        frozen, on again before it runs."""
        names = [vif['devname'] for vif in network_info or []
                 if vif['type'] in SUPPORTED_VIF_TYPES and vif.get('devname')]
        try:
            linux_net.set_carrier(names, up)
        except _PLUG_ERRORS as exc:
            LOG.error('Setting the ports %(state)s failed: %(exc)s',
                      {'state': 'up' if up else 'down', 'exc': exc},
                      instance=instance)
            raise exception.VirtualInterfacePlugException(
                _('setting the ports %(state)s failed: %(exc)s') % {
                    'state': 'up' if up else 'down', 'exc': exc}) from exc

    def attach(self, instance, vif, netns_pid: int) -> str:
        """Hot-plug one port as the next free ethN; returns its name.

        Its gateway becomes the default route only where the instance has
        none for that IP version. On failure nothing of it is left.
        """
        _validate_vif(vif)
        try:
            linux_net.check_pid(netns_pid)
        except linux_net.InvalidArgument as exc:
            raise exception.InterfaceAttachFailed(
                instance_uuid=instance.uuid) from exc
        gateways = [gw for _port, gw in default_gateways([vif]).values()]
        spec = vif_spec(vif, None, gateways, default_if_missing=True,
                        metadata_via=metadata_hop(
                            vif, metadata_route.next_hops([vif])))
        try:
            return self._plug_one(instance, vif, spec, netns_pid)
        except _PLUG_ERRORS as exc:
            LOG.error('Attaching port %(port)s failed: %(exc)s',
                      {'port': vif['id'], 'exc': exc}, instance=instance)
            try:
                self._unplug_one(instance, vif)
            except _PLUG_ERRORS:
                LOG.exception('Cleaning up port %s failed', vif['id'],
                              instance=instance)
            raise exception.InterfaceAttachFailed(
                instance_uuid=instance.uuid) from exc

    def detach(self, instance, vif) -> None:
        """Remove one port: both veth ends, the OVS port, any qbr layout."""
        try:
            self._unplug_one(instance, vif)
        except _PLUG_ERRORS as exc:
            LOG.error('Detaching port %(port)s failed: %(exc)s',
                      {'port': vif['id'], 'exc': exc}, instance=instance)
            raise exception.InterfaceDetachFailed(
                instance_uuid=instance.uuid) from exc

    def unplug_leftovers(self, instance_uuid: str,
                         instance_name: str = '') -> typing.List[str]:
        """Remove what a reaped instance left on the host: every OVS port
        os-vif tagged with its UUID, and for hybrid ports the qbr bridge and
        qvb/qvo pair. Its veths died with the sandbox's netns. Returns the
        OVS port names removed."""
        self.initialize()
        info = osv_instance_info(instance_uuid, instance_name)
        removed = []
        for iface in self._ovsdb.instance_interfaces(instance_uuid):
            port_id = iface['iface_id']
            if not port_id or not iface['bridge']:
                continue
            vif = osv_vif.VIFOpenVSwitch(
                id=port_id, address=iface['mac'], vif_name=iface['name'],
                plugin='ovs', network=osv_network.Network(
                    id=port_id, bridge=iface['bridge']),
                port_profile=osv_vif.VIFPortProfileOpenVSwitch(
                    interface_id=port_id,
                    datapath_type=iface['datapath_type']))
            # os-vif removes the qbr layout when qbr<port> exists, else the
            # OVS port and its device.
            os_vif.unplug(vif, info)
            removed.append(iface['name'])
        return removed


def osv_instance_info(instance_uuid: str, name: str = ''):
    return osv_instance.InstanceInfo(uuid=instance_uuid,
                                     name=name or instance_uuid)
