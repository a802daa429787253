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

"""Write a tempest.conf that describes the running all-in-one truthfully.

Run by ``tools/aio tempest`` (ndtools.aio) with the all-in-one's venv
(openstacksdk and nova are there), OS_CLIENT_CONFIG_FILE pointing at its
clouds.yaml. What can be asked of the cloud (image, flavors, external
network, Neutron's extensions, Nova's scheduler filters) is asked; what the
compute driver can do is stated here, next to the reason.
"""

import argparse
import configparser
import os
import sys
import typing

import openstack

# What DockerDriver does and does not do, as Tempest's
# [compute-feature-enabled] flags. Tempest skips the tests of a feature
# that is off, so no exclusion regex is needed for these.
COMPUTE_FEATURES = {
    # docker pause/unpause (cgroup freezer).
    'pause': True,
    # Suspend freezes the processes (cgroup freezer), as nova-lxd did.
    'suspend': True,
    # docker commit (paused) -> docker save -> Glance (container_format
    # docker).
    'snapshot': True,
    # Shelve is snapshot + destroy; unshelve spawns from the snapshot.
    'shelve': True,
    'shelve_migrate': False,
    # The workload's stdout/stderr (docker logs).
    'console_output': True,
    # Neutron ports hot-plugged into the sandbox's network namespace.
    'interface_attach': True,
    # Resize on the same host (allow_resize_to_same_host = true in the
    # all-in-one's nova.conf): docker update, or a new container from a
    # commit when the root disk size changes. Cold migration needs a
    # second compute host (multinode_overrides); no live migration: a
    # container's memory is not migratable.
    'resize': True,
    'cold_migration': False,
    'live_migration': False,
    'live_migrate_back_and_forth': False,
    'block_migration_for_live_migration': False,
    'volume_backed_live_migration': False,
    'can_migrate_between_any_hosts': False,
    # Rescue: the rescue image in the instance's sandbox, the instance's
    # filesystem at /rescue. Stable device rescue (hw_rescue_device/bus)
    # is about disks and buses: not for containers.
    'rescue': True,
    'stable_rescue': False,
    # No graphical console: a container has no framebuffer. The serial
    # console is the workload's TTY through nova-serialproxy (Tempest's
    # only test of it also live-migrates, which is off; the scenario test
    # tests/scenario/test_console.py covers it).
    'vnc_console': False,
    'spice_console': False,
    'serial_console': True,
    # set_admin_password runs the image's chpasswd: the all-in-one's
    # busybox image has none (Debian's busybox-static lacks the applet).
    'change_password': False,
    # Personality files are written into the container's filesystem
    # before the workload starts (Tempest reads them back over SSH).
    'personality': True,
    # The driver's config drive is a read-only directory at /config-drive
    # (a container has no block devices), while Tempest checks a config
    # drive by mounting the block device labelled config-2 (blkid -L
    # config-2; mount): off, so that test_server_basic_ops still runs its
    # SSH and metadata checks. tests/scenario/test_ssh.py reads
    # /config-drive over SSH instead.
    'config_drive': False,
    # The all-in-one runs the metadata service (OVN's metadata agent,
    # Nova's metadata API; tests/scenario/test_metadata.py reads it from
    # inside a server); Tempest's check of it runs curl in the guest,
    # which busybox-ssh carries (rootfs.ssh_rootfs).
    'metadata_service': True,
    # Nova's own API option [api]enable_instance_password (default on).
    'enable_instance_password': True,
    # OS-DCF:diskConfig is an API attribute; the driver ignores it, which
    # is what the API promises for AUTO/MANUAL on rebuild.
    'disk_config': True,
    # No Cinder in the all-in-one: no volumes at all.
    'attach_encrypted_volume': False,
    'swap_volume': False,
    'volume_multiattach': False,
    'ide_bus': False,
    # Nova quotas are the legacy DB driver, not Keystone unified limits.
    'unified_limits': False,
}


def multinode_overrides(hosts: typing.List[str]
                        ) -> typing.Tuple[dict, dict]:
    """([compute], [compute-feature-enabled]) for a cloud whose
    nova-compute services up are on ``hosts``: with two or more (``tools/aio
    up --nodes 2``), Tempest's multi-node tests run (min_compute_nodes),
    cold migration is on (the workload travels through a hidden Glance
    image between any two nodes), and the tests that migrate between two
    named hosts go from the host (node 1) to the first aio-node."""
    if len(hosts) < 2:
        return {'min_compute_nodes': '1'}, {}
    nodes = sorted(h for h in hosts if h.startswith('aio-node'))
    others = sorted(h for h in hosts if h not in nodes)
    source, dest = (others + nodes)[0], (nodes + others)[0]
    return ({'min_compute_nodes': str(len(hosts)),
             'migration_source_host': source,
             'migration_dest_host': dest},
            {'cold_migration': 'true'})


# SSH into guests: the busybox-ssh image runs dropbear, and the driver
# writes the server's keypair into root's authorized_keys before the
# workload starts. The host reaches guests through floating IPs only.
VALIDATION = {
    'run_validation': 'true',
    'connect_method': 'floating',
    'auth_method': 'keypair',
    'image_ssh_user': 'root',
    'image_alt_ssh_user': 'root',
    'ip_version_for_ssh': '4',
    # Nova generates RSA keypairs (Tempest's default expects ECDSA).
    'ssh_key_type': 'rsa',
}

SCENARIO = {
    # No DHCP client runs in the guest: the driver sets the port's
    # addresses and routes in the network namespace itself, so there is
    # no lease to renew (Tempest skips its renewal test).
    'dhcp_client': '',
}


#: The network every test class's servers boot on unless the test makes
#: its own (Tempest's [compute] fixed_network_name). Why one shared network
#: instead of Tempest's default of a network, subnet and router per test
#: class (create_isolated_networks): on this 2-core machine those cost about
#: 15 s of Neutron's time per class (a router interface alone 4-6 s), about
#: 11 of the run's 45 minutes, and exercise only Neutron. Tests about
#: networking (the scenario tests, attach_interfaces' own networks) still
#: build theirs; the two that need a network owned by their project skip,
#: and so does AutoAllocateNetworkTest (--nic auto), which refuses to run
#: where a shared network exists.
SHARED_NETWORK = 'tempest-shared'
SHARED_CIDR = '10.30.0.0/22'


def ensure_shared_network(conn, public) -> typing.Any:
    """The admin-owned shared network SHARED_NETWORK, with a subnet and a
    router to the external network ``public`` (floating IPs for Tempest's
    SSH validation): made once, found on later runs."""
    net = conn.network.find_network(SHARED_NETWORK)
    if net is None:
        net = conn.network.create_network(name=SHARED_NETWORK, shared=True)
    subnet = conn.network.find_subnet(SHARED_NETWORK, network_id=net.id)
    if subnet is None:
        subnet = conn.network.create_subnet(
            name=SHARED_NETWORK, network_id=net.id, ip_version=4,
            cidr=SHARED_CIDR)
    router = conn.network.find_router(SHARED_NETWORK)
    if router is None:
        router = conn.network.create_router(
            name=SHARED_NETWORK,
            external_gateway_info={'network_id': public.id})
    if not any(p.device_id == router.id
               for p in conn.network.ports(network_id=net.id,
                                           device_owner='network:'
                                           'router_interface')):
        conn.network.add_interface_to_router(router, subnet=subnet.id)
    return net


LIBVIRT_HYPERVISOR_TYPES = ('QEMU', 'KVM')


def libvirt_hosts(conn) -> typing.Set[str]:
    """Compute hosts of Nova's libvirt driver (the all-in-one's KVM node,
    issue 15): there for the mixed scenario tests, never Tempest's
    migration source or destination, nor counted as its compute nodes."""
    return {h.service_details['host']
            for h in conn.compute.hypervisors(details=True)
            if h.hypervisor_type in LIBVIRT_HYPERVISOR_TYPES}


def avoid_hosts(libvirt: typing.Iterable[str]) -> typing.Dict[str, str]:
    """[compute] target_hosts_to_avoid: TestServerMultinode boots one
    server on every compute host by name (a forced host, which no image
    property filter stops) but those whose name contains this string."""
    hosts = sorted(libvirt)
    if not hosts:
        return {}
    return {'target_hosts_to_avoid': os.path.commonprefix(hosts)}


def nova_filters(nova_conf: str) -> list:
    """[filter_scheduler]enabled_filters as nova-scheduler reads them."""
    import nova.conf
    conf = nova.conf.CONF
    conf([], project='nova', default_config_files=[nova_conf])
    return list(conf.filter_scheduler.enabled_filters)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--output', required=True)
    parser.add_argument('--password', required=True)
    parser.add_argument('--nova-conf', required=True)
    parser.add_argument('--log-dir', required=True)
    parser.add_argument('--image', default='busybox-ssh')
    parser.add_argument('--concurrency', type=int, default=2)
    args = parser.parse_args()

    conn = openstack.connect(cloud='aio-admin')
    image = conn.image.find_image(args.image, ignore_missing=False)
    flavors = sorted(conn.compute.flavors(), key=lambda f: (f.ram, f.id))
    if len(flavors) < 2:
        sys.exit('need two flavors, found %d' % len(flavors))
    public = conn.network.find_network('public')
    extensions = sorted(e.alias for e in conn.network.extensions())
    # Every compute host up that runs the driver under test (the host's,
    # and aio-nodeK's with --nodes; not a KVM node's libvirt).
    vms = libvirt_hosts(conn)
    computes = [s for s in conn.compute.services(binary='nova-compute')
                if s.state == 'up' and s.host not in vms]
    if not computes:
        sys.exit('no nova-compute service is up')

    if public is None:
        sys.exit('no external network "public"')
    shared = ensure_shared_network(conn, public)
    compute_nodes, multinode_features = multinode_overrides(
        [c.host for c in computes])
    conf = configparser.ConfigParser(interpolation=None)
    conf.optionxform = str
    conf.read_dict({
        'DEFAULT': {
            'log_dir': args.log_dir,
            'log_file': 'tempest.log',
        },
        'auth': {
            'admin_username': 'admin',
            'admin_password': args.password,
            'admin_project_name': 'admin',
            'admin_domain_name': 'Default',
            # Each test class gets its own project and user; its servers
            # boot on SHARED_NETWORK (see there why).
            'use_dynamic_credentials': 'true',
            'create_isolated_networks': 'false',
        },
        'identity': {
            'uri_v3': 'http://127.0.0.1:5000/v3',
            'auth_version': 'v3',
            'region': 'RegionOne',
        },
        'identity-feature-enabled': {'api_v2': 'false'},
        'compute': {
            # One image for both: the busybox-ssh image tools/aio uploads
            # (a `docker save` tarball, container_format docker), which
            # validation logs in to; rebuilds keep an SSH server.
            'image_ref': image.id,
            'image_ref_alt': image.id,
            'flavor_ref': flavors[0].id,
            'flavor_ref_alt': flavors[1].id,
            'fixed_network_name': shared.name,
            'build_timeout': '196',
            'min_microversion': '2.1',
            'max_microversion': 'latest',
            **compute_nodes,
            **avoid_hosts(vms),
        },
        'compute-feature-enabled': dict(
            {k: str(v).lower() for k, v in COMPUTE_FEATURES.items()},
            scheduler_enabled_filters=','.join(nova_filters(args.nova_conf)),
            **multinode_features),
        'image': {
            'container_formats': 'bare,docker',
            'disk_formats': 'raw,qcow2',
        },
        'network': {
            'project_network_cidr': '10.100.0.0/16',
            'project_network_mask_bits': '28',
            # The host reaches guests only through floating IPs on the
            # external network, never tenant networks directly.
            'project_networks_reachable': 'false',
            'public_network_id': public.id,
            'floating_network_name': public.name,
            'shared_physical_network': 'false',
        },
        'network-feature-enabled': {
            'api_extensions': ','.join(extensions),
            'floating_ips': 'true',
            'port_security': str('port-security' in extensions).lower(),
            'port_admin_state_change': 'true',
            'ipv6': 'true',
            'ipv6_subnet_attributes': 'true',
        },
        'validation': VALIDATION,
        'scenario': SCENARIO,
        'service_available': {
            'nova': 'true',
            'neutron': 'true',
            'glance': 'true',
            'cinder': 'false',
            'swift': 'false',
            'horizon': 'false',
        },
    })
    with open(args.output, 'w') as out:
        conf.write(out)
    print('tempest.conf: image %s (%s), flavors %s/%s, public network %s, '
          'shared network %s, %d Neutron extensions, compute hosts %s' % (
              image.name, image.id, flavors[0].name, flavors[1].name,
              public.id, shared.id, len(extensions),
              ', '.join(sorted(c.host for c in computes))))


if __name__ == '__main__':
    main()
