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

"""VMs beside containers (issue 15): the KVM node of ``tools/aio
add-kvm-node`` (aio-kvmK: libvirt and QEMU, nova-compute with the libvirt
driver) and the docker hosts share Neutron's networks, routers, security
groups and floating IPs.

As the demo user, no host forced: the scheduler alone puts ``vm-tiny``
(hypervisor_type qemu) on the KVM node and ``busybox`` (hypervisor_type
docker) on a docker host (ImagePropertiesFilter); each test checks where
they landed. The VM (ndtools.vmimage) answers ping and serves
``/cgi-bin/ping?ADDRESS``, a ping the VM itself sends: the tests ask for it
with busybox's nc from a container, so VM->container traffic is driven
without a shell in the VM.

``tools/aio scenario --mixed`` runs them (AIO_KVM_NODE names the node);
the run without a REGEX leaves them out. They skip when the cloud has no
KVM node, except in CI (CI=true), where that is a failure: CI adds the
node before it runs them, and a VM that does not come up fails.
"""

import os
import re
import time

from tests.scenario import base

VM_IMAGE = 'vm-tiny'
# TCG on a busy 2-core machine: the guest's console says ``vm-tiny: lease``
# some 20 s after QEMU starts; margins for Tempest running beside.
VM_READY_TIMEOUT = 240
CGI_TIMEOUT = 45            # the guest's ping -c 3 -w 20, then HTTP
LEASE = re.compile(r'vm-tiny: lease eth0 ([0-9.]+)/')
TIMES_LOG = os.path.join(base.AIO_DIR, 'logs', 'scenario-mixed-times.log')


def in_ci() -> bool:
    return os.environ.get('CI', '').lower() in ('1', 'true', 'yes')


class MixedScenarioTest(base.ScenarioTestCase):
    """A container and a VM on the same Neutron."""

    def setUp(self):
        super().setUp()
        up = [svc.host for svc in self.admin.compute.services(
            binary='nova-compute')
            if base.kvm_number(svc.host) is not None
            and svc.state == 'up' and svc.status == 'enabled']
        wanted = os.environ.get('AIO_KVM_NODE', '')
        if not up and not wanted and not in_ci():
            self.skipTest('no KVM node in this cloud (tools/aio '
                          'add-kvm-node adds one)')
        self.assertTrue(up, 'no KVM node is up (AIO_KVM_NODE=%r, CI=%r): '
                        'nova-compute services %s' % (
                            wanted, os.environ.get('CI'), [
                                (s.host, s.state) for s in
                                self.admin.compute.services(
                                    binary='nova-compute')]))
        self.kvm_host = wanted if wanted in up else up[0]
        self.vm_image = self.conn.image.find_image(VM_IMAGE,
                                                   ignore_missing=False)

    # -- helpers -------------------------------------------------------------

    def make_mixed_sg(self):
        """ICMP and HTTP (the VM's ping CGI) in (its own name: servers
        name their groups)."""
        sg = self.conn.network.create_security_group(name=self.name('mixed'))
        self.addCleanup(self.admin.network.delete_security_group, sg,
                        ignore_missing=True)
        self.allow_icmp(sg)
        self.conn.network.create_security_group_rule(
            security_group_id=sg.id, direction='ingress', ethertype='IPv4',
            protocol='tcp', port_range_min=80, port_range_max=80)
        return sg

    def boot_pair(self, vm_net, container_net, sg, container_sg=None):
        """A VM and a container, booted together, each ACTIVE on its
        kind of host; the VM with its DHCP lease."""
        start = time.time()
        vm = self.boot('vm', [vm_net], sg, image=self.vm_image, wait=False)
        container = self.boot('ct', [container_net], container_sg or sg)
        vm = self.wait_status(vm, 'ACTIVE')
        active = time.time() - start
        self.assertEqual(self.kvm_host, self.host_of(vm))
        self.assertNotEqual(self.kvm_host, self.host_of(container))
        self.assertIsNone(base.kvm_number(self.host_of(container)))
        self.assertEqual(1, len(self.containers(container)))
        for port in self.ports_of(vm):
            self.assertEqual(self.kvm_host, port.binding_host_id)
            self.assertEqual(1, len(self.kvm_interfaces(port.id)))
        lease = self.wait_lease(vm, self.fixed_ip(vm, vm_net))
        self.record('vm boot to ACTIVE %.1f s, to DHCP lease %.1f s'
                    % (active, lease - start))
        return vm, container

    def console(self, server) -> str:
        return self.admin.compute.get_server_console_output(
            server).get('output') or ''

    def wait_lease(self, vm, address: str) -> float:
        """The guest's console says it has ``address`` by DHCP (OVN's)."""
        def leased():
            return address in LEASE.findall(self.console(vm))
        if not base.poll(leased, VM_READY_TIMEOUT, 2):
            self.fail('VM %s (%s) has no DHCP lease for %s after %d s; '
                      'its console:\n%s' % (vm.name, vm.id, address,
                                            VM_READY_TIMEOUT,
                                            self.console(vm)[-2000:]))
        return time.time()

    def vm_ping(self, via, vm_ip: str, address: str) -> bool:
        """The VM pings ``address`` (its CGI, asked by container ``via``
        with busybox's nc; its wget crashes in the static build): True
        when an answer came back."""
        for part in (vm_ip, address):
            self.assertRegex(part, r'\A[0-9.]+\Z')
        result = self.container_exec(
            via, 'sh', '-c', 'printf "GET /cgi-bin/ping?%s HTTP/1.0\\r\\n'
            '\\r\\n" | nc -w %d %s 80' % (address, CGI_TIMEOUT, vm_ip))
        found = re.search(r'(\d+) packets received', result.output)
        return bool(found and int(found.group(1)) > 0)

    def kvm_interfaces(self, port_id: str) -> list:
        return self.ovs_interfaces(port_id, hosts=[self.kvm_host])

    def kvm_netns(self) -> str:
        return 'aio-kvm%d' % base.kvm_number(self.kvm_host)

    def virsh(self, *args: str) -> str:
        socket = os.path.join(base.kvm_dir(base.kvm_number(self.kvm_host)),
                              'libvirt/run/libvirt/libvirt-sock')
        return base.run('virsh', '-q', '-c', 'qemu:///system?socket=' +
                        socket, *args).stdout

    def record(self, line: str) -> None:
        """Figures for README (times depend on the machine's load)."""
        with open(TIMES_LOG, 'a') as f:
            f.write('%s %s: %s\n' % (time.strftime('%H:%M:%S'), self.id(),
                                     line))

    def assertVmGone(self, vm, ports) -> None:
        """Deleted: no domain, no tap in the node, no OVS port there."""
        name = self.admin.compute.get_server(vm.id).instance_name
        self.delete_server(vm)
        self.assertNotIn(name, self.virsh('list', '--all', '--name').split())
        links = base.run('ip', '-n', self.kvm_netns(), '-o', 'link',
                         'show').stdout
        for port in ports:
            self.assertEqual([], self.kvm_interfaces(port.id))
            self.assertNotIn('tap' + port.id[:11], links)

    # -- tests ---------------------------------------------------------------

    def test_vm_and_container_ping_both_ways_and_floating_ips(self):
        router = self.make_router()
        net, _ = self.make_network('net', router=router)
        sg = self.make_mixed_sg()
        vm, container = self.boot_pair(net, net, sg)
        vm_ip, ct_ip = self.fixed_ip(vm, net), self.fixed_ip(container, net)
        start = time.time()
        self.assertReachable(self.container_ping, container, vm_ip)
        self.record('container -> VM ping %.1f s after the lease'
                    % (time.time() - start))
        self.assertReachable(self.vm_ping, container, vm_ip, ct_ip)
        # Floating IPs on both, from the host (the external bridge).
        vm_fip = self.add_floating_ip(vm)
        ct_fip = self.add_floating_ip(container)
        self.assertReachable(self.host_ping, vm_fip)
        self.assertReachable(self.host_ping, ct_fip)
        # Deleted, nothing of the VM stays on the node.
        ports = self.ports_of(vm)
        self.assertTrue(ports)
        self.assertVmGone(vm, ports)
        self.assertUnreachable(self.host_ping, vm_fip)
        self.assertReachable(self.host_ping, ct_fip)

    def test_security_group_rule_blocks_vm_to_container(self):
        net, _ = self.make_network('net', router=self.make_router())
        vm_sg = self.make_mixed_sg()
        ct_sg, icmp_rule = self.make_security_group(ssh=False)
        vm, container = self.boot_pair(net, net, vm_sg, container_sg=ct_sg)
        vm_ip, ct_ip = self.fixed_ip(vm, net), self.fixed_ip(container, net)
        self.assertReachable(self.vm_ping, container, vm_ip, ct_ip)
        # The container's group no longer lets ICMP in: the VM's pings
        # go unanswered (its HTTP still works: the CGI answers).
        self.conn.network.delete_security_group_rule(icmp_rule)
        self.assertUnreachable(self.vm_ping, container, vm_ip, ct_ip)
        self.allow_icmp(ct_sg)
        self.assertReachable(self.vm_ping, container, vm_ip, ct_ip)

    def test_tenant_networks_isolated_until_a_router_joins_them(self):
        net_a, subnet_a = self.make_network('a')
        net_b, subnet_b = self.make_network('b')
        sg = self.make_mixed_sg()
        # The VM on b, a container on a; a second container on b asks
        # the VM for its pings.
        vm, container = self.boot_pair(net_b, net_a, sg)
        helper = self.boot('helper', [net_b], sg)
        vm_ip = self.fixed_ip(vm, net_b)
        ct_ip = self.fixed_ip(container, net_a)
        self.assertReachable(self.container_ping, helper, vm_ip)
        # No way between the networks (a ping the VM sends would show
        # the same, at 20 s a try: its CGI's ping waits that long).
        self.assertUnreachable(self.container_ping, container, vm_ip)
        router = self.conn.network.create_router(name=self.name('join'))
        self.addCleanup(self.admin.network.delete_router, router,
                        ignore_missing=True)
        self.route(router, subnet_a)
        self.route(router, subnet_b)
        self.assertReachable(self.container_ping, container, vm_ip)
        self.assertReachable(self.vm_ping, helper, vm_ip, ct_ip)
