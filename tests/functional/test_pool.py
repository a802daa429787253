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

"""The warm sandbox pool on the real engine: a spawn takes a running pool
sandbox, the instance sees its own hostname and DNS, the pool refills, a
restart reconciles it, and nothing is left behind."""

import os
import socket
import time

from novadocker.virt.docker import guest
from novadocker.virt.docker import identity
from novadocker.virt.docker import pool
from novadocker.virt.docker import privsep as nd_privsep
from tests.fixtures import docker as docker_fixtures
from tests.fixtures import network as net_fixtures
from tests.functional import base
from tests.functional import test_network
from tests.functional import test_network_privsep

CAP_SYS_ADMIN = 21
CAP_SYS_PTRACE = 19


class PoolHelpers:
    """For a DriverTestCase: a driver with a pool, and its free members."""

    def pool_driver(self, size: int):
        """A (re)started nova-compute with a pool of ``size``; its free
        members are removed at the end (a real one keeps them for its
        next start)."""
        self.conf.config(sandbox_pool_size=size, group='docker')
        driver = self.new_driver()
        self.addCleanup(driver._pool.drain)
        self.addCleanup(driver._pool.stop)
        self.driver = driver
        return driver

    def free_ids(self):
        return sorted(c['Id'] for c in self.driver._guests.list_pool()
                      if pool.is_free(c))

    def wait_free(self, count: int, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.free_ids()
            if len(found) == count:
                return found
            time.sleep(0.1)
        self.fail('pool has %d free members, not %d' % (len(found), count))

    def read(self, instance, path):
        return self.exec_in(instance, 'cat', path)


class PoolTestBase(PoolHelpers, base.DriverTestCase):

    def setUp(self):
        super().setUp()
        # identity's privileged halves, as the driver calls them.
        self.useFixture(self.privsep())

    def privsep(self):
        return net_fixtures.PrivsepInProcess()

    def check_identity(self):
        """A pooled instance sees its hostname (kernel and /etc/hostname,
        after a hard reboot too) and its subnets' nameservers."""
        self.pool_driver(1)
        self.wait_free(1)
        instance = self.spawn()
        self.assertTrue(self.driver._guests.lookup(instance).pooled)
        self.assertEqual(instance.hostname, self.read(
            instance, '/proc/sys/kernel/hostname').strip())
        self.assertEqual(instance.hostname + '\n',
                         self.read(instance, '/etc/hostname'))
        # Again after a hard reboot (Docker gives each start the sandbox's
        # placeholder).
        self.driver.reboot(self.context, instance, [], 'HARD')
        self.assertEqual(instance.hostname, self.read(
            instance, '/proc/sys/kernel/hostname').strip())
        # The nameservers of the instance's subnets, as a spawn with ports
        # writes them (the ports themselves need OVS: test_network).
        sandbox = self.driver._guests.lookup(instance).inspect(
            guest.ROLE_SANDBOX)
        identity.write_files(os.path.dirname(sandbox['HostnamePath']),
                             instance.hostname, ['192.0.2.53'])
        resolv = self.read(instance, '/etc/resolv.conf')
        self.assertEqual(['nameserver 192.0.2.53'],
                         [line for line in resolv.splitlines()
                          if line.startswith('nameserver')])


class PoolTest(PoolTestBase):

    def test_instance_sees_its_hostname_and_dns(self):
        self.check_identity()

    def test_spawn_claims_a_running_member_and_the_pool_refills(self):
        self.pool_driver(2)
        members = self.wait_free(2)
        for cid in members:
            info = self.api.inspect_container(cid)
            self.assertTrue(info['State']['Running'])
            self.assertNotIn(guest.LABEL_INSTANCE, info['Config']['Labels'])
        instance = self.spawn()
        found = self.driver._guests.lookup(instance)
        self.assertTrue(found.pooled)
        self.assertIn(found.sandbox_id, members)
        # The member's container now serves the instance: the workload
        # runs in its namespace, under the instance's sandbox name.
        self.assertEqual('container:%s' % found.sandbox_id,
                         self.inspect(instance)['HostConfig']['NetworkMode'])
        self.assertEqual(
            '/' + guest.container_name(instance, guest.ROLE_SANDBOX),
            self.api.inspect_container(found.sandbox_id)['Name'])
        refilled = self.wait_free(2)
        self.assertNotIn(found.sandbox_id, refilled)
        self.assertEqual([instance.uuid], self.driver.list_instance_uuids())

    def test_reaper_removes_the_claimed_sandbox_of_a_forgotten_instance(self):
        self.conf.config(reap_min_age=0, group='docker')
        self.pool_driver(1)
        self.wait_free(1)
        instance = self.spawn()
        claimed = self.driver._guests.lookup(instance).sandbox_id
        self.nova_forgets(instance)
        self.assertEqual([instance.uuid], self.driver.reap('test').reaped)
        self.assertEqual([], self.api.containers(
            all=True, filters={'id': [claimed]}))
        # Free members are the pool's, never the reaper's.
        self.assertEqual(1, len(self.wait_free(1)))

    def test_destroy_leaves_nothing(self):
        self.pool_driver(1)
        self.wait_free(1)
        instance = self.spawn()
        claimed = self.driver._guests.lookup(instance).sandbox_id
        self.driver.destroy(self.context, instance, [])
        self.assertEqual([], self.driver._guests.lookup(instance).containers)
        self.assertEqual([], self.api.containers(
            all=True, filters={'id': [claimed]}))
        self.assertEqual([], self.driver.list_instance_uuids())

    def test_restart_reconciles_stale_and_extra_members(self):
        self.pool_driver(3)
        first = self.wait_free(3)
        self.driver._pool.stop()
        dead = first[0]
        self.api.kill(dead)
        self.pool_driver(2)    # nova-compute restarts with a smaller pool
        # The two live members adopted, the dead one (and nothing else)
        # removed.
        self.assertEqual(sorted(first[1:]), self.wait_free(2))
        self.assertEqual([], self.api.containers(
            all=True, filters={'id': [dead]}))
        after = self.free_ids()
        for cid in after:
            self.assertTrue(
                self.api.inspect_container(cid)['State']['Running'])
        self.assertEqual(2, len(self.api.containers(all=True, filters={
            'label': ['%s=%s' % (guest.LABEL_HOST, self.host),
                      guest.LABEL_POOL + '=1']})))

    def test_size_zero_is_unchanged_and_drains_old_members(self):
        self.pool_driver(1)
        self.wait_free(1)
        self.driver._pool.stop()
        self.pool_driver(0)
        self.assertEqual([], self.free_ids())
        instance = self.spawn()
        found = self.driver._guests.lookup(instance)
        self.assertFalse(found.pooled)
        self.assertEqual(instance.uuid, self.api.inspect_container(
            found.sandbox_id)['Config']['Labels'][guest.LABEL_INSTANCE])
        self.assertEqual(instance.hostname, self.read(
            instance, '/proc/sys/kernel/hostname').strip())

    def test_privileged_side_refuses_the_host(self):
        """The host's own UTS namespace (this process's) and any directory
        but a container's are refused, on the privileged side."""
        before = socket.gethostname()
        self.assertRaises(identity.InvalidArgument,
                          identity.privileged_set_hostname, os.getpid(),
                          'hijacked')
        self.assertEqual(before, socket.gethostname())
        self.assertRaises(identity.InvalidArgument,
                          identity.privileged_write_files, '/etc',
                          'hijacked', [])


class PoolRealPrivsepTest(PoolTestBase):
    """The identity's entrypoints through a real privsep daemon, with the
    context's capabilities only (NET_ADMIN, SYS_ADMIN: no DAC_OVERRIDE)."""

    def privsep(self):
        return test_network_privsep.RealPrivsepDaemons()

    def test_instance_sees_its_hostname_and_dns(self):
        self.check_identity()
        daemon = test_network_privsep.daemon_pid(nd_privsep.identity)
        self.assertNotEqual(os.getpid(), daemon)
        self.assertEqual((1 << CAP_SYS_ADMIN) | (1 << CAP_SYS_PTRACE),
                         docker_fixtures.capabilities(daemon))


class PoolNetworkTest(PoolHelpers, test_network.NetworkTestCase):
    """Ports plugged into claimed sandboxes (OVS), and the subnets'
    nameservers in them."""

    def test_pooled_instances_ping_each_other(self):
        self.pool_driver(2)
        members = self.wait_free(2)
        port = self.ports.network(0)
        vif_a, vif_b = port(), port()
        a = self.spawn_on([vif_a])
        b = self.spawn_on([vif_b])
        for instance in (a, b):
            self.assertIn(self.driver._guests.lookup(instance).sandbox_id,
                          members)
            self.assertIn('nameserver 10.251.0.53', self.exec_in(
                instance, 'cat', '/etc/resolv.conf').splitlines())
            self.assertEqual(instance.hostname, self.exec_in(
                instance, 'cat', '/proc/sys/kernel/hostname').strip())
        self.assertPings(a, self.ip_of(vif_b))
        self.assertPings(b, self.ip_of(vif_a))
        self.driver.destroy(self.context, a, [vif_a])
        self.driver.destroy(self.context, b, [vif_b])
        self.assertUnplugged(vif_a, vif_b)
