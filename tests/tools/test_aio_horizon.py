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

"""tools/aio's dashboard: the settings it writes (the serial console, the
sessions in MariaDB, the compressed static files), the venv rebuilt only
when the pins change, uwsgi in the dashboard's venv with its static files,
and what ``down`` and ``clean`` undo.

No venv is built and no process started: ndtools.aio_horizon's commands
and State.start_svc are replaced (specced).
"""

import ast
import os
from unittest import mock

import fixtures
import testtools

from ndtools import aio_horizon
from ndtools import aio_services
from ndtools import aio_state
from ndtools import host
from tests.tools import REPO


class DashboardTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        tmp = self.useFixture(fixtures.TempDir()).path
        self.settings = aio_state.Settings({'AIO_DIR': tmp,
                                            'AIO_PASSWORD': 'pw\'"x',
                                            'AIO_HORIZON_PORT': '8123'})
        self.local = os.path.join(
            self.settings.horizon_venv,
            'lib/python3.11/site-packages/openstack_dashboard/local')
        os.makedirs(self.local)

    def written(self) -> dict:
        """The settings file's top-level assignments, as values."""
        with open(os.path.join(self.local, 'local_settings.py')) as f:
            tree = ast.parse(f.read())
        return {node.targets[0].id: ast.literal_eval(node.value)
                for node in tree.body if isinstance(node, ast.Assign)}


class SettingsTest(DashboardTestCase):

    def test_serial_console_and_keystone_v3(self):
        aio_horizon.write_settings(self.settings)
        values = self.written()
        self.assertEqual('SERIAL', values['CONSOLE_TYPE'])
        # The Console tab frames the dashboard's own serial page.
        self.assertEqual('SAMEORIGIN', values['X_FRAME_OPTIONS'])
        self.assertEqual('http://127.0.0.1:5000/v3',
                         values['OPENSTACK_KEYSTONE_URL'])
        self.assertEqual(['127.0.0.1', 'localhost'], values['ALLOWED_HOSTS'])
        # No Cinder in the all-in-one.
        self.assertFalse(values['LAUNCH_INSTANCE_DEFAULTS']['create_volume'])

    def test_sessions_in_mariadb_with_any_password(self):
        aio_horizon.write_settings(self.settings)
        values = self.written()
        self.assertEqual('django.contrib.sessions.backends.db',
                         values['SESSION_ENGINE'])
        database = values['DATABASES']['default']
        self.assertEqual('aio_horizon', database['NAME'])
        self.assertEqual('pw\'"x', database['PASSWORD'])
        self.assertIn('horizon', aio_services.DATABASES)

    def test_static_files_compressed_offline_in_the_venv(self):
        aio_horizon.write_settings(self.settings)
        values = self.written()
        self.assertTrue(values['COMPRESS_OFFLINE'])
        self.assertEqual(os.path.join(self.settings.horizon_venv, 'static'),
                         values['STATIC_ROOT'])

    def test_clean_removes_the_settings_keeps_the_venv(self):
        aio_horizon.write_settings(self.settings)
        aio_horizon.remove_settings(self.settings)
        aio_horizon.remove_settings(self.settings)
        self.assertEqual([], [n for n in os.listdir(self.local)
                              if n.endswith('.py')])
        self.assertTrue(os.path.isdir(self.settings.horizon_venv))

    def test_clean_without_a_venv(self):
        aio_horizon.remove_settings(aio_state.Settings(
            {'AIO_DIR': self.useFixture(fixtures.TempDir()).path}))


class InstallTest(DashboardTestCase):

    def setUp(self):
        super().setUp()
        self.sh = mock.create_autospec(aio_state.sh)
        self.useFixture(fixtures.MonkeyPatch('ndtools.aio_horizon.sh',
                                             self.sh))
        self.useFixture(fixtures.MonkeyPatch(
            'ndtools.aio_horizon.host.create_venv',
            mock.create_autospec(host.create_venv, return_value=True)))
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', mock.Mock()))

    def commands(self) -> list:
        return [' '.join(c.args[1:4]) for c in self.sh.call_args_list]

    def test_pinned_install_then_collectstatic_and_compress(self):
        aio_horizon.install(self.settings, REPO)
        pip = self.sh.call_args_list[0].args
        self.assertIn(os.path.join(REPO, 'tools/aio-constraints.txt'), pip)
        self.assertIn('horizon==27.0.0', pip)
        self.assertEqual(['-m django collectstatic', '-m django compress'],
                         self.commands()[1:])
        # Settings there before Django runs.
        self.assertEqual('SERIAL', self.written()['CONSOLE_TYPE'])

    def test_second_install_does_nothing(self):
        aio_horizon.install(self.settings, REPO)
        self.sh.reset_mock()
        aio_horizon.install(self.settings, REPO)
        self.assertEqual([], self.sh.call_args_list)

    def test_new_pins_rebuild(self):
        aio_horizon.install(self.settings, REPO)
        self.sh.reset_mock()
        stamp = os.path.join(self.settings.horizon_venv, '.aio-stamp')
        with open(stamp, 'w') as f:
            f.write('older pins')
        aio_horizon.install(self.settings, REPO)
        self.assertEqual(3, self.sh.call_count)


class ServeTest(DashboardTestCase):

    def test_uwsgi_in_the_dashboards_venv_serves_static_files(self):
        state = aio_state.State(self.settings)
        start = mock.create_autospec(state.start_svc)
        self.useFixture(fixtures.MockPatchObject(state, 'start_svc', start))
        state.uwsgi_svc('horizon', 8123, aio_horizon.WSGI_MODULE,
                        venv=self.settings.horizon_venv,
                        options=('--static-map', '/static=/s'))
        argv = list(start.call_args.args)
        self.assertEqual('horizon', argv[0])
        self.assertEqual(self.settings.exe('uwsgi'), argv[1])
        self.assertEqual(self.settings.horizon_venv,
                         argv[argv.index('--virtualenv') + 1])
        self.assertEqual('127.0.0.1:8123',
                         argv[argv.index('--http-socket') + 1])
        self.assertEqual(['--static-map', '/static=/s'], argv[-2:])

    def test_down_stops_it(self):
        self.assertIn('horizon', aio_state.SERVICES)
        self.assertEqual('http://127.0.0.1:8123/',
                         aio_horizon.url(self.settings))
