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

"""Every lifecycle operation of DockerDriver on the real Docker engine."""

import datetime
import functools
import threading
import time
from unittest import mock
import uuid

from nova.compute import power_state
from nova import exception

from novadocker import conf
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import guest
from novadocker.virt.docker import images
from tests.fixtures import images as image_fixtures
from tests.functional import base

CONF = conf.CONF
MEBI = 1024 * 1024


@functools.lru_cache(maxsize=None)
def graceful_image() -> bytes:
    """PID 1 exits 0 on SIGTERM (a well-behaved init), and says when its
    trap is set: a SIGTERM before that kills the shell (143)."""
    return image_fixtures.build_saved_image(changes=(
        'CMD ["/bin/sh", "-c", '
        '"trap \'exit 0\' TERM; touch %s; while :; do sleep 1; done"]'
        % TRAP_SET,))


TRAP_SET = '/tmp/term-trap-set'


@functools.lru_cache(maxsize=None)
def entrypoint_image() -> bytes:
    """ENTRYPOINT + CMD: the CMD leaves a marker, then sleeps."""
    return image_fixtures.build_saved_image(changes=(
        'ENTRYPOINT ["/bin/sh", "-c"]',
        'CMD ["echo cmd-ran > /tmp/marker; exec sleep 2147483647"]'))


def wait_for(predicate, what, timeout=60):
    """Poll until predicate() is true (not a timing assertion: the
    deadline only stops a hung test)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for %s' % what)
        time.sleep(0.1)


class LifecycleTest(base.DriverTestCase):

    def state(self, instance):
        return self.driver.get_info(instance).state

    def started_at(self, instance):
        return self.inspect(instance)['State']['StartedAt']

    def exits_since(self, instance, since):
        """Exit codes of the workload's 'die' events since ``since``."""
        container = self.driver._guests.get(instance).workload_id
        events = self.api.events(
            since=since, until=datetime.datetime.utcnow() +
            datetime.timedelta(seconds=1), decode=True,
            filters={'container': container, 'event': 'die'})
        return [int(e['Actor']['Attributes']['exitCode']) for e in events]

    def now(self):
        return datetime.datetime.utcnow() - datetime.timedelta(seconds=1)

    def spawn_graceful(self):
        """An instance of graceful_image whose shell has set its trap:
        spawn returns once the process started, not once it got there
        (on a loaded CI machine a stop came first and it exited 143)."""
        instance = self.spawn(self.add_image(graceful_image()))
        wait_for(lambda: self.exec_result(
            instance, 'test', '-e', TRAP_SET, check=False).exit_code == 0,
            'the workload to set its TERM trap')
        return instance

    # -- spawn -------------------------------------------------------------

    def test_spawn_names_labels_hostname_limits(self):
        instance = self.spawn(vcpus=2, memory_mb=96)
        info = self.inspect(instance)
        self.assertEqual('/nova-' + instance.uuid, info['Name'])
        self.assertEqual({guest.LABEL_INSTANCE: instance.uuid,
                          guest.LABEL_HOST: self.host,
                          guest.LABEL_ROLE: guest.ROLE_WORKLOAD,
                          guest.LABEL_NAME: instance.name},
                         {k: v for k, v in info['Config']['Labels'].items()
                          if k.startswith('org.openstack')})
        self.assertEqual(instance.hostname,
                         self.exec_in(instance, 'hostname').strip())
        config = info['HostConfig']
        self.assertEqual(96 * MEBI, config['Memory'])
        self.assertEqual(96 * MEBI, config['MemorySwap'])
        self.assertEqual(2 * CONF.docker.cpu_period_us, config['CpuQuota'])
        self.assertEqual(CONF.docker.cpu_period_us, config['CpuPeriod'])
        self.assertEqual(2048, config['CpuShares'])
        self.assertEqual(CONF.docker.pids_limit, config['PidsLimit'])
        self.assertIn('no-new-privileges', config['SecurityOpt'])
        self.assertFalse(config['Privileged'])
        self.assertEqual('no', config['RestartPolicy']['Name'])
        sandbox = self.inspect(instance, guest.ROLE_SANDBOX)
        self.assertEqual('container:' + sandbox['Id'], config['NetworkMode'])
        # The limits are real inside the container, not just recorded.
        self.assertIn('NoNewPrivs:\t1', self.exec_in(
            instance, 'cat', '/proc/1/status'))
        memory_limit = self.exec_in(
            instance, 'sh', '-c',
            'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null '
            '|| cat /sys/fs/cgroup/memory.max')
        self.assertEqual(96 * MEBI, int(memory_limit))
        pids_max = self.exec_in(
            instance, 'sh', '-c',
            'cat /sys/fs/cgroup/pids/pids.max 2>/dev/null '
            '|| cat /sys/fs/cgroup/pids.max')
        self.assertEqual(CONF.docker.pids_limit, int(pids_max))
        cpu_quota = self.exec_in(
            instance, 'sh', '-c',
            'cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null '
            '|| cut -d" " -f1 /sys/fs/cgroup/cpu.max')
        self.assertEqual(2 * CONF.docker.cpu_period_us, int(cpu_quota))
        self.assertEqual(power_state.RUNNING, self.state(instance))

    def test_image_entrypoint_and_cmd_honoured(self):
        instance = self.spawn(self.add_image(entrypoint_image()))
        info = self.inspect(instance)
        self.assertEqual('/bin/sh', info['Path'])
        self.assertEqual(['-c', 'echo cmd-ran > /tmp/marker; '
                          'exec sleep 2147483647'], info['Args'])
        wait_for(lambda: self._marker(instance), 'the CMD to run')
        self.assertEqual('cmd-ran', self._marker(instance))

    def test_os_command_line_overrides_cmd(self):
        meta = self.add_image(entrypoint_image(), properties={
            'os_command_line':
                '"echo override-ran > /tmp/marker; exec sleep 2147483647"'})
        instance = self.spawn(meta)
        info = self.inspect(instance)
        self.assertEqual('/bin/sh', info['Path'])   # ENTRYPOINT kept
        self.assertEqual(['-c', 'echo override-ran > /tmp/marker; '
                          'exec sleep 2147483647'], info['Args'])
        wait_for(lambda: self._marker(instance), 'the command to run')
        self.assertEqual('override-ran', self._marker(instance))

    def _marker(self, instance):
        return self.exec_in(instance, 'sh', '-c',
                            'cat /tmp/marker 2>/dev/null; true').strip()

    # -- destroy -----------------------------------------------------------

    def test_destroy_is_idempotent(self):
        instance = self.spawn()
        self.driver.destroy(self.context, instance, [])
        self.assertFalse(self.driver.instance_exists(instance))
        self.assertEqual([], self.leaks.containers())
        self.driver.destroy(self.context, instance, [])
        never = self.make_instance(self.add_image())
        self.driver.destroy(self.context, never, [])
        self.assertRaises(exception.InstanceNotFound, self.driver.get_info,
                          instance)
        self.assertEqual([], self.driver.list_instances())

    def test_destroy_paused_and_stopped(self):
        paused, stopped = self.spawn(), self.spawn()
        self.driver.pause(paused)
        self.driver.power_off(stopped, timeout=0)
        for instance in (paused, stopped):
            self.driver.destroy(self.context, instance, [])
            self.assertFalse(self.driver.instance_exists(instance))
        self.assertEqual([], self.leaks.containers())

    # -- power ---------------------------------------------------------------

    def test_power_off_graceful(self):
        instance = self.spawn_graceful()
        since = self.now()
        # A generous timeout: had it been used up, the process would have
        # been SIGKILLed (137), not exited 0 on its own.
        self.driver.power_off(instance, timeout=120, retry_interval=5)
        self.assertEqual(power_state.SHUTDOWN, self.state(instance))
        self.assertEqual(0, self.inspect(instance)['State']['ExitCode'])
        self.assertEqual([0], self.exits_since(instance, since))

    def test_power_off_kills_after_timeout(self):
        # Without Docker's init (image property docker_init=false), the
        # default image's PID 1 is sleep, which ignores SIGTERM.
        meta = self.add_image()
        instance = self.make_instance(meta)
        instance.system_metadata = {'image_docker_init': 'false'}
        self.driver.spawn(self.context, instance, meta, [], None, {},
                          network_info=[])
        self.addCleanup(self.driver.destroy, self.context, instance, [])
        self.driver.power_off(instance, timeout=1, retry_interval=1)
        self.assertEqual(power_state.SHUTDOWN, self.state(instance))
        self.assertEqual(137, self.inspect(instance)['State']['ExitCode'])
        # Stopping a stopped instance is not an error.
        self.driver.power_off(instance, timeout=1, retry_interval=1)
        self.assertEqual(power_state.SHUTDOWN, self.state(instance))

    def test_power_on_keeps_sandbox(self):
        instance = self.spawn()
        sandbox = self.inspect(instance, guest.ROLE_SANDBOX)
        self.driver.power_off(instance, timeout=0)
        self.assertEqual(power_state.SHUTDOWN, self.state(instance))
        # The sandbox (network namespace, ports) stays up while off.
        self.assertTrue(self.inspect(
            instance, guest.ROLE_SANDBOX)['State']['Running'])
        self.driver.power_on(self.context, instance, [])
        self.assertEqual(power_state.RUNNING, self.state(instance))
        after = self.inspect(instance, guest.ROLE_SANDBOX)
        self.assertEqual(sandbox['Id'], after['Id'])
        self.assertEqual(sandbox['State']['StartedAt'],
                         after['State']['StartedAt'])

    def test_power_on_restarts_a_lost_sandbox(self):
        instance = self.spawn()
        self.driver.power_off(instance, timeout=0)
        self.api.stop(self.driver._guests.get(
            instance, guest.ROLE_SANDBOX).sandbox_id,
                      timeout=0)
        self.driver.power_on(self.context, instance, [])
        self.assertEqual(power_state.RUNNING, self.state(instance))
        self.assertTrue(self.inspect(
            instance, guest.ROLE_SANDBOX)['State']['Running'])

    def test_reboot_soft(self):
        instance = self.spawn_graceful()
        before = self.started_at(instance)
        since = self.now()
        self.driver.reboot(self.context, instance, [], 'SOFT')
        self.assertEqual(power_state.RUNNING, self.state(instance))
        self.assertNotEqual(before, self.started_at(instance))
        self.assertEqual([0], self.exits_since(instance, since))

    def test_reboot_hard(self):
        instance = self.spawn_graceful()
        before = self.started_at(instance)
        since = self.now()
        self.driver.reboot(self.context, instance, [], 'HARD')
        self.assertEqual(power_state.RUNNING, self.state(instance))
        self.assertNotEqual(before, self.started_at(instance))
        # Killed, not asked: even a SIGTERM-friendly process gets 137.
        self.assertEqual([137], self.exits_since(instance, since))

    def test_reboot_hard_from_stopped_and_paused(self):
        instance = self.spawn()
        self.driver.power_off(instance, timeout=0)
        self.driver.reboot(self.context, instance, [], 'HARD')
        self.assertEqual(power_state.RUNNING, self.state(instance))
        self.driver.pause(instance)
        before = self.started_at(instance)
        self.driver.reboot(self.context, instance, [], 'HARD')
        self.assertEqual(power_state.RUNNING, self.state(instance))
        self.assertNotEqual(before, self.started_at(instance))

    def test_pause_unpause(self):
        instance = self.spawn()
        self.driver.pause(instance)
        self.assertEqual(power_state.PAUSED, self.state(instance))
        self.assertTrue(self.inspect(instance)['State']['Paused'])
        self.driver.unpause(instance)
        self.assertEqual(power_state.RUNNING, self.state(instance))
        self.assertFalse(self.inspect(instance)['State']['Paused'])
        self.assertEqual('ok', self.exec_in(instance, 'echo', 'ok').strip())

    def test_suspend_resume_freezes(self):
        instance = self.spawn()
        pid = self.inspect(instance)['State']['Pid']
        self.driver.suspend(self.context, instance)
        info = self.inspect(instance)
        self.assertTrue(info['State']['Paused'])
        self.assertEqual(pid, info['State']['Pid'])   # frozen, not stopped
        self.assertEqual(power_state.PAUSED, self.state(instance))
        self.driver.resume(self.context, instance, [])
        self.assertEqual(power_state.RUNNING, self.state(instance))
        self.assertEqual(pid, self.inspect(instance)['State']['Pid'])

    def test_power_off_a_paused_instance(self):
        instance = self.spawn()
        self.driver.pause(instance)
        self.driver.power_off(instance, timeout=0)
        self.assertEqual(power_state.SHUTDOWN, self.state(instance))

    def test_soft_delete_restore(self):
        instance = self.spawn_graceful()
        before = self.started_at(instance)
        self.driver.soft_delete(instance)
        self.assertEqual(power_state.SHUTDOWN, self.state(instance))
        self.assertTrue(self.driver.instance_exists(instance))
        self.assertEqual(0, self.inspect(instance)['State']['ExitCode'])
        self.driver.restore(instance)
        self.assertEqual(power_state.RUNNING, self.state(instance))
        self.assertNotEqual(before, self.started_at(instance))

    def test_rebuild_default_impl(self):
        """What ComputeManager._rebuild_default_impl does: power off
        (clean), destroy, spawn the same instance from the new image."""
        old_meta = self.add_image()
        instance = self.spawn(old_meta)
        old_id = self.inspect(instance)['Id']
        new_meta = self.add_image(entrypoint_image())
        self.driver.power_off(instance, CONF.shutdown_timeout, 1)
        self.driver.destroy(self.context, instance, [],
                            block_device_info=None)
        instance.image_ref = new_meta.id
        self.driver.spawn(self.context, instance, new_meta, [], None, {},
                          network_info=[])
        info = self.inspect(instance)
        self.assertNotEqual(old_id, info['Id'])
        self.assertEqual('/nova-' + instance.uuid, info['Name'])
        self.assertEqual(
            self.api.inspect_image(images.glance_tag(new_meta.id))['Id'],
            info['Image'])
        self.assertEqual([instance.uuid], self.driver.list_instance_uuids())
        self.assertEqual(power_state.RUNNING, self.state(instance))
        wait_for(lambda: self._marker(instance), 'the new image to run')

    # -- reading -------------------------------------------------------------

    def test_get_info_states(self):
        instance = self.spawn()
        info = self.driver.get_info(instance)
        self.assertEqual(power_state.RUNNING, info.state)
        self.assertEqual(self.inspect(instance)['Id'], info.internal_id)
        self.driver.pause(instance)
        self.assertEqual(power_state.PAUSED, self.state(instance))
        self.driver.power_off(instance, timeout=0)
        self.assertEqual(power_state.SHUTDOWN, self.state(instance))
        self.driver.destroy(self.context, instance, [])
        self.assertRaises(exception.InstanceNotFound, self.driver.get_info,
                          instance)

    def test_cached_state_right_after_stop_and_start_is_not_stale(self):
        """The power-state sync's get_info (use_cache) just after the
        driver changed the instance: Docker 26 still lists a container as
        running once docker stop has returned (and as exited once docker
        start has), so a listing made then must not answer for it."""
        instance = self.spawn()
        seen = []
        for _round in range(8):
            self.driver._states.forget()   # every read below lists again
            self.driver.power_off(instance, timeout=0)
            seen.append(self.driver.get_info(instance).state)
            self.driver._states.forget()
            self.driver.power_on(self.context, instance, [])
            seen.append(self.driver.get_info(instance).state)
        self.assertEqual([power_state.SHUTDOWN, power_state.RUNNING] * 8,
                         seen)

    def test_console_output_is_the_bounded_log_tail(self):
        self.conf.config(console_log_bytes=2048, group='docker')
        meta = self.add_image(properties={'os_command_line': (
            '/bin/sh -c "i=0; while [ $i -lt 400 ]; do '
            'echo console-line-$i-abcdefghijklmnopqrstuvwxyz; '
            'i=$((i+1)); done; exec sleep 2147483647"')})
        instance = self.spawn(meta)
        container = self.driver._guests.get(instance).workload_id
        wait_for(lambda: b'console-line-399-' in self.api.logs(container),
                 'the output')
        full = self.api.logs(container)
        self.assertGreater(len(full), 5 * 2048)
        output = self.driver.get_console_output(self.context, instance)
        self.assertEqual(2048, len(output))
        self.assertEqual(full[-2048:], output)
        self.assertTrue(output.rstrip().endswith(
            b'console-line-399-abcdefghijklmnopqrstuvwxyz'))

    def test_console_output_short_log(self):
        meta = self.add_image(properties={'os_command_line': (
            '/bin/sh -c "echo hello-console; exec sleep 2147483647"')})
        instance = self.spawn(meta)
        wait_for(lambda: b'hello-console' in self.driver.get_console_output(
            self.context, instance), 'the output')
        self.assertEqual(b'hello-console\r\n',
                         self.driver.get_console_output(self.context,
                                                        instance))

    def test_diagnostics(self):
        instance = self.spawn(memory_mb=64)
        diags = self.driver.get_instance_diagnostics(instance)
        self.assertEqual('running', diags.state)
        self.assertEqual('docker', diags.hypervisor)
        self.assertEqual(64, diags.memory_details.maximum)
        self.assertLessEqual(diags.memory_details.used, 64)
        self.assertGreaterEqual(len(diags.cpu_details), 1)
        self.assertGreater(sum(c.time for c in diags.cpu_details), 0)
        self.assertGreaterEqual(diags.uptime, 0)
        legacy = self.driver.get_diagnostics(instance)
        self.assertEqual(64 * 1024, legacy['memory'])
        self.assertGreater(legacy['memory-actual'], 0)
        self.assertGreater(legacy['cpu0_time'], 0)
        self.driver.power_off(instance, timeout=0)
        self.assertEqual('shutdown',
                         self.driver.get_instance_diagnostics(instance).state)


class SpawnFailureTest(base.DriverTestCase):
    """The engine refuses the workload: what the spawn made goes away."""

    def test_create_refused(self):
        self.leaks.forbid_images()
        meta = self.add_image()
        # Docker's floor is 6 MB of memory: create_container is refused
        # after the image was loaded and the sandbox started.
        instance = self.make_instance(meta, memory_mb=4)
        exc = self.assertRaises(
            exception.NovaException, self.driver.spawn, self.context,
            instance, meta, [], None, {}, network_info=[])
        self.assertIn('create container', str(exc))
        self.assertIn('6MB', str(exc))
        self.assertEqual([], self.leaks.containers())
        self.assertEqual([], self.api.images(
            name=images.glance_tag(meta.id)))
        self.assertEqual(1, self.glance.download_count[meta.id])


class SpawnFaultTest(base.DriverTestCase):
    """What the engine says when a spawn cannot go on becomes the right
    Nova exception: the boot's fault names the image, not a vanished
    instance."""

    def test_image_removed_before_create_is_an_image_fault(self):
        self.leaks.forbid_images()
        meta = self.add_image()
        real = self.driver._create_sandbox

        def remove_image_first(instance, network_info):
            # Fault injection: an operator's docker rmi -f meanwhile.
            self.api.remove_image(images.glance_tag(meta.id), force=True)
            return real(instance, network_info)
        instance = self.make_instance(meta)
        with mock.patch.object(self.driver, '_create_sandbox',
                               autospec=True,
                               side_effect=remove_image_first):
            exc = self.assertRaises(
                exception.ImageUnacceptable, self.driver.spawn,
                self.context, instance, meta, [], None, {}, network_info=[])
        self.assertIsInstance(exc, docker_client.ImageMissing)
        self.assertNotIsInstance(exc, exception.InstanceNotFound)
        self.assertIn(meta.id, str(exc))
        self.assertIn('No such image', exc.reason)
        self.assertEqual([], self.leaks.containers())

    def test_missing_command_is_an_image_fault(self):
        meta = self.add_image(properties={
            'os_command_line': '/no/such/command'})
        instance = self.make_instance(meta)
        exc = self.assertRaises(
            exception.ImageUnacceptable, self.driver.spawn, self.context,
            instance, meta, [], None, {}, network_info=[])
        self.assertIsInstance(exc, docker_client.CommandNotFound)
        self.assertIn('/no/such/command', exc.reason)
        self.assertIn(meta.id, str(exc))
        self.assertEqual([], self.leaks.containers())


class ConcurrentSpawnTest(base.DriverTestCase):
    """Two spawns of one uncached image at once; the one that loaded it
    fails after the other found it cached: the image stays for the
    other, which boots."""

    def test_failed_loader_keeps_the_image_of_the_other_spawn(self):
        meta = self.add_image()
        loader = self.make_instance(meta, memory_mb=4)   # refused by Docker
        other = self.make_instance(meta)
        loader_holds = threading.Event()
        other_holds = threading.Event()
        real = self.driver._create_sandbox

        def ordered(instance, network_info):
            # Fault injection: force the interleaving. The loader waits
            # until the other spawn holds the image, then fails; the other
            # goes on only once the loader has cleaned up.
            if instance.uuid == loader.uuid:
                loader_holds.set()
                self.assertTrue(other_holds.wait(60))
            else:
                other_holds.set()
                loader_thread.join(60)
            return real(instance, network_info)

        errors = {}

        def spawn(instance):
            try:
                self.driver.spawn(self.context, instance, meta, [], None,
                                  {}, network_info=[])
            except Exception as exc:
                errors[instance.uuid] = exc

        with mock.patch.object(self.driver, '_create_sandbox',
                               autospec=True, side_effect=ordered):
            loader_thread = threading.Thread(target=spawn, args=(loader,))
            loader_thread.start()
            self.assertTrue(loader_holds.wait(60))
            other_thread = threading.Thread(target=spawn, args=(other,))
            other_thread.start()
            loader_thread.join(120)
            other_thread.join(120)
        self.addCleanup(self.driver.destroy, self.context, other, [])

        self.assertEqual([loader.uuid], list(errors))
        self.assertIn('create container', str(errors[loader.uuid]))
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(other).state)
        self.assertEqual(1, len(self.api.images(
            name=images.glance_tag(meta.id))))
        self.assertEqual(1, self.glance.download_count[meta.id])
        self.assertEqual(0, images.holders(meta.id))
        self.assertEqual([other.uuid], self.driver.list_instance_uuids())


class OwnershipTest(base.DriverTestCase):
    """Containers not labelled for this host are never listed or touched."""

    def _foreign(self, labels):
        name = 'ndtest-foreign-%s' % uuid.uuid4().hex[:8]
        created = self.api.create_container(
            CONF.docker.sandbox_image, name=name, labels=labels,
            host_config=self.api.create_host_config(network_mode='none'))
        self.addCleanup(self.api.remove_container, created['Id'], force=True)
        self.api.start(created['Id'])
        return created['Id']

    def test_foreign_containers_untouched(self):
        instance = self.spawn()
        plain = self._foreign({})
        other_host = 'ndtest-other-%s' % uuid.uuid4().hex[:8]
        # Same instance UUID, another compute host: still not ours.
        twin = self._foreign({guest.LABEL_INSTANCE: instance.uuid,
                              guest.LABEL_HOST: other_host,
                              guest.LABEL_ROLE: guest.ROLE_WORKLOAD})
        stranger = self.make_instance(self.add_image())
        alien = self._foreign({guest.LABEL_INSTANCE: stranger.uuid,
                               guest.LABEL_HOST: other_host,
                               guest.LABEL_ROLE: guest.ROLE_WORKLOAD})

        self.assertEqual([instance.uuid], self.driver.list_instance_uuids())
        self.assertEqual([instance.name], self.driver.list_instances())
        self.assertFalse(self.driver.instance_exists(stranger))
        for call in (self.driver.get_info,
                     lambda i: self.driver.power_off(i, timeout=0),
                     self.driver.pause,
                     lambda i: self.driver.get_console_output(
                         self.context, i)):
            self.assertRaises(exception.InstanceNotFound, call, stranger)
        self.driver.destroy(self.context, stranger, [])
        self.driver.destroy(self.context, instance, [])
        self.driver.destroy(self.context, instance, [])

        for container in (plain, twin, alien):
            state = self.api.inspect_container(container)['State']
            self.assertTrue(state['Running'], container)
            self.assertFalse(state['Paused'], container)
        self.assertEqual([], self.driver.list_instance_uuids())

    def test_listing_is_one_request(self):
        """Counted on the wire: one HTTP request to the engine however
        many instances there are."""
        instances = [self.spawn() for _ in range(3)]
        self._foreign({})
        api = self.driver.api
        for method, expected in (
                (self.driver.list_instance_uuids,
                 sorted(i.uuid for i in instances)),
                (self.driver.list_instances,
                 sorted(i.name for i in instances))):
            with mock.patch.object(api, 'send', wraps=api.send) as send:
                self.assertEqual(expected, method())
            self.assertEqual(1, send.call_count)
            self.assertIn('org.openstack.nova.host%3D' + self.host,
                          send.call_args.args[0].url)


class ReconcileTest(base.DriverTestCase):
    """A nova-compute restart: a new driver object on the same host."""

    def _restart(self):
        return self.new_driver()

    def test_restart_keeps_instances_running(self):
        running = self.spawn()
        stopped = self.spawn()
        self.driver.power_off(stopped, timeout=0)
        before = {i.uuid: self.inspect(i) for i in (running, stopped)}

        driver = self._restart()
        # What ComputeManager.init_host does next.
        self.assertEqual(sorted([running.uuid, stopped.uuid]),
                         driver.list_instance_uuids())
        for instance in (running, stopped):
            driver.plug_vifs(instance, [])
        self.assertEqual(power_state.RUNNING,
                         driver.get_info(running, use_cache=False).state)
        self.assertEqual(power_state.SHUTDOWN,
                         driver.get_info(stopped, use_cache=False).state)
        for instance in (running, stopped):
            after = self.inspect(instance)
            self.assertEqual(before[instance.uuid]['Id'], after['Id'])
            self.assertEqual(before[instance.uuid]['State']['StartedAt'],
                             after['State']['StartedAt'])

    def test_resume_state_on_host_boot(self):
        instance = self.spawn()
        # What a host reboot leaves: both containers exited.
        for role in (guest.ROLE_WORKLOAD, guest.ROLE_SANDBOX):
            self.api.stop(self.driver._guests.get(
                instance, role).id(role), timeout=0)
        driver = self._restart()
        self.assertEqual(power_state.SHUTDOWN, driver.get_info(
            instance, use_cache=False).state)
        driver.resume_state_on_host_boot(self.context, instance, [], None)
        self.assertEqual(power_state.RUNNING, driver.get_info(instance).state)
        self.assertTrue(self.inspect(
            instance, guest.ROLE_SANDBOX)['State']['Running'])
