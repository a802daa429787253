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

"""The decisions tools/run-tests and tools/aio share (ndtools.host) and
the counts they print: what is installed when, when a venv is rebuilt,
dockerd's flags, stestr's and Tempest's totals. Nothing on the host is
touched."""

import io
import os
import re
import socket
import subprocess
import sys
from unittest import mock

import fixtures
import testtools

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, 'tools'))
from ndtools import aio  # noqa: E402
from ndtools import host  # noqa: E402
from ndtools import runtests  # noqa: E402

STESTR_TOTALS = '''
======
Totals
======
Ran: 12 tests in 3.0 sec.
 - Passed: 10
 - Skipped: 1
 - Expected Fail: 0
 - Unexpected Success: %d
 - Failed: %d
'''


class MissingPackagesTest(testtools.TestCase):

    def test_only_absent_ones_in_order(self):
        self.assertEqual(['b', 'd'], host.missing_packages(
            [('a', lambda: True), ('b', lambda: False),
             ('c', lambda: True), ('d', lambda: False)]))

    def test_nothing_missing_nothing_to_install(self):
        self.assertEqual([], host.missing_packages(
            [('a', lambda: True)]))

    def test_run_tests_checks_commands_not_dpkg(self):
        # A docker installed otherwise (no docker.io) is good enough.
        present = mock.create_autospec(host.command_present,
                                       return_value=True)
        self.useFixture(fixtures.MockPatchObject(host, 'command_present',
                                                 present))
        wanted = dict(runtests.wanted_packages())
        self.assertTrue(wanted['docker.io']())
        present.assert_called_with('dockerd')
        present.return_value = False
        self.assertFalse(wanted['crun']())
        present.assert_called_with('crun')
        self.assertFalse(wanted['qemu-system-x86']())
        present.assert_called_with('qemu-system-x86_64')
        self.assertFalse(wanted['libvirt-daemon']())
        present.assert_called_with('libvirtd')
        self.assertFalse(wanted['iputils-ping']())
        present.assert_called_with('ping')
        self.assertFalse(wanted['libvirt-clients']())
        present.assert_called_with('virsh')
        for package in ('qemu-system-x86', 'libvirt-daemon',
                        'libvirt-clients'):
            self.assertIn(package, runtests.WITHOUT_RECOMMENDS)

    def test_qemu_without_its_recommends(self):
        # qemu-system-x86 recommends a GTK display and more: not wanted.
        self.useFixture(fixtures.MockPatchObject(
            host, 'missing_packages', return_value=[
                'crun', 'qemu-system-x86', 'lxcfs']))
        apt = mock.create_autospec(host.apt_install, return_value=True)
        self.useFixture(fixtures.MockPatchObject(host, 'apt_install', apt))
        run = runtests.TestRun('host', None)
        run.log_dir = self.useFixture(fixtures.TempDir()).path
        run.install_packages()
        self.assertEqual([
            mock.call(['crun', 'lxcfs'], output=mock.ANY, recommends=True),
            mock.call(['qemu-system-x86'], output=mock.ANY,
                      recommends=False)], apt.call_args_list)


class DockerdArgvTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.daemon_json = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'daemon.json')

    def test_live_restore_flag_without_daemon_json(self):
        self.assertEqual(['dockerd', '--live-restore'],
                         host.dockerd_argv(self.daemon_json))

    def test_no_flag_when_daemon_json_sets_it(self):
        # dockerd refuses a directive given both ways.
        with open(self.daemon_json, 'w') as f:
            f.write('{"live-restore": true}')
        self.assertEqual(['dockerd'], host.dockerd_argv(self.daemon_json))

    def test_docker_not_ok_without_socket(self):
        self.assertFalse(host.docker_ok(self.daemon_json + '.sock'))


class VenvStampTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.stamp = os.path.join(self.tmp, '.stamp')

    def test_no_stamp_means_install(self):
        self.assertFalse(host.stamp_current(self.stamp, 'abc'))

    def test_same_want_skips_install(self):
        host.write_stamp(self.stamp, 'abc def\nghi')
        self.assertTrue(host.stamp_current(self.stamp, 'abc def\nghi'))
        self.assertFalse(host.stamp_current(self.stamp, 'abc'))

    def test_digest_follows_contents(self):
        path = os.path.join(self.tmp, 'requirements.txt')
        with open(path, 'w') as f:
            f.write('a\n')
        first = host.files_digest([path, path + '.missing'])
        with open(path, 'w') as f:
            f.write('b\n')
        self.assertNotEqual(first, host.files_digest([path]))


class WaitForTest(testtools.TestCase):

    def test_true_as_soon_as_check_is(self):
        answers = iter([False, OSError('not yet'), True])

        def check():
            answer = next(answers)
            if isinstance(answer, Exception):
                raise answer
            return answer
        self.assertTrue(host.wait_for(check, 5, interval=0.01))

    def test_false_after_timeout(self):
        self.assertFalse(host.wait_for(lambda: False, 0.05, interval=0.01))


class SplitSelectionTest(testtools.TestCase):
    """A regex run keeps the test_serial_ tests (they restart the host's
    OVS) apart from the rest, as a full run does."""

    IDS = ('tests.functional.test_serial_faults.OvsTest.test_restart',
           'tests.functional.test_network.PlugTest.test_plug',
           'tests.unit.test_ovsdb.RealOVSDBTest.test_add_port',
           'tests.functional.test_images.ImportTest.test_load')

    def selected(self, regex):
        return [[i for i in self.IDS if re.search(part, i)]
                for part in runtests.split_selection(regex)]

    def test_serial_tests_run_apart(self):
        self.assertEqual([[self.IDS[1]], [self.IDS[0]]],
                         self.selected('test_(network|serial)'))

    def test_anchored_and_alternative_regexes(self):
        self.assertEqual([[self.IDS[2]], []],
                         self.selected('^tests\\.unit'))
        self.assertEqual([[self.IDS[1], self.IDS[3]], []],
                         self.selected('PlugTest|images'))
        self.assertEqual([[], [self.IDS[0]]], self.selected('serial'))


class CountsTest(testtools.TestCase):

    def test_stestr_totals(self):
        self.assertEqual({'Passed': 10, 'Failed': 2, 'Skipped': 1},
                         runtests.stestr_totals(STESTR_TOTALS % (0, 2)))

    def test_no_totals_is_none(self):
        # A phase that could not load its tests: run-tests counts 1 failure.
        self.assertIsNone(runtests.stestr_totals('ImportError: x\n'))

    def test_tempest_unexpected_success_fails(self):
        self.assertEqual((10, 1, 3),
                         aio.tempest_counts(STESTR_TOTALS % (1, 2)))

    def test_tempest_without_totals_fails(self):
        self.assertEqual((0, 0, 1), aio.tempest_counts('crashed\n'))


class ParseArgsTest(testtools.TestCase):

    def test_default_host_engine_everything(self):
        self.assertEqual(('host', None), runtests.parse_args([]))

    def test_docker26_with_regex(self):
        self.assertEqual(('26', 'tests\\.functional'), runtests.parse_args(
            ['--docker=26', 'tests\\.functional']))

    def test_unknown_option_exits_2(self):
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', io.StringIO()))
        for argv in (['--docker=25'], ['-x']):
            exc = self.assertRaises(SystemExit, runtests.parse_args, argv)
            self.assertEqual(2, exc.code)


class PidAliveTest(testtools.TestCase):

    def test_running_child_is_alive(self):
        child = subprocess.Popen(['sleep', '30'])
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        self.assertTrue(host.pid_alive(child.pid))

    def test_exited_child_is_not_alive(self):
        # Not yet waited for: a zombie, which kill(pid, 0) still finds.
        child = subprocess.Popen(['true'])
        self.assertTrue(host.wait_for(lambda: not host.pid_alive(child.pid),
                                      10, interval=0.05))

    def test_no_pid(self):
        self.assertFalse(host.pid_alive(None))


class LeftoversOfAKilledRunTest(testtools.TestCase):
    """A run killed without its down leaves socket and PID files: they
    must not pass for live daemons (CI failed once on a containerd socket
    file a killed run had left: dockerd waited on it for a minute)."""

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.path = os.path.join(self.dir, 'daemon.sock')

    def listening(self):
        server = socket.socket(socket.AF_UNIX)
        self.addCleanup(server.close)
        server.bind(self.path)
        server.listen(1)
        return server

    def test_a_listening_socket_answers_and_stays(self):
        self.listening()
        self.assertTrue(host.unix_socket_answers(self.path))
        self.assertFalse(host.remove_stale_socket(self.path))
        self.assertTrue(os.path.exists(self.path))

    def test_a_dead_daemons_socket_is_removed(self):
        self.listening().close()     # the file stays, nobody listens
        self.assertTrue(os.path.exists(self.path))
        self.assertFalse(host.unix_socket_answers(self.path))
        self.assertTrue(host.remove_stale_socket(self.path))
        self.assertFalse(os.path.lexists(self.path))

    def test_no_socket(self):
        self.assertFalse(host.unix_socket_answers(self.path))
        self.assertFalse(host.remove_stale_socket(self.path))

    def test_process_identity_is_per_process_and_stable(self):
        first = subprocess.Popen(['sleep', '30'])
        self.addCleanup(first.wait)
        self.addCleanup(first.kill)
        identity = host.process_identity(first.pid)
        self.assertIsNotNone(identity)
        self.assertEqual(identity, host.process_identity(first.pid))
        self.assertNotEqual(identity, host.process_identity(os.getpid()))
        first.kill()
        first.wait()
        self.assertIsNone(host.process_identity(first.pid))
