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

"""The [docker] hardening options on the real engine.

Log rotation, the capability drop list, oom_score_adj, the read-only
sandbox and UUID container names on the shared engine; user-namespace
remapping and a second OCI runtime (Debian's crun) on a private dockerd
configured for them.
"""

import glob
import json
import os
import pwd
import shutil
import subprocess
import time
import uuid

import fixtures
from nova.virt import fake as fake_virt

from novadocker import conf
from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import guest
from tests.fixtures import docker as docker_fixtures
from tests.fixtures import host as host_fixtures
from tests.functional import base
from tests.functional import test_network

CONF = conf.CONF
WAIT = 60   # seconds: a bound on waiting, never an assertion on speed


def wait_for(predicate, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError('timed out waiting for %s' % what)


# capability(7) numbers of the names used here.
CAP_NUMBERS = {'CHOWN': 0, 'DAC_OVERRIDE': 1, 'FOWNER': 3, 'FSETID': 4,
               'KILL': 5, 'SETGID': 6, 'SETUID': 7, 'SETPCAP': 8,
               'NET_BIND_SERVICE': 10, 'NET_RAW': 13, 'SYS_CHROOT': 18,
               'MKNOD': 27, 'AUDIT_WRITE': 29, 'SETFCAP': 31}


def cap_bits(*names) -> int:
    return sum(1 << CAP_NUMBERS[name] for name in names)


def read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


class HardeningTest(base.DriverTestCase):

    def pid_of(self, instance, role=guest.ROLE_WORKLOAD) -> int:
        pid = self.inspect(instance, role)['State']['Pid']
        self.assertGreater(pid, 0)
        return pid

    def reference_caps(self, instance) -> int:
        """CapEff of a container of the same image with Docker's default
        capabilities."""
        created = self.api.create_container(
            self.inspect(instance)['Image'], command=['/bin/sleep', '600'],
            labels={docker_fixtures.TEST_LABEL: self.host},
            host_config=self.api.create_host_config(network_mode='none'))
        self.addCleanup(self.api.remove_container, created['Id'], force=True)
        self.api.start(created['Id'])
        pid = self.api.inspect_container(created['Id'])['State']['Pid']
        return docker_fixtures.capabilities(pid)

    # -- logs --------------------------------------------------------------

    def test_log_rotated_and_capped_console_still_works(self):
        self.conf.config(log_max_size='64k', log_max_files=2,
                         group='docker')
        # About 2 MB of output, 30 times the cap, then a marker.
        script = ('i=0; while [ $i -lt 40000 ]; do echo "line $i '
                  'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; i=$((i+1)); done; '
                  'echo END-OF-OUTPUT; exec sleep 2147483647')
        meta = self.add_image(properties={
            'os_command_line': "/bin/sh -c '%s'" % script})
        instance = self.spawn(meta)
        wait_for(lambda: b'END-OF-OUTPUT' in self.driver.get_console_output(
            self.context, instance), 'the end of the output')
        info = self.inspect(instance)
        self.assertEqual({'Type': 'json-file',
                          'Config': {'max-size': '64k', 'max-file': '2'}},
                         info['HostConfig']['LogConfig'])
        files = glob.glob(info['LogPath'] + '*')
        sizes = {path: os.path.getsize(path) for path in files}
        self.assertLessEqual(len(files), 2, sizes)
        # Docker rotates once a file passed max-size: one entry of slack
        # per file (entries are at most one 32 KiB terminal read).
        self.assertLessEqual(sum(sizes.values()),
                             2 * (64 * 1024 + 64 * 1024), sizes)
        output = self.driver.get_console_output(self.context, instance)
        self.assertIn(b'line 39999 ', output)
        self.assertNotIn(b'line 0 ', output)

    # -- capabilities ------------------------------------------------------

    def test_default_drop_list_removes_exactly_mknod_and_setfcap(self):
        instance = self.spawn()
        default = self.reference_caps(instance)
        workload = docker_fixtures.capabilities(self.pid_of(instance))
        self.assertEqual(cap_bits('MKNOD', 'SETFCAP'), default & ~workload)
        self.assertEqual(0, workload & ~default)
        # What sshd, su, ping, chown and low ports need is kept.
        kept = cap_bits('CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'SETUID',
                        'SETGID', 'NET_RAW', 'NET_BIND_SERVICE',
                        'SYS_CHROOT', 'AUDIT_WRITE', 'KILL')
        self.assertEqual(kept, workload & kept)
        self.exec_in(instance, 'ping', '-c', '1', '-W', '5', '127.0.0.1')
        # exec'd processes get the same set as the workload's PID 1.
        status = self.exec_in(instance, 'cat', '/proc/self/status')
        self.assertIn('CapEff:\t%016x' % workload, status)
        # Docker's device cgroup allows mknod; the capability is missing.
        self.assertIn('Operation not permitted', self.assertRaises(
            AssertionError, self.exec_in, instance, '/bin/busybox', 'mknod',
            '/tmp/null', 'c', '1', '3').args[0])

    def test_drop_list_is_configurable(self):
        self.conf.config(cap_drop=['net_raw', 'MKNOD', 'kill'],
                         group='docker')
        instance = self.spawn()
        default = self.reference_caps(instance)
        workload = docker_fixtures.capabilities(self.pid_of(instance))
        self.assertEqual(cap_bits('NET_RAW', 'MKNOD', 'KILL'),
                         default & ~workload)
        self.assertEqual(['NET_RAW', 'MKNOD', 'KILL'],
                         self.inspect(instance)['HostConfig']['CapDrop'])

    def test_unknown_capability_in_config_file_stops_start_up(self):
        self.conf.load_raw_values(group='docker', cap_drop='MKNOD,NOPE')
        driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        self.addCleanup(driver.cleanup_host, self.host)
        exc = self.assertRaises(ValueError, driver.init_host, self.host)
        self.assertIn('NOPE', str(exc))

    # -- sandbox and OOM ---------------------------------------------------

    def test_read_only_sandbox_and_oom_score_adj(self):
        self.conf.config(oom_score_adj=600, sandbox_oom_score_adj=300,
                         group='docker')
        instance = self.spawn()
        sandbox = self.inspect(instance, guest.ROLE_SANDBOX)
        workload = self.inspect(instance)
        self.assertTrue(sandbox['HostConfig']['ReadonlyRootfs'])
        self.assertFalse(workload['HostConfig']['ReadonlyRootfs'])
        self.assertEqual(300, sandbox['HostConfig']['OomScoreAdj'])
        self.assertEqual(600, workload['HostConfig']['OomScoreAdj'])
        sandbox_pid = self.pid_of(instance, guest.ROLE_SANDBOX)
        self.assertEqual('300', read('/proc/%d/oom_score_adj'
                                     % sandbox_pid).strip())
        self.assertEqual('600', read('/proc/%d/oom_score_adj'
                                     % self.pid_of(instance)).strip())
        self.assertEqual('600', self.exec_in(
            instance, 'cat', '/proc/self/oom_score_adj').strip())
        # The sandbox's root filesystem is mounted read-only...
        root = [line.split() for line in
                read('/proc/%d/mountinfo' % sandbox_pid).splitlines()
                if line.split()[4] == '/']
        self.assertTrue(root)
        self.assertIn('ro', root[-1][5].split(','))
        # ...while hostname and resolv.conf still reach the workload, whose
        # own filesystem stays writable.
        self.assertEqual(instance.hostname,
                         self.exec_in(instance, 'hostname').strip())
        self.exec_in(instance, 'cat', '/etc/resolv.conf')
        self.exec_in(instance, 'touch', '/root/written')

    # -- names -------------------------------------------------------------

    def test_same_instance_name_on_two_deployments(self):
        other_host = 'ndtest-%s' % uuid.uuid4().hex[:10]
        self.useFixture(
            docker_fixtures.DockerLeakCheck(other_host, lambda: []))
        other = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        other.init_host(other_host)
        self.addCleanup(other.cleanup_host, other_host)
        meta = self.add_image()
        mine = self.spawn(meta)
        theirs = self.make_instance(meta)
        theirs.id = mine.id
        theirs.host = theirs.node = other_host
        self.assertEqual(mine.name, theirs.name)
        other.spawn(self.context, theirs, meta, [], None, {},
                    network_info=[])
        self.addCleanup(other.destroy, self.context, theirs, [])
        self.assertEqual('/nova-' + mine.uuid, self.inspect(mine)['Name'])
        self.assertEqual('/nova-%s-sandbox' % mine.uuid,
                         self.inspect(mine, guest.ROLE_SANDBOX)['Name'])
        self.assertEqual(
            '/nova-' + theirs.uuid,
            other._guests.get(theirs).inspect()['Name'])
        self.assertEqual([mine.name], self.driver.list_instances())
        self.assertEqual([theirs.name], other.list_instances())
        self.assertEqual(mine.name, self.inspect(mine)['Config']['Labels'][
            guest.LABEL_NAME])


class PrivateEngineMixin:
    """Point the test's driver at a dockerd of its own."""

    def use_private_engine(self, *dockerd_args):
        engine = self.useFixture(docker_fixtures.PrivateDockerd(*dockerd_args))
        self.conf.config(api_url=engine.url, group='docker')
        self.api = engine.api()
        self.leaks = self.useFixture(docker_fixtures.DockerLeakCheck(
            self.host, lambda: list(self.glance.images)))
        self.leaks.api = engine.api()
        self.driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        self.driver.init_host(self.host)
        self.addCleanup(self.driver.cleanup_host, self.host)
        return engine


CRUN = '/usr/bin/crun'
# crun refuses a cgroup v1 host whose unified (v2) hierarchy holds
# controllers ("hybrid mode"), as this test machine's does: run it in a
# mount namespace of its own without /sys/fs/cgroup/unified. A host with
# only v1 or only v2 would register /usr/bin/crun itself.
CRUN_WRAPPER = '''#!/bin/sh
exec unshare -m --propagation private sh -c \\
  'umount /sys/fs/cgroup/unified 2>/dev/null; exec %s "$@"' crun "$@"
''' % CRUN


class RuntimeTest(PrivateEngineMixin, base.DriverTestCase):
    """A flavor's docker:runtime on an engine with crun as a 2nd runtime."""

    def setUp(self):
        super().setUp()
        if not os.path.exists(CRUN):
            docker_fixtures.require_functional_missing(
                self, '%s missing (apt-get install crun)' % CRUN)
        wrapper = os.path.join(self.useFixture(fixtures.TempDir()).path,
                               'crun')
        with open(wrapper, 'w') as handle:
            handle.write(CRUN_WRAPPER)
        os.chmod(wrapper, 0o755)
        self.engine = self.use_private_engine(
            '--add-runtime', 'crun=%s' % wrapper)

    def spawn_with_runtime(self, runtime, meta=None):
        meta = meta or self.add_image()
        instance = self.make_instance(meta)
        instance.flavor.extra_specs = {guest.EXTRA_SPEC_RUNTIME: runtime}
        self.driver.spawn(self.context, instance, meta, [], None, {},
                          network_info=[])
        self.addCleanup(self.driver.destroy, self.context, instance, [])
        return instance

    def runtime_state(self, binary, container_id):
        """``<binary> state`` under the shim's state root(s) (Docker 20.10
        uses runtime-runc/moby for every runc-compatible runtime), or None
        if that runtime does not know the container."""
        for root in glob.glob(os.path.join(self.engine.exec_root,
                                           'runtime-*', 'moby')):
            result = subprocess.run([binary, '--root', root, 'state',
                                     container_id], capture_output=True,
                                    text=True)
            if result.returncode == 0:
                return json.loads(result.stdout)
        return None

    def crun_state(self, container_id) -> dict:
        state = self.runtime_state(CRUN, container_id)
        self.assertIsNotNone(state, 'crun does not know %s' % container_id)
        # ... and runc does not: crun created it.
        self.assertIsNone(self.runtime_state('runc', container_id))
        return state

    def test_flavor_runtime_runs_under_crun(self):
        self.conf.config(allowed_runtimes=['crun'], group='docker')
        instance = self.spawn_with_runtime('crun')
        workload = self.inspect(instance)
        sandbox = self.inspect(instance, guest.ROLE_SANDBOX)
        self.assertEqual('crun', workload['HostConfig']['Runtime'])
        # The sandbox only holds the netns: the engine's default runtime.
        self.assertEqual('runc', sandbox['HostConfig']['Runtime'])
        # crun itself knows the container (runc keeps no state there).
        state = self.crun_state(workload['Id'])
        self.assertEqual('running', state['status'])
        self.assertEqual(workload['State']['Pid'], state['pid'])
        self.assertEqual('1', self.exec_in(instance, 'echo', '1').strip())
        # Stop and start keep the runtime.
        self.driver.power_off(instance, 0)
        self.driver.power_on(self.context, instance, [])
        workload = self.inspect(instance)
        self.assertEqual('running', self.crun_state(workload['Id'])['status'])

    def test_absent_runtime_refused_leaving_nothing(self):
        self.conf.config(allowed_runtimes=['crun', 'runsc'], group='docker')
        self.leaks.forbid_images()
        exc = self.assertRaises(guest.RuntimeUnavailable,
                                self.spawn_with_runtime, 'runsc')
        self.assertIn('runsc', str(exc))
        self.assertIn('crun, runc', str(exc))
        self.assertEqual([], self.leaks.containers())
        self.assertEqual([], self.leaks.loaded_images())

    def test_runtimes_reported_as_traits(self):
        from nova.compute import provider_tree
        tree = provider_tree.ProviderTree()
        tree.new_root(self.host, str(uuid.uuid4()))
        tree.add_traits(self.host, 'CUSTOM_DOCKER_RUNTIME_GONE', 'CUSTOM_X')
        self.driver.update_provider_tree(tree, self.host)
        self.assertEqual({'CUSTOM_DOCKER_RUNTIME_RUNC', 'CUSTOM_X'},
                         set(tree.data(self.host).traits))
        self.conf.config(allowed_runtimes=['crun', 'runsc'], group='docker')
        self.driver.update_provider_tree(tree, self.host)
        self.assertEqual({'CUSTOM_DOCKER_RUNTIME_RUNC',
                          'CUSTOM_DOCKER_RUNTIME_CRUN', 'CUSTOM_X'},
                         set(tree.data(self.host).traits))

    def test_runtime_not_allowed_refused(self):
        self.leaks.forbid_images()
        exc = self.assertRaises(guest.RuntimeUnavailable,
                                self.spawn_with_runtime, 'crun')
        self.assertIn('allowed_runtimes', str(exc))
        self.assertEqual([], self.leaks.containers())


class UsernsRemapFixture(fixtures.Fixture):
    """Lets dockerd --userns-remap=default create its ``dockremap`` user
    and /etc/subuid, /etc/subgid ranges, and removes them afterwards if
    they were not there before (``userdel`` also drops the ranges)."""

    LOCK = '/tmp/nova-docker-dockremap.lock'

    def _setUp(self):
        self.useFixture(host_fixtures.HostLock(self.LOCK))
        try:
            pwd.getpwnam('dockremap')
            existed = True
        except KeyError:
            existed = False
        if not existed:
            self.addCleanup(subprocess.run, ['userdel', 'dockremap'],
                            check=False, stderr=subprocess.DEVNULL)


class UsernsRemapTest(PrivateEngineMixin, test_network.NetworkTestCase):
    """The whole lifecycle with a network on a userns-remap engine."""

    def setUp(self):
        super().setUp()
        if not shutil.which('useradd'):
            docker_fixtures.require_functional_missing(self, 'useradd missing')
        self.useFixture(UsernsRemapFixture())
        self.engine = self.use_private_engine('--userns-remap=default')

    def host_uid_of_root(self, pid: int) -> int:
        """Host uid that uid 0 in the process's user namespace maps to."""
        for line in read('/proc/%d/uid_map' % pid).splitlines():
            inside, outside, count = (int(f) for f in line.split())
            if inside == 0:
                return outside
        raise AssertionError('uid 0 is not mapped in %d' % pid)

    def test_lifecycle_and_network_under_userns_remap(self):
        self.assertIn('name=userns',
                      self.api.info()['SecurityOptions'])
        port = self.ports.network(0)
        vif_a, vif_b = port(), port()
        a = self.spawn_on([vif_a])
        b = self.spawn_on([vif_b])
        for instance in (a, b):
            for role in (guest.ROLE_WORKLOAD, guest.ROLE_SANDBOX):
                pid = self.inspect(instance, role)['State']['Pid']
                self.assertNotEqual(0, self.host_uid_of_root(pid))
                uid = [line for line in read('/proc/%d/status' % pid)
                       .splitlines() if line.startswith('Uid:')][0]
                self.assertNotEqual('0', uid.split()[1], role)
            self.assertEqual('0', self.exec_in(instance, 'id', '-u').strip())
        self.assertPings(a, self.ip_of(vif_b))
        self.assertPings(b, self.ip_of(vif_a, 6))
        # Stop/start, reboot, pause: the network stays.
        self.driver.power_off(a, 0)
        self.driver.power_on(self.context, a, [vif_a])
        self.assertPings(a, self.ip_of(vif_b))
        self.driver.reboot(self.context, b, [vif_b], 'HARD')
        self.assertPings(b, self.ip_of(vif_a))
        self.driver.pause(a)
        self.driver.unpause(a)
        self.assertPings(a, self.ip_of(vif_b))
        # A lost sandbox (engine restarted) is rebuilt with its ports.
        self.api.stop(self.driver._guests.get(
            a, guest.ROLE_SANDBOX).sandbox_id,
                      timeout=0)
        self.driver.power_off(a, 0)
        self.driver.power_on(self.context, a, [vif_a])
        self.assertPings(a, self.ip_of(vif_b))
        self.assertEqual(sorted([a.name, b.name]),
                         self.driver.list_instances())
        self.driver.destroy(self.context, a, [vif_a])
        self.driver.destroy(self.context, b, [vif_b])
        self.assertUnplugged(vif_a, vif_b)
        self.assertEqual([], self.leaks.containers())
