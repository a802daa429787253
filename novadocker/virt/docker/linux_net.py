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

Each entrypoint is one privsep call doing a whole step over netlink
(pyroute2) in-process: no ``ip``/``ethtool``/``sysctl`` process is forked.
The namespace is addressed as ``/proc/<sandbox pid>/ns/net`` and entered
with ``setns`` by the calling *thread* only (network namespaces are per
thread), which then returns to its own namespace; nothing is mounted or
linked under ``/var/run/netns``.

Arguments are plain dicts and lists so they cross the privsep channel.
A VIF *spec* (built by ``vifs.vif_spec``) looks like::

    {'host_dev': 'tapXXXXXXXX-XX', 'mac': 'fa:16:3e:..', 'mtu': 1450,
     'ifname': 'eth0',             # preferred name inside; None = next free
     'master': None,               # 'qbr...' for hybrid plug
     'addresses': [['10.0.0.5', 24], ['fd00::5', 64]],
     'routes': [{'dst': '0.0.0.0/0', 'gateway': '10.0.0.1',
                 'if_missing': False}, ...]}
"""

import contextlib
import ctypes
import errno
import ipaddress
import os
import socket
import typing

from oslo_log import log as logging
from pyroute2 import IPRoute
from pyroute2 import NetlinkError

from novadocker.virt.docker import privsep

LOG = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
IFNAME_PREFIX = 'eth'
_RT_SCOPE_LINK = 253

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsGone(Exception):
    """The namespace's holder process is gone (sandbox not running)."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, 'setns: %s' % os.strerror(err))


def _open_netns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NetnsGone(path) from exc


@contextlib.contextmanager
def _inside(netns_fd: int) -> typing.Iterator[None]:
    """Run the block with this thread in the target namespace.

    Sockets opened in the block stay bound to it. The thread always
    returns to the namespace it came from.
    """
    own = os.open('/proc/thread-self/ns/net', os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(netns_fd)
        try:
            yield
        finally:
            _setns(own)
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


def _peer_inside(host: IPRoute, inside: IPRoute, host_dev: str,
                 mac: str) -> typing.Optional[dict]:
    """The inside end of host_dev if host_dev is a veth whose peer is in
    the namespace of ``inside`` and carries ``mac``; else None."""
    link = _link(host, ifname=host_dev)
    if link is None or _kind(link) != 'veth':
        return None
    if link.get_attr('IFLA_LINK_NETNSID') is None:
        return None     # the peer is in the host namespace
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
def find_peer(netns_path: str, host_dev: str,
              mac: str) -> typing.Optional[str]:
    """Name of host_dev's peer inside the namespace, if it is a correct
    one (a veth there with the port MAC); None otherwise."""
    netns_fd = _open_netns(netns_path)
    try:
        with IPRoute() as host:
            with _inside(netns_fd), IPRoute() as inside:
                peer = _peer_inside(host, inside, host_dev, mac)
        return peer.get_attr('IFLA_IFNAME') if peer is not None else None
    finally:
        os.close(netns_fd)


def _configure_host_end(host: IPRoute, index: int, spec: dict) -> None:
    settings = {'index': index, 'state': 'up'}
    if spec.get('mtu'):
        settings['mtu'] = spec['mtu']
    if spec.get('master'):
        bridge = host.link_lookup(ifname=spec['master'])
        if not bridge:
            raise RuntimeError('bridge %s does not exist' % spec['master'])
        settings['master'] = bridge[0]
    host.link('set', **settings)


def _family(address: str) -> int:
    version = ipaddress.ip_address(address).version
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def _configure_inside(inside: IPRoute, ifname: str, spec: dict) -> None:
    """MTU, sysctls, addresses, link up, routes: converge to the spec."""
    index = inside.link_lookup(ifname=ifname)[0]
    loopback = inside.link_lookup(ifname='lo')[0]
    inside.link('set', index=loopback, state='up')
    if spec.get('mtu'):
        inside.link('set', index=index, mtu=spec['mtu'])
    wanted = {(ipaddress.ip_address(a).compressed, int(p))
              for a, p in spec.get('addresses', [])}
    if any(_family(a) == socket.AF_INET6 for a, _ in wanted):
        # Docker disables IPv6 in a container's namespace. The addresses
        # are static (Neutron's), so no DAD delay, no RA routes or SLAAC
        # addresses of our own: the route table is network_info's.
        conf = '/proc/sys/net/ipv6/conf/%s/' % ifname
        for key, value in (('accept_dad', '0'), ('accept_ra', '0'),
                           ('autoconf', '0'), ('disable_ipv6', '0')):
            _write_sysctl(conf + key, value)
        _write_sysctl('/proc/sys/net/ipv6/conf/lo/disable_ipv6', '0')
    for addr in inside.get_addr(index=index):
        if addr['scope'] == _RT_SCOPE_LINK:
            continue
        key = (ipaddress.ip_address(addr.get_attr('IFA_ADDRESS')).compressed,
               addr['prefixlen'])
        if key not in wanted:
            inside.addr('del', index=index, address=key[0],
                        prefixlen=key[1])
    for address, prefixlen in sorted(wanted):
        inside.addr('replace', index=index, address=address,
                    prefixlen=prefixlen, family=_family(address))
    inside.link('set', index=index, state='up')
    for route in spec.get('routes', []):
        family = _family(route['gateway'])
        network = ipaddress.ip_network(route['dst'], strict=False)
        if network.prefixlen == 0 and route.get('if_missing'):
            if [r for r in inside.get_default_routes(family=family)]:
                continue
        request = dict(family=family, gateway=route['gateway'], oif=index)
        if network.prefixlen:
            request.update(dst=str(network.network_address),
                           dst_len=network.prefixlen)
        else:
            request['dst'] = 'default'
        inside.route('replace', **request)


@privsep.vif_plug.entrypoint
def plug_veth(netns_path: str, spec: dict) -> str:
    """Make the VIF's veth pair exist and match the spec; return the
    interface name inside.

    A correct existing pair is kept (and reconfigured in place); a stale
    host device of the same name is replaced. On error a pair created by
    this call is deleted again.
    """
    netns_fd = _open_netns(netns_path)
    try:
        with IPRoute() as host:
            with _inside(netns_fd), IPRoute() as inside:
                peer = _peer_inside(host, inside, spec['host_dev'],
                                    spec['mac'])
                ifname = (peer.get_attr('IFLA_IFNAME') if peer is not None
                          else _free_ifname(inside, spec.get('ifname')))
            created = peer is None
            if created:
                _delete(host, spec['host_dev'])    # a stale one
                peer_attrs = {'ifname': ifname, 'net_ns_fd': netns_fd,
                              'address': spec['mac']}
                if spec.get('mtu'):
                    peer_attrs['mtu'] = spec['mtu']
                host.link('add', ifname=spec['host_dev'], kind='veth',
                          address=host_mac(spec['mac']), peer=peer_attrs)
            try:
                index = host.link_lookup(ifname=spec['host_dev'])[0]
                _configure_host_end(host, index, spec)
                with _inside(netns_fd), IPRoute() as inside:
                    _configure_inside(inside, ifname, spec)
            except Exception:
                if created:
                    _delete(host, spec['host_dev'])
                raise
        return ifname
    finally:
        os.close(netns_fd)


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


@privsep.vif_plug.entrypoint
def delete_link(name: str) -> bool:
    """Delete a host network device (a veth takes its peer with it).
    Returns whether it existed."""
    with IPRoute() as host:
        return _delete(host, name)
