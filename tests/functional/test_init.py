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

"""Docker's init as PID 1 on the real engine: a plain shell image stops
and soft-reboots at once with Nova's default timeouts, orphans are reaped,
and images with their own init opt out."""

import functools
import time
from unittest import mock

from nova.compute import power_state

from novadocker import conf
from novadocker.virt.docker import driver as docker_driver
from tests.fixtures import images as image_fixtures
from tests.functional import base
from tests.functional import test_lifecycle

CONF = conf.CONF
wait_for = test_lifecycle.wait_for
SIGTERM_EXIT = 128 + 15
SIGKILL_EXIT = 128 + 9
SIGHUP_EXIT = 128 + 1


@functools.lru_cache(maxsize=None)
def shell_image() -> bytes:
    """What most shell images do: no TERM trap. As PID 1 the shell would
    ignore SIGTERM and wait for SIGKILL."""
    return image_fixtures.build_saved_image(changes=(
        'CMD ["/bin/sh", "-c", "echo hi; sleep 100000"]',))


@functools.lru_cache(maxsize=None)
def interactive_shell_image(stop_signal=None) -> bytes:
    """The all-in-one's image: an interactive shell on the TTY (the serial
    console's prompt), which ignores SIGTERM but not SIGHUP."""
    return image_fixtures.build_saved_image(
        changes=('CMD ["/bin/sh", "-c", "echo hi; exec /bin/sh"]',),
        stop_signal=stop_signal)


ORPHAN_SCRIPT = b"""#!/bin/sh
# Start a child that records its PID and ends a second later, and leave it
# behind: it is orphaned to PID 1, which must reap it when it ends.
sh -c 'echo $$ > /tmp/orphan.pid; sleep 1' &
exit 0
"""


@functools.lru_cache(maxsize=None)
def orphan_image() -> bytes:
    return image_fixtures.build_saved_image(
        changes=('CMD ["/bin/sh", "-c", '
                 '"/bin/orphan.sh; exec sleep 2147483647"]',),
        extra_files={'bin/orphan.sh': ORPHAN_SCRIPT})


class InitTest(base.DriverTestCase):

    def setUp(self):
        super().setUp()
        # Nova's own default (60 s), not the short one DriverTestCase sets:
        # only a workload that really dies of SIGTERM returns promptly.
        CONF.clear_override('shutdown_timeout')
        self.assertEqual(60, CONF.shutdown_timeout)

    def spawn_with(self, image: bytes, **system_metadata):
        """Spawn with image properties as Nova hands them over: copied into
        system_metadata as image_<name>."""
        meta = self.add_image(image)
        instance = self.make_instance(meta)
        instance.system_metadata = {'image_' + k: v
                                    for k, v in system_metadata.items()}
        self.driver.spawn(self.context, instance, meta, [], None, {},
                          network_info=[])
        self.addCleanup(self.driver.destroy, self.context, instance, [])
        return instance

    def state(self, instance):
        return self.driver.get_info(instance).state

    def pid1(self, instance) -> str:
        return self.exec_in(instance, 'cat', '/proc/1/cmdline').split(
            '\0')[0]

    def wait_console(self, instance, text: bytes):
        wait_for(lambda: text in self.driver.get_console_output(
            self.context, instance), 'console output %r' % text)

    def test_init_is_pid_1_by_default(self):
        instance = self.spawn_with(shell_image())
        self.assertTrue(self.inspect(instance)['HostConfig']['Init'])
        self.assertEqual('/sbin/docker-init', self.pid1(instance))

    def test_command_looked_up_on_path_before_start(self):
        """Under the init, docker start no longer refuses a missing
        command: the driver looks it up (PATH, links) itself."""
        meta = self.add_image(shell_image(), properties={
            'os_command_line': 'sleep 2147483647'})
        instance = self.make_instance(meta)
        self.driver.spawn(self.context, instance, meta, [], None, {},
                          network_info=[])
        self.addCleanup(self.driver.destroy, self.context, instance, [])
        self.assertEqual(power_state.RUNNING, self.state(instance))
        self.assertEqual('sleep', self.inspect(instance)['Path'])

    def test_image_with_its_own_init_opts_out(self):
        instance = self.spawn_with(shell_image(), docker_init='false')
        self.assertFalse(self.inspect(instance)['HostConfig']['Init'])
        # The shell itself, which execs its last command.
        self.assertEqual('sleep', self.pid1(instance))

    def test_stop_shell_image_at_once_with_default_timeout(self):
        instance = self.spawn_with(shell_image())
        self.wait_console(instance, b'hi')
        timeout = docker_driver.shutdown_timeout(instance)
        self.assertEqual(60, timeout)
        started = time.monotonic()
        # What ComputeManager._power_off_instance passes for a clean stop.
        self.driver.power_off(instance, timeout,
                              CONF.compute.shutdown_retry_interval)
        print('power_off of a shell image took %.2f s (timeout %d s)'
              % (time.monotonic() - started, timeout))
        self.assertEqual(power_state.SHUTDOWN, self.state(instance))
        # The shell died of SIGTERM (143), it was not SIGKILLed (137)
        # at the end of the timeout.
        self.assertEqual(SIGTERM_EXIT,
                         self.inspect(instance)['State']['ExitCode'])

    def test_interactive_shell_stops_at_once_by_the_images_stop_signal(self):
        """docker stop sends the image's StopSignal: SIGHUP ends the
        interactive shell (tini passes it on), no SIGKILL at the end of
        Nova's default timeout."""
        instance = self.spawn_with(interactive_shell_image('SIGHUP'))
        self.assertEqual('SIGHUP', self.inspect(instance)['Config'][
            'StopSignal'])
        self.assertEqual(SIGHUP_EXIT, self.power_off_at_prompt(instance))

    def test_interactive_shell_ignores_sigterm(self):
        """The control: without the stop signal, the same shell ignores
        SIGTERM and is SIGKILLed (after the image's 1 s timeout here)."""
        instance = self.spawn_with(interactive_shell_image(),
                                   os_shutdown_timeout='1')
        self.assertEqual(SIGKILL_EXIT, self.power_off_at_prompt(instance))

    def power_off_at_prompt(self, instance) -> int:
        """Once the interactive shell is up, a clean stop as ComputeManager
        asks for it; the workload's exit code. (Its banner ends a line, so
        the log has it; the prompt stays in Docker's line buffer.)"""
        self.wait_console(instance, b"Enter 'help'")
        self.driver.power_off(instance, docker_driver.shutdown_timeout(
            instance), CONF.compute.shutdown_retry_interval)
        self.assertEqual(power_state.SHUTDOWN, self.state(instance))
        return self.inspect(instance)['State']['ExitCode']

    def test_soft_reboot_shell_image_at_once_with_default_timeout(self):
        instance = self.spawn_with(shell_image())
        self.wait_console(instance, b'hi')
        before = self.inspect(instance)['State']['StartedAt']
        since = test_lifecycle.LifecycleTest.now(self)
        started = time.monotonic()
        self.driver.reboot(self.context, instance, [], 'SOFT')
        print('soft reboot of a shell image took %.2f s (timeout %d s)'
              % (time.monotonic() - started, CONF.shutdown_timeout))
        self.assertEqual(power_state.RUNNING, self.state(instance))
        self.assertNotEqual(before,
                            self.inspect(instance)['State']['StartedAt'])
        self.assertEqual([SIGTERM_EXIT], test_lifecycle.LifecycleTest
                         .exits_since(self, instance, since))

    def test_soft_reboot_honours_image_os_shutdown_timeout(self):
        # Its own init (the shell) ignores SIGTERM: only the image's
        # os_shutdown_timeout (1 s, not Nova's 60) ends the wait.
        instance = self.spawn_with(shell_image(), docker_init='false',
                                   os_shutdown_timeout='1')
        self.wait_console(instance, b'hi')
        since = test_lifecycle.LifecycleTest.now(self)
        stop = mock.patch.object(self.driver.api, 'stop', autospec=True,
                                 side_effect=self.driver.api.stop)
        with stop as spy:
            started = time.monotonic()
            self.driver.reboot(self.context, instance, [], 'SOFT')
            print('soft reboot (own init, os_shutdown_timeout=1) took '
                  '%.2f s' % (time.monotonic() - started))
        spy.assert_called_once_with(mock.ANY, timeout=1)
        self.assertEqual(power_state.RUNNING, self.state(instance))
        self.assertEqual([SIGKILL_EXIT], test_lifecycle.LifecycleTest
                         .exits_since(self, instance, since))

    def _orphan(self, instance) -> str:
        """/proc/<pid>/stat of the orphan: its state after the ')'."""
        wait_for(lambda: self._read(instance, '/tmp/orphan.pid'),
                 'the orphan to start')
        pid = self._read(instance, '/tmp/orphan.pid')
        stat = self._read(instance, '/proc/%s/stat' % pid)
        return stat.rpartition(')')[2].split()[0] if stat else 'gone'

    def _read(self, instance, path) -> str:
        return self.exec_in(instance, 'sh', '-c',
                            'cat %s 2>/dev/null; true' % path).strip()

    def test_orphans_are_reaped(self):
        instance = self.spawn_with(orphan_image())
        # /proc/<pid> disappears only once the parent (PID 1) has reaped it.
        wait_for(lambda: self._orphan(instance) == 'gone',
                 'the orphan to end and be reaped')
        self.assertEqual('gone', self._orphan(instance))

    def test_without_init_orphans_stay_zombies(self):
        """The control: without init the orphan ends as a zombie, so the
        test above would have seen it stay."""
        instance = self.spawn_with(orphan_image(), docker_init='false')
        wait_for(lambda: self._orphan(instance) in ('Z', 'gone'),
                 'the orphan to end')
        self.assertEqual('Z', self._orphan(instance))
