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

"""The API-side steps of tools/aio, through openstacksdk.

One Python process per step instead of one ``openstack`` command per
resource (each costs ~2 s of start-up). Every call raises on failure, so a
step either did all it says or fails with the API's own message.

Run by tools/aio (ndtools.aio) in the services' venv, with
OS_CLIENT_CONFIG_FILE pointing at the all-in-one's clouds.yaml.
"""

import argparse
import datetime
import json
import os
import sys
import time

import openstack

SERVICE_USERS = ('nova', 'placement', 'glance', 'neutron')
CATALOG = (('nova', 'compute', 'http://127.0.0.1:8774/v2.1'),
           ('placement', 'placement', 'http://127.0.0.1:8778'),
           ('glance', 'image', 'http://127.0.0.1:9292'),
           ('neutron', 'network', 'http://127.0.0.1:9696'))
FLAVORS = (('1', 'm1.tiny', 256, 1, 1), ('2', 'm1.small', 512, 1, 1))
DEMO_SG = 'demo-ssh-icmp'
# The default subnet pool `--nic auto` (Neutron's auto-allocated topology)
# carves project subnets from: OVN's logical networks only, routed to
# nothing but the external bridge's floating IPs.
DEFAULT_POOL = ('default-pool', '10.64.0.0/16', 26)


def admin():
    return openstack.connect(cloud='aio-admin')


def demo():
    return openstack.connect(cloud='aio')


def ensure_role(conn, name):
    return conn.identity.find_role(name) or conn.identity.create_role(
        name=name)


def catalog(args):
    """Service project, service users, endpoints; the demo project/user."""
    conn = admin()
    service = conn.identity.find_project('service') or \
        conn.identity.create_project(name='service', domain_id='default')
    admin_role = ensure_role(conn, 'admin')
    service_role = ensure_role(conn, 'service')
    member_role = ensure_role(conn, 'member')
    for name in SERVICE_USERS:
        user = conn.identity.find_user(name) or conn.identity.create_user(
            name=name, password=args.password, domain_id='default')
        for role in (admin_role, service_role):
            conn.identity.assign_project_role_to_user(service, user, role)
    for name, stype, url in CATALOG:
        svc = conn.identity.find_service(name) or \
            conn.identity.create_service(name=name, type=stype)
        for interface in ('public', 'internal'):
            conn.identity.create_endpoint(service_id=svc.id,
                                          interface=interface, url=url,
                                          region_id='RegionOne')
    project = conn.identity.find_project('demo') or \
        conn.identity.create_project(name='demo', domain_id='default')
    user = conn.identity.find_user('demo') or conn.identity.create_user(
        name='demo', password=args.password, domain_id='default',
        default_project_id=project.id)
    conn.identity.assign_project_role_to_user(project, user, member_role)
    print('catalog: %s; demo project %s' % (
        ', '.join(c[1] for c in CATALOG), project.id))


def wait_compute(args):
    """Until nova-compute reports up (it exits early on bad config). A
    service an admin forced down (evacuate) is down whatever it reports:
    its reports since ``--since`` are enough (Nova refuses to unforce it
    before the restarted service has cleaned up what was evacuated)."""
    conn = admin()
    deadline = time.time() + args.timeout
    since = datetime.datetime.fromtimestamp(args.since,
                                            datetime.timezone.utc)
    while time.time() < deadline:
        try:
            services = list(conn.compute.services(binary='nova-compute'))
            if args.host:
                services = [s for s in services if s.host == args.host]
            states = [s.state for s in services]
            fresh = [s for s in services
                     if (s.state == 'up' or s.is_forced_down) and
                     s.updated_at and _utc(s.updated_at) > since]
        except openstack.exceptions.SDKException as exc:
            states, fresh = ['error: %s' % exc], []
        if fresh:
            print('nova-compute%s is up' % (
                ' on %s' % args.host if args.host else ''))
            return
        if args.pid and not os.path.exists('/proc/%d' % args.pid):
            sys.exit('nova-compute (pid %d) exited; see its log' % args.pid)
        time.sleep(1)
    sys.exit('nova-compute did not report up within %ds (last: %s); see '
             'the nova-compute log' % (args.timeout, states))


def _utc(stamp: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(stamp.replace('Z', '+00:00'))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def demo_resources(args):
    """External network, demo network + router, security group, flavors."""
    conn = admin()
    public = conn.network.find_network('public')
    if public is None:
        public = conn.network.create_network(
            name='public', is_router_external=True,
            provider_network_type='flat', provider_physical_network='public')
        # The gateway is the host's own address on the external bridge:
        # routers get a default route to it (Tempest pings it as "the
        # outside"), and the host forwards nothing that arrives there
        # (forwarding=0 on the bridge), so nothing from a tenant network
        # leaves this machine; floating IPs are on the host's subnet.
        conn.network.create_subnet(
            network_id=public.id, name='public-subnet', ip_version=4,
            cidr=args.ext_cidr, gateway_ip=args.gateway,
            is_dhcp_enabled=False,
            allocation_pools=[{'start': args.pool_start,
                               'end': args.pool_end}])
    for flavor_id, name, ram, vcpus, disk in FLAVORS:
        if conn.compute.find_flavor(name) is None:
            conn.compute.create_flavor(id=flavor_id, name=name, ram=ram,
                                       vcpus=vcpus, disk=disk)
    # Room for scenario tests and benchmarks running side by side.
    project = conn.identity.find_project('demo', ignore_missing=False)
    conn.set_compute_quotas(project.id, instances=50, cores=200,
                            ram=51200)
    conn.set_network_quotas(project.id, network=50, subnet=50, router=50,
                            port=500, floatingip=100, security_group=100,
                            security_group_rule=500)
    user = demo()
    private = user.network.find_network('private')
    if private is None:
        private = user.network.create_network(name='private')
        subnet = user.network.create_subnet(
            network_id=private.id, name='private-subnet', ip_version=4,
            cidr=args.private_cidr)
        router = user.network.create_router(
            name='router1', external_gateway_info={'network_id': public.id})
        user.network.add_interface_to_router(router, subnet_id=subnet.id)
    if user.network.find_security_group(DEMO_SG) is None:
        sg = user.network.create_security_group(
            name=DEMO_SG, description='ICMP and SSH from anywhere')
        user.network.create_security_group_rule(
            security_group_id=sg.id, direction='ingress', ethertype='IPv4',
            protocol='icmp')
        user.network.create_security_group_rule(
            security_group_id=sg.id, direction='ingress', ethertype='IPv4',
            protocol='tcp', port_range_min=22, port_range_max=22)
    print('networks public (%s) and private (%s), router1, security group '
          '%s, flavors %s' % (args.ext_cidr, args.private_cidr, DEMO_SG,
                              ', '.join(f[1] for f in FLAVORS)))


def auto_allocation(args):
    """What `openstack server create --nic auto` needs: the external
    network marked default and a shared default IPv4 subnet pool."""
    conn = admin()
    public = conn.network.find_network('public', ignore_missing=False)
    if not public.is_default:
        conn.network.update_network(public, is_default=True)
    name, prefix, length = DEFAULT_POOL
    if conn.network.find_subnet_pool(name) is None:
        conn.network.create_subnet_pool(
            name=name, prefixes=[prefix], default_prefix_length=length,
            is_default=True, is_shared=True)
    print('auto-allocation: network public is the default, subnet pool %s '
          '(%s, /%d) the default' % DEFAULT_POOL)


def wait_status(conn, server, timeout, want='ACTIVE'):
    deadline = time.time() + timeout
    while time.time() < deadline:
        server = conn.compute.get_server(server.id)
        if server.status == want:
            return server
        if server.status == 'ERROR':
            fault = (server.fault or {}).get('message', 'no fault recorded')
            raise RuntimeError('server %s went to ERROR: %s' % (
                server.name, fault))
        time.sleep(0.5)
    raise RuntimeError('server %s still %s after %ds' % (
        server.name, server.status, timeout))


def boot(args):
    """The demo server with a floating IP; prints its addresses as JSON."""
    user = demo()
    image = user.image.find_image(args.image, ignore_missing=False)
    flavor = user.compute.find_flavor('m1.tiny', ignore_missing=False)
    private = user.network.find_network('private', ignore_missing=False)
    public = user.network.find_network('public', ignore_missing=False)
    started = time.time()
    server = user.compute.create_server(
        name=args.name, image_id=image.id, flavor_id=flavor.id,
        networks=[{'uuid': private.id}],
        security_groups=[{'name': DEMO_SG}])
    server = wait_status(user, server, args.timeout)
    active = time.time() - started
    port = next(user.network.ports(device_id=server.id))
    fip = user.network.create_ip(floating_network_id=public.id,
                                 port_id=port.id)
    result = {'name': server.name, 'id': server.id,
              'fixed_ip': port.fixed_ips[0]['ip_address'],
              'floating_ip': fip.floating_ip_address,
              'seconds_to_active': round(active, 1)}
    print(json.dumps(result))
    with open(args.output, 'w') as out:
        json.dump(result, out)


def cleanup(args):
    """Delete every server (the driver removes containers and ports);
    print the Glance image IDs so their Docker copies can go too."""
    conn = admin()
    servers = list(conn.compute.servers(all_projects=True))
    for server in servers:
        conn.compute.delete_server(server.id)
    for server in servers:
        try:
            conn.compute.wait_for_delete(server, wait=args.timeout)
        except openstack.exceptions.SDKException as exc:
            print('server %s not deleted: %s' % (server.id, exc),
                  file=sys.stderr)
    print('deleted %d server(s)' % len(servers), file=sys.stderr)
    for image in conn.image.images():
        print(image.id)


def vm_image(args):
    """vm-tiny's kernel, initramfs and disk (naming the other two in
    kernel_id and ramdisk_id, with ``--property`` KEY=VALUE) in Glance,
    public. All raw: the all-in-one's Glance takes only raw and qcow2
    disks, and Nova boots kernel_id/ramdisk_id whatever their disk_format
    says (aki/ari/ami are labels to it). The kernel and initramfs are
    container_format ``compressed`` (what they are): Glance inspects only
    ``bare`` uploads, and takes the kernel's boot sector for an MBR that
    fails its safety check. Each is kept when an image of that name has
    the same checksum and properties already."""
    conn = admin()
    with open(args.manifest) as f:
        files = json.load(f)['files']
    props = dict(p.split('=', 1) for p in args.property)
    kernel = _image(conn, args.name + '-kernel', files['kernel'],
                    'compressed', {})
    ramdisk = _image(conn, args.name + '-ramdisk', files['initrd'],
                     'compressed', {})
    props.update(kernel_id=kernel.id, ramdisk_id=ramdisk.id)
    disk = _image(conn, args.name, files['disk'], 'bare', props)
    print('%s: %s (%s)' % (args.name, disk.id, ', '.join(
        '%s=%s' % kv for kv in sorted(props.items()))))


def docker_hv_type(args):
    """Every docker-format image without a hypervisor_type gets
    ``--hv``: ImagePropertiesFilter then keeps them off hosts whose
    driver runs no containers (the KVM node's libvirt lists qemu and
    kvm). Before a KVM node joins: images without the property would
    pass the filter there."""
    conn = admin()
    for image in conn.image.images():
        if (image.container_format == 'docker'
                and not (image.properties or {}).get('hypervisor_type')):
            conn.image.update_image(image, hypervisor_type=args.hv)
            print('%s (%s): hypervisor_type=%s' % (image.name, image.id,
                                                   args.hv))


def _image(conn, name, entry, container, props):
    """One image of vm_image: the existing one when its data and
    properties are these, else a new one (an older one is deleted)."""
    old = conn.image.find_image(name)
    if old is not None:
        have = old.properties or {}
        if (old.hash_value == entry['sha256'] and old.status == 'active'
                and all(have.get(k) == v for k, v in props.items())):
            return old
        conn.image.delete_image(old)
    return conn.image.create_image(
        name=name, filename=entry['path'], disk_format='raw',
        container_format=container, visibility='public', wait=True,
        allow_duplicates=True, **props)


def forget_host(args):
    """A compute host leaving the running cloud: its servers deleted
    (the driver unplugs them), its service and compute node (the
    resource provider goes with it), and ``--image NAME`` each."""
    conn = admin()
    servers = [s for s in conn.compute.servers(all_projects=True)
               if s.compute_host == args.host]
    for server in servers:
        conn.compute.delete_server(server.id)
    for server in servers:
        conn.compute.wait_for_delete(server, wait=args.timeout)
    print('%s: deleted %d server(s)' % (args.host, len(servers)))
    for svc in conn.compute.services(binary='nova-compute'):
        if svc.host == args.host:
            conn.compute.delete_service(svc)
            print('%s: nova-compute service deleted' % args.host)
    for name in args.image:
        image = conn.image.find_image(name)
        if image is not None:
            conn.image.delete_image(image)
            print('image %s deleted' % name)


def status(args):
    conn = admin()
    for svc in conn.compute.services():
        print('  %-16s %-8s %-5s %s' % (svc.binary, svc.host, svc.state,
                                        svc.status))
    for agent in conn.network.agents():
        print('  %-28s %-8s %s' % (agent.agent_type, agent.host,
                                   'alive' if agent.is_alive else 'DEAD'))
    for server in conn.compute.servers(all_projects=True):
        addresses = ', '.join(
            a['addr'] for net in server.addresses.values() for a in net)
        print('  server %-20s %-8s %s' % (server.name, server.status,
                                          addresses))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('catalog')
    p.add_argument('--password', required=True)
    p.set_defaults(func=catalog)
    p = sub.add_parser('wait-compute')
    p.add_argument('--timeout', type=int, default=180)
    p.add_argument('--since', type=float, default=0,
                   help='a heartbeat newer than this epoch time')
    p.add_argument('--pid', type=int, help='fail as soon as it exits')
    p.add_argument('--host', help="that host's nova-compute only")
    p.set_defaults(func=wait_compute)
    p = sub.add_parser('demo')
    for opt in ('--ext-cidr', '--gateway', '--pool-start', '--pool-end',
                '--private-cidr'):
        p.add_argument(opt, required=True)
    p.set_defaults(func=demo_resources)
    p = sub.add_parser('auto-allocation')
    p.set_defaults(func=auto_allocation)
    p = sub.add_parser('boot')
    p.add_argument('--image', default='busybox')
    p.add_argument('--name', default='demo1')
    p.add_argument('--timeout', type=int, default=300)
    p.add_argument('--output', required=True)
    p.set_defaults(func=boot)
    p = sub.add_parser('cleanup')
    p.add_argument('--timeout', type=int, default=120)
    p.set_defaults(func=cleanup)
    p = sub.add_parser('status')
    p.set_defaults(func=status)
    p = sub.add_parser('vm-image')
    p.add_argument('--manifest', required=True, help="ndtools.vmimage's")
    p.add_argument('--name', default='vm-tiny')
    p.add_argument('--property', action='append', default=[])
    p.set_defaults(func=vm_image)
    p = sub.add_parser('docker-hv-type')
    p.add_argument('--hv', default='docker')
    p.set_defaults(func=docker_hv_type)
    p = sub.add_parser('forget-host')
    p.add_argument('--host', required=True)
    p.add_argument('--image', action='append', default=[])
    p.add_argument('--timeout', type=int, default=180)
    p.set_defaults(func=forget_host)
    args = parser.parse_args()
    args.func(args)


if __name__ == '__main__':
    main()
