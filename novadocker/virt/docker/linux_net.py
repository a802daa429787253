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

"""Privileged netlink work: veth pairs into an instance's network namespace.

Each privileged step is one privsep call doing a whole step over netlink
(pyroute2) in-process: no ``ip``/``ethtool``/``sysctl`` process is forked.
The namespace is named by the sandbox's PID; the privileged side opens
``/proc/<pid>/ns/net`` itself, refuses the host's namespace (its own, its
thread's, PID 1's) and enters it with ``setns`` by the calling *thread* only
(network namespaces are per thread), which then returns to its own
namespace; nothing is mounted or linked under ``/var/run/netns``.

What crosses the privsep channel is a PID (``int``), device names and a
VIF spec as a plain dict, and the privileged side trusts none of it: every
entrypoint parses its arguments into typed values (``VifSpec``) and refuses
(``InvalidArgument``) anything outside the driver's own names and sane
values. The public functions parse the same way before crossing, for a
clean error, and answer what needs no privilege (does the host device
exist?) without crossing at all. A spec (built by ``vifs.vif_spec``)::

    {'host_dev': 'tapXXXXXXXX-XX', 'mac': 'fa:16:3e:..', 'mtu': 1450,
     'ifname': 'eth0',             # preferred name inside; None = next free
     'master': None,               # 'qbr...' for hybrid plug
     'addresses': [['10.0.0.5', 24], ['fd00::5', 64]],
     'routes': [{'dst': '0.0.0.0/0', 'gateway': '10.0.0.1',
                 'if_missing': False},   # True: only where none exists
                {'dst': '169.254.169.254/32', 'gateway': '10.0.0.2',
                 'if_missing': False}, ...]}
"""

import contextlib
import ctypes
import dataclasses
import errno
import ipaddress
import os
import re
import socket
import typing

from os_vif import exception as osv_exception
from oslo_log import log as logging
from pyroute2.ethtool import ioctl as ethtool_ioctl
from pyroute2 import IPRoute
from pyroute2 import NetlinkError
from vif_plug_ovs import linux_net as ovs_linux_net

from novadocker.virt.docker import privsep

LOG = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
CLONE_NEWUTS = 0x04000000
# /proc/<pid>/ns/<kind> -> setns's nstype (identity.py joins UTS ones).
_NSTYPES = {'net': CLONE_NEWNET, 'uts': CLONE_NEWUTS}
IFNAME_PREFIX = 'eth'
_RT_SCOPE_LINK = 253

# The only names the privileged side touches: nova names a port's host
# device 'tap' + port id cut to NIC_NAME_LEN (14), os-vif its hybrid bridge
# 'qbr' + port id the same way; inside the sandbox the ports are ethN.
NIC_NAME_LEN = 14
_PORT_ID_CHARS = r'[0-9A-Za-z_-]{1,%d}' % (NIC_NAME_LEN - 3)
HOST_DEV_RE = re.compile(r'tap%s\Z' % _PORT_ID_CHARS)
BRIDGE_RE = re.compile(r'qbr%s\Z' % _PORT_ID_CHARS)
INSIDE_RE = re.compile(r'%s(0|[1-9][0-9]{0,4})\Z' % IFNAME_PREFIX)
MAC_RE = re.compile(r'[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z')
MTU_MIN, MTU_MAX = 68, 65535
PID_MAX = 1 << 22             # the kernel's PID_MAX_LIMIT
MAX_ADDRESSES = 64
MAX_ROUTES = 256

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsGone(Exception):
    """The namespace's holder process is gone (sandbox not running)."""


class InvalidArgument(ValueError):
    """An argument the privileged side refuses (not one the driver makes).

    Crosses the privsep channel as itself (oslo.privsep re-raises it by
    class name), so callers see the same error either side.
    """


def _refuse(what: str, value: typing.Any) -> typing.NoReturn:
    raise InvalidArgument('refused %s: %r' % (what, value))


def _is_int(value: typing.Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_pid(pid: typing.Any) -> int:
    """A sandbox PID: an int, never PID 0 or 1 (the host's init)."""
    if not _is_int(pid) or not 1 < pid <= PID_MAX:
        _refuse('sandbox PID', pid)
    return pid


def _check_name(what: str, pattern: typing.Pattern, name: typing.Any) -> str:
    if not isinstance(name, str) or not pattern.match(name):
        _refuse(what, name)
    return name


def check_host_dev(name: typing.Any) -> str:
    """A port's host device: tap + port id (nothing else on the host)."""
    return _check_name('host device', HOST_DEV_RE, name)


def check_bridge(name: typing.Any) -> str:
    """os-vif's per-port Linux bridge of a hybrid plug: qbr + port id."""
    return _check_name('bridge', BRIDGE_RE, name)


def check_inside(name: typing.Any) -> str:
    """An interface name inside the sandbox: ethN."""
    return _check_name('interface name', INSIDE_RE, name)


def check_mac(mac: typing.Any) -> str:
    """A unicast, non-zero Ethernet address, returned lower case."""
    if not isinstance(mac, str) or not MAC_RE.match(mac.lower()):
        _refuse('MAC address', mac)
    mac = mac.lower()
    if int(mac[:2], 16) & 1 or mac == '00:00:00:00:00:00':
        _refuse('MAC address (not unicast)', mac)
    return mac


def check_mtu(mtu: typing.Any) -> typing.Optional[int]:
    if mtu is None:
        return None
    if not _is_int(mtu) or not MTU_MIN <= mtu <= MTU_MAX:
        _refuse('MTU', mtu)
    return mtu


_Interface = typing.Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]
_Network = typing.Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
_Address = typing.Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def _address(value: typing.Any) -> _Address:
    if not isinstance(value, str):
        _refuse('IP address', value)
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        _refuse('IP address', value)
    if address.is_multicast or address.is_unspecified:
        _refuse('IP address', value)
    return address


def _interface(value: typing.Any) -> _Interface:
    """[address, prefix length] as vif_spec gives it."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        _refuse('address', value)
    address, prefixlen = value
    address = _address(address)
    if not _is_int(prefixlen) or not 0 <= prefixlen <= address.max_prefixlen:
        _refuse('prefix length', value)
    return ipaddress.ip_interface((address, prefixlen))


@dataclasses.dataclass(frozen=True)
class Route:
    dst: _Network
    gateway: _Address
    if_missing: bool = False

    @classmethod
    def from_dict(cls, route: typing.Any) -> 'Route':
        if not isinstance(route, dict) or not set(route) <= {
                'dst', 'gateway', 'if_missing'}:
            _refuse('route', route)
        gateway = _address(route.get('gateway'))
        dst = route.get('dst')
        try:
            if not isinstance(dst, str):
                raise ValueError(dst)
            dst = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            _refuse('route destination', route)
        if dst.version != gateway.version:
            _refuse('route', route)
        if_missing = route.get('if_missing', False)
        if not isinstance(if_missing, bool):
            _refuse('route', route)
        return cls(dst, gateway, if_missing)

    def to_dict(self) -> dict:
        return {'dst': str(self.dst), 'gateway': str(self.gateway),
                'if_missing': self.if_missing}


@dataclasses.dataclass(frozen=True)
class VifSpec:
    """One port, parsed: only values the driver itself would produce."""

    host_dev: str
    mac: str
    mtu: typing.Optional[int] = None
    ifname: typing.Optional[str] = None
    master: typing.Optional[str] = None
    addresses: typing.Tuple[_Interface, ...] = ()
    routes: typing.Tuple[Route, ...] = ()

    @classmethod
    def from_dict(cls, spec: typing.Any) -> 'VifSpec':
        """Parse the wire form; InvalidArgument on anything else."""
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(spec, dict) or not set(spec) <= fields:
            _refuse('VIF spec', spec)
        addresses = spec.get('addresses') or []
        routes = spec.get('routes') or []
        if not isinstance(addresses, (list, tuple)) or \
                len(addresses) > MAX_ADDRESSES:
            _refuse('addresses', addresses)
        if not isinstance(routes, (list, tuple)) or len(routes) > MAX_ROUTES:
            _refuse('routes', routes)
        ifname = spec.get('ifname')
        master = spec.get('master')
        return cls(
            host_dev=check_host_dev(spec.get('host_dev')),
            mac=check_mac(spec.get('mac')),
            mtu=check_mtu(spec.get('mtu')),
            ifname=check_inside(ifname) if ifname is not None else None,
            master=check_bridge(master) if master is not None else None,
            addresses=tuple(_interface(a) for a in addresses),
            routes=tuple(Route.from_dict(r) for r in routes))

    def to_dict(self) -> dict:
        """The wire form (plain types for the privsep channel)."""
        return {'host_dev': self.host_dev, 'mac': self.mac, 'mtu': self.mtu,
                'ifname': self.ifname, 'master': self.master,
                'addresses': [[str(a.ip), a.network.prefixlen]
                              for a in self.addresses],
                'routes': [r.to_dict() for r in self.routes]}


def _setns(fd: int, kind: str = 'net') -> None:
    if _libc.setns(fd, _NSTYPES[kind]) != 0:
        err = ctypes.get_errno()
        raise OSError(err, 'setns: %s' % os.strerror(err))


def _open_netns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NetnsGone(path) from exc


def _host_namespaces(kind: str = 'net'
                     ) -> typing.Set[typing.Tuple[int, int]]:
    """(st_dev, st_ino) of the namespaces a sandbox's must not be: this
    process's and thread's (the host's: the daemon runs where nova-compute
    does) and PID 1's where this process may look at it (a daemon without
    CAP_SYS_PTRACE may not, and then may not open it as a target either)."""
    found = set()
    for path in ('/proc/self/ns/' + kind, '/proc/thread-self/ns/' + kind,
                 '/proc/1/ns/' + kind):
        try:
            info = os.stat(path)
        except PermissionError:
            continue
        found.add((info.st_dev, info.st_ino))
    return found


@contextlib.contextmanager
def _sandbox_netns(pid: int) -> typing.Iterator[int]:
    """An fd of the sandbox's network namespace, refused when it is the
    host's. Checked on the opened fd: what is checked is what is used."""
    fd = _open_netns('/proc/%d/ns/net' % check_pid(pid))
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) in _host_namespaces():
            _refuse('namespace (the host\'s) of PID', pid)
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _inside(netns_fd: int, kind: str = 'net') -> typing.Iterator[None]:
    """Run the block with this thread in the target namespace (of
    ``kind``: net, or uts for identity.py).

    Sockets opened in the block stay bound to it. The thread always
    returns to the namespace it came from.
    """
    own = os.open('/proc/thread-self/ns/' + kind,
                  os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(netns_fd, kind)
        try:
            yield
        finally:
            _setns(own, kind)
    finally:
        os.close(own)


def _write_sysctl(path: str, value: str) -> None:
    """Write a net sysctl of the namespace this thread is in."""
    with open(path, 'w') as handle:
        handle.write(value)


def host_mac(mac: str) -> str:
    """The host end's MAC: the port MAC with the first octet fe, as libvirt
    does for taps, so a Linux bridge (qbr) never takes the guest's MAC."""
    return 'fe' + mac[2:]


def _link(ipr: IPRoute, index: int = None,
          ifname: str = None) -> typing.Optional[dict]:
    """One link by index or name, or None if there is none."""
    try:
        if index:
            return ipr.get_links(index)[0]
        return ipr.link('get', ifname=ifname)[0]
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
            return None
        raise


def _kind(link: dict) -> typing.Optional[str]:
    info = link.get_attr('IFLA_LINKINFO')
    return info.get_attr('IFLA_INFO_KIND') if info else None


def _veth_to_elsewhere(link: typing.Optional[dict]) -> bool:
    """Whether a host link is a veth whose peer is in another namespace."""
    return (link is not None and _kind(link) == 'veth'
            and link.get_attr('IFLA_LINK_NETNSID') is not None)


def _peer_inside(host: IPRoute, inside: IPRoute, host_dev: str,
                 mac: str) -> typing.Optional[dict]:
    """The inside end of host_dev if host_dev is a veth whose peer is in
    the namespace of ``inside`` and carries ``mac``; else None."""
    return _peer_of(_link(host, ifname=host_dev), inside, mac)


def _peer_of(link: typing.Optional[dict], inside: IPRoute,
             mac: str) -> typing.Optional[dict]:
    """_peer_inside for a host link already read."""
    if not _veth_to_elsewhere(link):
        return None
    peer_index = link.get_attr('IFLA_LINK')
    if not peer_index:
        return None
    peer = _link(inside, index=peer_index)
    if peer is None or _kind(peer) != 'veth':
        return None
    if peer.get_attr('IFLA_LINK') != link['index']:
        return None
    if (peer.get_attr('IFLA_ADDRESS') or '').lower() != mac.lower():
        return None
    return peer


def _free_ifname(inside: IPRoute, preferred: typing.Optional[str]) -> str:
    taken = {link.get_attr('IFLA_IFNAME') for link in inside.get_links()}
    if preferred and preferred not in taken:
        return preferred
    number = 0
    while '%s%d' % (IFNAME_PREFIX, number) in taken:
        number += 1
    return '%s%d' % (IFNAME_PREFIX, number)


@privsep.vif_plug.entrypoint
def privileged_find_peer(pid: int, host_dev: str,
                         mac: str) -> typing.Optional[str]:
    """find_peer's privileged half (arguments checked again here)."""
    host_dev, mac = check_host_dev(host_dev), check_mac(mac)
    with _sandbox_netns(pid) as netns_fd, IPRoute() as host:
        with _inside(netns_fd), IPRoute() as inside:
            peer = _peer_inside(host, inside, host_dev, mac)
    return peer.get_attr('IFLA_IFNAME') if peer is not None else None


def find_peer(pid: int, host_dev: str, mac: str) -> typing.Optional[str]:
    """Name of host_dev's peer inside the sandbox's namespace, if it is a
    correct one (a veth there with the port MAC); None otherwise.

    Only a host veth whose peer is in some other namespace needs the
    privileged look inside; anything else is answered here.
    """
    check_pid(pid)
    host_dev, mac = check_host_dev(host_dev), check_mac(mac)
    with IPRoute() as host:
        if not _veth_to_elsewhere(_link(host, ifname=host_dev)):
            return None
    return privileged_find_peer(pid, host_dev, mac)


def _host_end(host: IPRoute, spec: VifSpec) -> dict:
    """The host end's settings: up, the spec's MTU, enslaved to its
    bridge (hybrid plug), which must exist."""
    settings = {'state': 'up'}
    if spec.mtu:
        settings['mtu'] = spec.mtu
    if spec.master:
        bridge = _link(host, ifname=spec.master)
        if bridge is None or _kind(bridge) != 'bridge':
            raise RuntimeError('bridge %s does not exist' % spec.master)
        settings['master'] = bridge['index']
    return settings


def _configure_host_end(host: IPRoute, index: int, spec: VifSpec) -> None:
    host.link('set', index=index, **_host_end(host, spec))


def _family(address: _Address) -> int:
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


def _checksum_in_software(ifname: str) -> None:
    """TX checksums filled in by the instance's kernel, not left to the
    "device": Open vSwitch's userspace datapath (datapath_type=netdev)
    forwards a veth's frames as they are, and a TCP segment whose
    checksum was left partial is dropped by its receiver (ping works,
    SSH does not). Turning tx-checksumming off also turns off the TSO
    that depends on it. Runs inside the namespace (``_inside``)."""
    ethtool = ethtool_ioctl.IoctlEthtool(ifname)
    try:
        ethtool.set_offload_flag('tx-checksumming', 0)
    finally:
        ethtool.close()


def _configure_inside(inside: IPRoute, ifname: str, spec: VifSpec,
                      created: bool = False) -> None:
    """MTU, sysctls, checksums, addresses, link up, routes: converge to
    the spec.

    A link just ``created`` has the spec's MTU and no address yet: neither
    is read or set again.
    """
    index = inside.link_lookup(ifname=ifname)[0]
    loopback = inside.link_lookup(ifname='lo')[0]
    inside.link('set', index=loopback, state='up')
    if spec.mtu and not created:
        inside.link('set', index=index, mtu=spec.mtu)
    _checksum_in_software(ifname)
    wanted = {(a.ip, a.network.prefixlen) for a in spec.addresses}
    if any(a.version == 6 for a, _ in wanted):
        # Docker disables IPv6 in a container's namespace. The addresses
        # are static (Neutron's), so no DAD delay, no RA routes or SLAAC
        # addresses of our own: the route table is network_info's.
        # (ifname matched INSIDE_RE: the path stays under conf/.)
        conf = '/proc/sys/net/ipv6/conf/%s/' % ifname
        for key, value in (('accept_dad', '0'), ('accept_ra', '0'),
                           ('autoconf', '0'), ('disable_ipv6', '0')):
            _write_sysctl(conf + key, value)
        _write_sysctl('/proc/sys/net/ipv6/conf/lo/disable_ipv6', '0')
    for addr in () if created else inside.get_addr(index=index):
        if addr['scope'] == _RT_SCOPE_LINK:
            continue
        key = (ipaddress.ip_address(addr.get_attr('IFA_ADDRESS')),
               addr['prefixlen'])
        if key not in wanted:
            inside.addr('del', index=index, address=str(key[0]),
                        prefixlen=key[1])
    for address, prefixlen in sorted(wanted, key=lambda a: (a[0].version,
                                                            a)):
        inside.addr('replace', index=index, address=str(address),
                    prefixlen=prefixlen, family=_family(address))
    inside.link('set', index=index, state='up')
    for route in spec.routes:
        family = _family(route.gateway)
        network = route.dst
        if route.if_missing and _has_route(inside, family, network):
            continue
        request = dict(family=family, gateway=str(route.gateway), oif=index)
        if network.prefixlen:
            request.update(dst=str(network.network_address),
                           dst_len=network.prefixlen)
        else:
            request['dst'] = 'default'
        inside.route('replace', **request)


def _free_ifname_in(netns_fd: int) -> str:
    with _inside(netns_fd), IPRoute() as inside:
        return _free_ifname(inside, None)


def _add_veth(host: IPRoute, netns_fd: int, spec: VifSpec) -> str:
    """Create the pair, the host end up with its MTU (and bridge) and the
    peer in the namespace with the port's MAC and MTU, in one request;
    returns the peer's name.

    The preferred name is tried first (in a new namespace it is free);
    only if it is taken are the namespace's links read for a free one.
    """
    host_end = dict(_host_end(host, spec), ifname=spec.host_dev,
                    kind='veth', address=host_mac(spec.mac))

    def peer(name: str) -> dict:
        attrs = {'ifname': check_inside(name), 'net_ns_fd': netns_fd,
                 'address': spec.mac}
        if spec.mtu:
            attrs['mtu'] = spec.mtu
        return attrs

    ifname = spec.ifname or _free_ifname_in(netns_fd)
    try:
        host.link('add', peer=peer(ifname), **host_end)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST or not spec.ifname:
            raise
        # The preferred name is taken inside (the host end was absent).
        ifname = _free_ifname_in(netns_fd)
        host.link('add', peer=peer(ifname), **host_end)
    return ifname


def _has_route(inside: IPRoute, family: int, network: _Network) -> bool:
    """The namespace's main table already routes exactly ``network``."""
    if network.prefixlen == 0:
        return bool(list(inside.get_default_routes(family=family)))
    dst = str(network.network_address)
    return any(r['dst_len'] == network.prefixlen
               and r.get_attr('RTA_DST') == dst
               for r in inside.get_routes(family=family, table=254))


@privsep.vif_plug.entrypoint
def privileged_plug_veth(pid: int, spec: dict) -> str:
    """plug_veth's privileged half (arguments parsed again here)."""
    spec = VifSpec.from_dict(spec)
    with _sandbox_netns(pid) as netns_fd, IPRoute() as host:
        existing = _link(host, ifname=spec.host_dev)
        peer = None
        if _veth_to_elsewhere(existing):
            with _inside(netns_fd), IPRoute() as inside:
                peer = _peer_of(existing, inside, spec.mac)
        created = peer is None
        if created:
            if existing is not None:
                _delete(host, spec.host_dev)    # a stale one
            ifname = _add_veth(host, netns_fd, spec)
        else:
            ifname = check_inside(peer.get_attr('IFLA_IFNAME'))
        try:
            if not created:
                _configure_host_end(host, existing['index'], spec)
            with _inside(netns_fd), IPRoute() as inside:
                _configure_inside(inside, ifname, spec, created)
        except Exception:
            if created:
                _delete(host, spec.host_dev)
            raise
    return ifname


def plug_veth(pid: int, spec: dict) -> str:
    """Make the VIF's veth pair exist and match the spec; return the
    interface name inside.

    A correct existing pair is kept (and reconfigured in place); a stale
    host device of the same name is replaced. On error a pair created by
    this call is deleted again.
    """
    check_pid(pid)
    return privileged_plug_veth(pid, VifSpec.from_dict(spec).to_dict())


#: At most this many ports per carrier change (Nova's own port quota is
#: far below it): a bound on what one privileged call does.
MAX_PORTS = 64


def _check_host_devs(names: typing.Any) -> typing.List[str]:
    if not isinstance(names, (list, tuple)) or len(names) > MAX_PORTS:
        _refuse('host device list', names)
    return [check_host_dev(name) for name in names]


@privsep.vif_plug.entrypoint
def privileged_set_carrier(names: typing.List[str],
                           up: bool) -> typing.List[str]:
    """set_carrier's privileged half (arguments parsed again here)."""
    names = _check_host_devs(names)
    if not isinstance(up, bool):
        _refuse('link state', up)
    changed = []
    with IPRoute() as host:
        for name in names:
            found = host.link_lookup(ifname=name)
            if found:
                host.link('set', index=found[0],
                          state='up' if up else 'down')
                changed.append(name)
    return changed


def set_carrier(names: typing.Sequence[str], up: bool) -> typing.List[str]:
    """Give the instance's NICs carrier, or take it away: each port's host
    end (``tap...``) up or down, in one privileged call.

    A stopped or frozen container's namespace lives on in its sandbox,
    and its kernel would still answer ARP and ping; with the host end
    down, OVS cannot deliver to it, as to a stopped VM's missing tap.
    Inside, addresses and routes stay (only carrier is lost), so the
    workload finds its network as it left it. Returns the devices found.
    """
    names = _check_host_devs(list(names))
    if not isinstance(up, bool):
        _refuse('link state', up)
    if not names:
        return []
    return privileged_set_carrier(names, up)


def _delete(host: IPRoute, name: str) -> bool:
    found = host.link_lookup(ifname=name)
    if not found:
        return False
    try:
        host.link('del', index=found[0])
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise
        return False
    return True


def delete_link(name: str) -> bool:
    """Delete a port's host device (a veth takes its peer with it); only
    ``tap...`` names. Returns whether it existed.

    The existence check needs no privilege; the delete is os-vif's own
    privileged helper (its context already runs for unplug), so this
    driver's context has no delete of its own.
    """
    name = check_host_dev(name)
    with IPRoute() as host:
        if not host.link_lookup(ifname=name):
            return False
    try:
        ovs_linux_net.delete_net_dev(name)
    except osv_exception.NetworkInterfaceNotFound:
        return False    # gone in between
    return True
