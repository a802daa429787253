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

"""Per-VIF plug/unplug and one-VIF spawn against their floors.

Plug and unplug of one OVS port (veth into a container's namespace, MAC,
MTU, an IPv4 address, the default route; the host end on OVS with the
Neutron external_ids), measured four ways in one run, interleaved:

- ``driver``: nova-docker's VIFPlugger (os-vif + pyroute2), privsep
  in-process (what a privsep daemon runs, minus its socket round trip);
- ``driver+daemons``: the same through real privsep daemons (production);
- ``raw``: the floor, the same netlink requests with pyroute2 and one OVSDB
  transaction with ovsdbapp, nothing else;
- ``commands``: the same steps as ``ip``/``nsenter``/``ovs-vsctl``
  processes, as nova-docker used to run them (through sudo+rootwrap, which
  would add more).

Then spawn of an instance with one port (cached image, sandbox + workload,
vif_plugging_timeout 0) against two floors: ``raw pair``, the driver's
Docker operations done raw one after the other (sandbox create + start,
raw plug, workload create + start in ``container:`` mode), and ``raw``,
one ``docker run`` (create + start, network none) plus the raw plug; destroy
against the raw unplug + ``docker rm`` of as many containers. ``driver+pool``
is the driver with a warm sandbox pool (``--pool N``, default 2; 0
skips it), each spawn finding the pool full: its floor is ``raw``.

    sudo python benchmarks/plug.py [-n 30] [--profile]

``--profile`` adds where the driver's time goes (privsep calls, OVSDB
transactions, Docker API requests, waits, Python work;
benchmarks/breakdown.py), per operation, next to the raw floor.

Needs root, Docker and Open vSwitch; creates a private userspace bridge
and removes everything it created.
"""

import argparse
import ctypes
import os
import socket
import subprocess
import sys
import time
import uuid
import warnings

warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
warnings.simplefilter('ignore', DeprecationWarning)
os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)

# First, as nova-compute does: nova's threading mode (tests/__init__.py
# applies monkey_patch before anything imports eventlet).
import tests  # noqa: E402,F401,I100  isort:skip

from benchmarks import breakdown  # noqa: E402
import fixtures  # noqa: E402
from nova import context as nova_context  # noqa: E402
from nova import objects  # noqa: E402
from nova.virt import fake as fake_virt  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402
from ovsdbapp.backend.ovs_idl import connection as ovs_connection  # noqa
from ovsdbapp.schema.open_vswitch import impl_idl as ovs_impl  # noqa: E402
from pyroute2 import IPRoute  # noqa: E402
from vif_plug_ovs import linux_net as osvif_linux_net  # noqa: E402

import nova.conf  # noqa: E402,F401  (registers nova's options)
from novadocker import conf  # noqa: E402
from novadocker.virt.docker import driver as docker_driver  # noqa: E402
from novadocker.virt.docker import images  # noqa: E402
from novadocker.virt.docker import linux_net  # noqa: E402
from novadocker.virt.docker import ovsdb  # noqa: E402
from novadocker.virt.docker import vifs  # noqa: E402
from tests.fixtures import docker as docker_fixtures  # noqa: E402
from tests.fixtures import glance as glance_fixtures  # noqa: E402
from tests.fixtures import images as image_fixtures  # noqa: E402
from tests.fixtures import network as net_fixtures  # noqa: E402
from tests.fixtures import objects as obj_fixtures  # noqa: E402

CONF = conf.CONF
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def percentile(values, fraction):
    ordered = sorted(values)
    index = min(len(ordered) - 1,
                max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


PROFILE = breakdown.Breakdown()
PROFILE.enabled = False
PROFILE.profiling = False   # --profile: enabled while the driver runs


def timed(func, *args, role=None):
    """Seconds of ``func(*args)``; with a role, profiled under it."""
    if role is not None:
        PROFILE.name_thread(role)
        PROFILE.enabled = PROFILE.profiling
    start = time.perf_counter()
    try:
        func(*args)
    finally:
        PROFILE.enabled = False
    return time.perf_counter() - start


# -- the floor: pyroute2 + one ovsdbapp transaction -------------------------

class RawPlugger:
    def __init__(self, bridge: str):
        self.bridge = bridge
        idl = ovs_connection.OvsdbIdl.from_server(
            CONF.docker.ovsdb_connection, 'Open_vSwitch')
        self.ovs = ovs_impl.OvsdbIdl(
            ovs_connection.Connection(idl=idl, timeout=30))

    def plug(self, vif, instance_uuid, pid):
        spec = vifs.vif_specs([vif])[0]
        netns = os.open('/proc/%d/ns/net' % pid, os.O_RDONLY)
        own = os.open('/proc/thread-self/ns/net', os.O_RDONLY)
        try:
            with IPRoute() as host:
                host.link('add', ifname=spec['host_dev'], kind='veth',
                          address='fe' + spec['mac'][2:],
                          peer={'ifname': 'eth1', 'net_ns_fd': netns,
                                'address': spec['mac'], 'mtu': spec['mtu']})
                index = host.link_lookup(ifname=spec['host_dev'])[0]
                host.link('set', index=index, mtu=spec['mtu'], state='up')
            _libc.setns(netns, CLONE_NEWNET)
            try:
                with IPRoute() as inside:
                    index = inside.link_lookup(ifname='eth1')[0]
                    address, prefix = spec['addresses'][0]
                    inside.addr('add', index=index, address=address,
                                prefixlen=prefix)
                    inside.link('set', index=index, state='up')
                    gateway = [r['gateway'] for r in spec['routes']
                               if r['dst'] == '0.0.0.0/0'][0]
                    inside.route('replace', dst='default', gateway=gateway,
                                 oif=index)
            finally:
                _libc.setns(own, CLONE_NEWNET)
        finally:
            os.close(netns)
            os.close(own)
        with self.ovs.transaction(check_error=True) as txn:
            txn.add(self.ovs.add_port(self.bridge, spec['host_dev']))
            txn.add(self.ovs.db_set('Interface', spec['host_dev'], (
                'external_ids', {'iface-id': vif['id'],
                                 'iface-status': 'active',
                                 'attached-mac': vif['address'],
                                 'vm-uuid': instance_uuid})))

    def unplug(self, vif):
        self.ovs.del_port(vif['devname'], bridge=self.bridge,
                          if_exists=True).execute(check_error=True)
        with IPRoute() as host:
            host.link('del', ifname=vif['devname'])


# -- the same steps as commands --------------------------------------------

class CommandPlugger:
    def __init__(self, bridge: str):
        self.bridge = bridge

    @staticmethod
    def run(*argv):
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    def plug(self, vif, instance_uuid, pid):
        spec = vifs.vif_specs([vif])[0]
        dev, mac, mtu = spec['host_dev'], spec['mac'], str(spec['mtu'])
        address, prefix = spec['addresses'][0]
        gateway = [r['gateway'] for r in spec['routes']
                   if r['dst'] == '0.0.0.0/0'][0]
        inside = ['nsenter', '-t', str(pid), '-n', 'ip']
        self.run('ip', 'link', 'add', dev, 'address', 'fe' + mac[2:],
                 'type', 'veth', 'peer', 'name', 'eth1', 'address', mac,
                 'mtu', mtu, 'netns', str(pid))
        self.run('ip', 'link', 'set', dev, 'mtu', mtu, 'up')
        self.run('ovs-vsctl', '--timeout=30', '--', '--may-exist',
                 'add-port', self.bridge, dev, '--', 'set', 'Interface', dev,
                 'external-ids:iface-id=%s' % vif['id'],
                 'external-ids:iface-status=active',
                 'external-ids:attached-mac=%s' % mac,
                 'external-ids:vm-uuid=%s' % instance_uuid)
        self.run(*inside, 'addr', 'add', '%s/%d' % (address, prefix),
                 'dev', 'eth1')
        self.run(*inside, 'link', 'set', 'eth1', 'up')
        self.run(*inside, 'route', 'replace', 'default', 'via', gateway,
                 'dev', 'eth1')

    def unplug(self, vif):
        self.run('ovs-vsctl', '--timeout=30', '--if-exists', 'del-port',
                 self.bridge, vif['devname'])
        self.run('ip', 'link', 'del', vif['devname'])


# -- nova-docker ------------------------------------------------------------

class DriverPlugger:
    def __init__(self, instance):
        self.plugger = vifs.VIFPlugger(ovsdb.OVSDB())
        self.instance = instance

    def plug(self, vif, instance_uuid, pid):
        self.plugger.plug(self.instance, [vif], pid)

    def unplug(self, vif):
        self.plugger.unplug(self.instance, [vif])


def privsep_mode(daemons: bool) -> None:
    """In-process entrypoints, or real helper daemons started as root."""
    helper = os.path.join(os.path.dirname(sys.executable), 'privsep-helper')
    for context in net_fixtures.PrivsepInProcess.CONTEXTS:
        if daemons:
            CONF.set_override('helper_command', 'env PYTHONPATH=%s %s'
                              % (TOP, helper), context.cfg_section)
        context.set_client_mode(daemons)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-n', type=int, default=30,
                        help='measured iterations of each (default 30)')
    parser.add_argument('--profile', action='store_true',
                        help='also print where the driver\'s time goes')
    parser.add_argument('--pool', type=int, default=2,
                        help='sandbox_pool_size of the "driver+pool" '
                             'spawns (default 2; 0: none)')
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit('run as root')
    PROFILE.profiling = args.profile
    if args.profile:
        PROFILE.patch_docker()
        PROFILE.patch_privsep(linux_net, osvif_linux_net)
        PROFILE.patch_ovsdb()
        PROFILE.patch_waits()
    objects.register_all()
    host = 'ndbench-%s' % uuid.uuid4().hex[:8]
    with fixtures.TempDir() as tmp, \
            config_fixture.Config(CONF) as cfg, \
            glance_fixtures.GlanceFixture() as glance_fixture, \
            net_fixtures.OVSBridge() as bridge_fixture:
        cfg.config(host=host, state_path=tmp.path, instances_path=tmp.path,
                   vif_plugging_timeout=0)
        bridge = bridge_fixture.name
        ports = net_fixtures.Ports(bridge)
        port = ports.network(0, ipv6=False)
        api = docker_fixtures.docker_api()
        ctx = nova_context.get_admin_context()
        driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        driver.init_host(host)
        image = glance_fixture.api.add(
            image_fixtures.default_image_tarball())
        image_meta = obj_fixtures.image_meta(image)

        def raw_spawn(vif, instance_uuid, pair):
            """docker run (network none) + the raw plug [+ a second
            container started in its namespace]; IDs newest first."""
            ids = []
            for _ in range(2 if pair else 1):
                network = 'container:%s' % ids[0] if ids else 'none'
                ids.insert(0, api.create_container(
                    docker_image, labels={'org.openstack.nova.host': host},
                    host_config=api.create_host_config(
                        network_mode=network))[
                    'Id'])
                api.start(ids[0])
                if len(ids) == 1:
                    raw.plug(vif, instance_uuid, api.inspect_container(
                        ids[0])['State']['Pid'])
            return ids

        def make_instance():
            return obj_fixtures.instance(
                vcpus=1, memory_mb=128, host=host, context=ctx,
                image_ref=image['id'], hostname='bench')

        # One holder container: every plug goes into its namespace. Like
        # the driver's sandbox it holds no capability (the privsep daemon
        # may open its namespace only then: it lacks CAP_SYS_PTRACE).
        docker_image = driver._images.ensure_image(ctx, image_meta)
        holder = api.create_container(
            docker_image, name='%s-holder' % host,
            labels={'org.openstack.nova.host': host},
            host_config=api.create_host_config(network_mode='none',
                                               cap_drop=['ALL']))
        api.start(holder['Id'])
        pid = api.inspect_container(holder['Id'])['State']['Pid']
        instance = make_instance()
        pluggers = {'driver': DriverPlugger(instance),
                    'driver+daemons': DriverPlugger(instance),
                    'raw': RawPlugger(bridge),
                    'commands': CommandPlugger(bridge)}
        plug = {name: [] for name in pluggers}
        unplug = {name: [] for name in pluggers}
        variants = ['driver'] + (['driver+pool'] if args.pool else [])
        spawn = {name: [] for name in variants + ['raw pair', 'raw']}
        destroy = {name: [] for name in variants + ['raw pair', 'raw']}

        def pool_full():
            """The pool refilled after the last claim (boots spaced more
            than a refill apart)."""
            if not driver._pool.wait_full():
                raise RuntimeError('the sandbox pool did not refill')
            time.sleep(0.2)   # the refill's last requests have settled

        try:
            privsep_mode(False)
            for name, plugger in pluggers.items():   # warm-up
                privsep_mode(name == 'driver+daemons')
                vif = port(host=200)
                plugger.plug(vif, instance.uuid, pid)
                plugger.unplug(vif)
            for iteration in range(args.n):
                for name, plugger in pluggers.items():
                    privsep_mode(name == 'driver+daemons')
                    vif = port(host=200)
                    role = name if name.startswith('driver') else None
                    plug[name].append(timed(
                        plugger.plug, vif, instance.uuid, pid,
                        role=role and 'plug, ' + role))
                    unplug[name].append(timed(
                        plugger.unplug, vif, role=role and 'unplug, ' + role))
            privsep_mode(False)
            raw = pluggers['raw']
            if args.pool:
                cfg.config(sandbox_pool_size=args.pool, group='docker')
                driver._pool.start()
            for iteration in range(max(3, args.n // 3)):
                for name in variants:
                    pooled = name != 'driver'
                    if pooled:
                        cfg.config(sandbox_pool_size=args.pool,
                                   group='docker')
                        pool_full()
                    else:
                        cfg.config(sandbox_pool_size=0, group='docker')
                    vif = port(host=201)
                    server = make_instance()
                    spawn[name].append(timed(
                        driver.spawn, ctx, server, image_meta, [], None, {},
                        [vif], role='spawn with one port, ' + name))
                    destroy[name].append(timed(
                        driver.destroy, ctx, server, [vif],
                        role='destroy with one port, ' + name))
                    if pooled:
                        pool_full()   # before the size goes to 0 again

                for name, address in (('raw pair', 203), ('raw', 202)):
                    vif = port(host=address)
                    start = time.perf_counter()
                    ids = raw_spawn(vif, server.uuid, name == 'raw pair')
                    spawn[name].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    raw.unplug(vif)
                    for container_id in ids:
                        api.remove_container(container_id, force=True)
                    destroy[name].append(time.perf_counter() - start)
        finally:
            driver._pool.stop()
            for context in net_fixtures.PrivsepInProcess.CONTEXTS:
                context.stop()
            privsep_mode(False)
            for container in api.containers(all=True, filters={
                    'label': ['org.openstack.nova.host=%s' % host]}):
                api.remove_container(container['Id'], force=True)
            net_fixtures.NetworkLeakCheck(ports.ids)._check()
            driver._images.remove(images.glance_tag(image['id']))

    def report(title, results, floor):
        print('\n%s (p50 / p90 ms, n=%d; ratio = p50 / %s p50)'
              % (title, len(results[floor]), floor))
        base = percentile(results[floor], 0.5)
        for name, values in results.items():
            p50 = percentile(values, 0.5)
            print('  %-15s %8.1f %8.1f   x%.2f' % (
                name, p50 * 1000, percentile(values, 0.9) * 1000,
                p50 / base))

    print('one OVS port, veth into a container netns (%s)'
          % socket.gethostname())
    report('plug', plug, 'raw')
    report('unplug', unplug, 'raw')
    report('spawn with one port (cached image)', spawn, 'raw pair')
    report('spawn with one port, against one docker run + raw plug', spawn,
           'raw')
    report('destroy with one port', destroy, 'raw pair')
    if args.profile:
        PROFILE.undo()
        runs = {'plug': args.n, 'unplug': args.n,
                'spawn': len(spawn['raw']), 'destroy': len(destroy['raw'])}
        for role in sorted({role for role, _c in PROFILE.seconds}):
            operation = role.split(' ')[0].rstrip(',')
            if operation not in runs:
                continue   # a thread of a library (OVSDB, privsep)
            results = {'plug': plug, 'unplug': unplug, 'spawn': spawn,
                       'destroy': destroy}[operation]
            variant = role.rsplit(', ', 1)[1]
            floor = 'raw pair' if operation in ('spawn', 'destroy') else 'raw'
            PROFILE.report(role, runs[operation],
                           {role: sum(results[variant])},
                           [('%s %s, mean' % (floor, operation),
                             sum(results[floor]) / len(results[floor]))],
                           roles=[role])


if __name__ == '__main__':
    main()
