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

"""tools/aio's install decisions: the Debian packages (the docker command
where it is separate), the venv stamp, and the record of what ``up``
started (what ``down`` and ``clean`` undo).

ndtools.aio_services.install_debs runs with dpkg-query's answer and
apt_install replaced (apt_install specced), so no package is touched.
"""

import configparser
import io
import os
import sys
from unittest import mock

import fixtures
import testtools

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, 'tools'))
from ndtools import aio_services  # noqa: E402
from ndtools import aio_state  # noqa: E402
from ndtools import host  # noqa: E402


class InstallDebsTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.cli = os.path.join(self.tmp, 'usr-bin-docker')
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', io.StringIO()))

    def install_debs(self, installed: str, cli: bool) -> list:
        """Run install_debs where the packages in ``installed`` (a space
        separated list, or 'all') are there; return what it installs."""
        if cli:
            with open(self.cli, 'w') as handle:
                handle.write('#!/bin/sh\n')
            os.chmod(self.cli, 0o755)
        there = installed.split()
        apt = mock.create_autospec(host.apt_install, return_value=True)
        settings = aio_state.Settings({'AIO_DOCKER_CLI': self.cli,
                                       'AIO_DIR': self.tmp})
        self.assertTrue(aio_services.install_debs(
            settings, installed=lambda p: 'all' in there or p in there,
            apt_install=apt))
        for call in apt.call_args_list:
            # Recommends stay out (docker.io 26 only recommends its CLI).
            self.assertEqual({'recommends': False}, call.kwargs)
        return [p for call in apt.call_args_list for p in call.args[0]]

    def test_trixie_docker_io_gets_docker_cli(self):
        # docker.io 26 is there, its command is not (a recommends).
        self.assertEqual(['docker-cli'], self.install_debs('all', cli=False))

    def test_bookworm_docker_io_has_the_command(self):
        self.assertEqual([], self.install_debs('all', cli=True))

    def test_fresh_trixie_host(self):
        installed = self.install_debs('', cli=False)
        self.assertIn('docker.io', installed)
        self.assertEqual('docker-cli', installed[-1])

    def test_only_the_missing_ones(self):
        installed = self.install_debs('mariadb-server docker.io', cli=True)
        self.assertNotIn('mariadb-server', installed)
        self.assertNotIn('docker.io', installed)
        self.assertIn('rabbitmq-server', installed)

    def test_failed_apt_fails_the_step(self):
        apt = mock.create_autospec(host.apt_install, return_value=False)
        settings = aio_state.Settings({'AIO_DOCKER_CLI': self.cli})
        self.assertFalse(aio_services.install_debs(
            settings, installed=lambda p: False, apt_install=apt))
        # No docker-cli attempt after the main install failed.
        self.assertEqual(1, apt.call_count)


class VenvStampTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.top = self.useFixture(fixtures.TempDir()).path
        os.makedirs(os.path.join(self.top, 'tools'))
        for name in ('tools/aio-constraints.txt', 'requirements.txt'):
            with open(os.path.join(self.top, name), 'w') as f:
                f.write('pin==1\n')

    def test_want_changes_with_the_pins(self):
        before = aio_services.venv_want(self.top)
        self.assertEqual(before, aio_services.venv_want(self.top))
        with open(os.path.join(self.top, 'requirements.txt'), 'a') as f:
            f.write('docker>=7\n')
        self.assertNotEqual(before, aio_services.venv_want(self.top))

    def test_want_spelled_as_the_existing_stamps(self):
        # The bash tool wrote "<sha256 of the two files> <packages>": an
        # existing venv must not be rebuilt for a spelling change.
        digest, packages = aio_services.venv_want(self.top).split(' ', 1)
        self.assertEqual(64, len(digest))
        self.assertEqual(aio_services.PIP, packages)
        self.assertIn('nova==34.0.0', packages.split())


class StartedRecordTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        tmp = self.useFixture(fixtures.TempDir()).path
        self.state = aio_state.State(aio_state.Settings({'AIO_DIR': tmp}))

    def test_mark_is_idempotent(self):
        self.state.mark('bridge:br-int')
        self.state.mark('bridge:br-int')
        self.assertEqual(['bridge:br-int'], self.state.marks())

    def test_down_forgets_processes_keeps_what_clean_undoes(self):
        for what in ('mariadb-cnf', 'svc:keystone', 'mariadb', 'ovs',
                     'bridge:br-aio-ex', 'rabbitmq', 'databases'):
            self.state.mark(what)
        self.state.unmark_processes()
        self.assertEqual(['mariadb-cnf', 'bridge:br-aio-ex', 'databases'],
                         self.state.marks())

    def test_nothing_running_without_pid_files(self):
        self.assertFalse(self.state.any_running())
        self.state.write_pid('keystone', os.getpid())
        self.assertTrue(self.state.any_running())
        self.assertEqual(os.getpid(), self.state.pid('keystone'))


class RunStepTest(testtools.TestCase):
    """A step's output (its own and its commands') goes to its log; a
    failure names the step and its log and exits 1."""

    def setUp(self):
        super().setUp()
        tmp = self.useFixture(fixtures.TempDir()).path
        self.settings = aio_state.Settings({'AIO_DIR': tmp})
        os.makedirs(self.settings.logs)
        self.state = aio_state.State(self.settings)
        # Plain buffers, not StringStream: what a passing test printed
        # is not worth showing.
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', self.stdout))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', self.stderr))

    def log(self, name: str) -> str:
        with open(os.path.join(self.settings.logs,
                               'aio-%s.log' % name)) as f:
            return f.read()

    def test_output_goes_to_the_log(self):
        def step():
            aio_state.sh('echo', 'from a command')
        self.state.run_step('demo', 'a demo step', step)
        self.assertIn('from a command', self.log('demo'))
        self.stdout.seek(0)
        self.assertIn('] demo: a demo step', self.stdout.read())

    def test_failure_names_step_and_log(self):
        def step():
            aio_state.sh('false')
        exc = self.assertRaises(SystemExit, self.state.run_step, 'broken',
                                'a failing step', step)
        self.assertEqual(1, exc.code)
        self.assertIn('false exited 1', self.log('broken'))
        self.stderr.seek(0)
        message = self.stderr.read()
        self.assertIn("step 'broken' (a failing step) FAILED", message)
        self.assertIn('aio-broken.log', message)


class MetadataConfigTest(testtools.TestCase):
    """nova.conf and the OVN metadata agent's file agree on the shared
    secret and the metadata API's address; the agent's privsep daemons
    start from the venv."""

    def setUp(self):
        super().setUp()
        tmp = self.useFixture(fixtures.TempDir()).path
        state = aio_state.State(aio_state.Settings({'AIO_DIR': tmp}))
        self.services = aio_services.Services(state, REPO)
        for sub in ('nova', 'neutron'):
            os.makedirs(os.path.join(state.s.etc, sub))
        self.nova_conf = os.path.join(state.s.etc, 'nova/nova.conf')
        with open(self.nova_conf, 'w') as f:
            f.write('[DEFAULT]\nhost = h\n[neutron]\nusername = neutron\n')
        self.services.write_metadata_configs({
            'logs': '/l', 'data': '/d', 'sock': '/s'})
        self.agent_ini = os.path.join(state.s.etc,
                                      'neutron/ovn_metadata_agent.ini')

    @staticmethod
    def read(path: str) -> configparser.RawConfigParser:
        # strict=False: oslo.config merges nova.conf's repeated [neutron].
        parser = configparser.RawConfigParser(strict=False)
        parser.read(path)
        return parser

    def test_one_secret_and_the_api_address(self):
        nova = self.read(self.nova_conf)
        agent = self.read(self.agent_ini)
        self.assertEqual('neutron', nova['neutron']['username'])
        self.assertEqual('true', nova['neutron']['service_metadata_proxy'])
        self.assertEqual(nova['neutron']['metadata_proxy_shared_secret'],
                         agent['DEFAULT']['metadata_proxy_shared_secret'])
        self.assertEqual(str(aio_services.METADATA_PORT),
                         agent['DEFAULT']['nova_metadata_port'])

    def test_privsep_helpers_from_the_venv(self):
        agent = self.read(self.agent_ini)
        for section in aio_services.NEUTRON_PRIVSEP_SECTIONS:
            helper = agent[section]['helper_command'].split()
            self.assertEqual(self.services.s.exe('privsep-helper'),
                             helper[0])
            self.assertIn(self.agent_ini, helper)
