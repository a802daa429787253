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

"""The init as PID 1 through Nova's REST API, with Nova's default
shutdown_timeout: a plain shell image stops and soft-reboots at once, and
the Glance properties docker_init and os_shutdown_timeout reach the
driver."""

from tests.integration import base  # isort:skip  (imports nova first)

import datetime
import time
from unittest import mock

from tests.functional import test_init

SIGTERM_EXIT = 128 + 15
SIGKILL_EXIT = 128 + 9


class InitThroughNovaTest(base.IntegrationTestCase):

    # Nova's default: only a workload that dies of SIGTERM stops promptly.
    SHUTDOWN_TIMEOUT = 60

    def exits_since(self, server, since_ns: int) -> list:
        """Exit codes of the workload's 'die' events since since_ns
        (Docker's ``since`` has whole seconds: filter on timeNano)."""
        container = self.workload(server)['Id']
        events = self.docker.events(
            since=since_ns // 10 ** 9 - 1,
            until=datetime.datetime.utcnow() + datetime.timedelta(seconds=1),
            decode=True, filters={'container': container, 'event': 'die'})
        return [int(e['Actor']['Attributes']['exitCode']) for e in events
                if e['timeNano'] >= since_ns]

    @staticmethod
    def now() -> int:
        return time.time_ns()

    def test_shell_image_stops_and_soft_reboots_at_once(self):
        server = self.boot(self.upload_image(test_init.shell_image()))
        self.assertTrue(self.workload(server)['HostConfig']['Init'])
        started = time.monotonic()
        self.action(server, 'os-stop', expected_state='SHUTOFF')
        print('stop through the API took %.2f s (shutdown_timeout 60 s)'
              % (time.monotonic() - started))
        self.assertEqual(SIGTERM_EXIT,
                         self.workload(server)['State']['ExitCode'])
        self.action(server, 'os-start', expected_state='ACTIVE')
        since = self.now()
        started = time.monotonic()
        self.action(server, 'reboot', {'type': 'SOFT'},
                    expected_state='ACTIVE')
        print('soft reboot through the API took %.2f s'
              % (time.monotonic() - started))
        self.assertContainerStatus(server, 'running')
        self.assertEqual([SIGTERM_EXIT], self.exits_since(server, since))

    def test_image_properties_docker_init_and_os_shutdown_timeout(self):
        image_id = self.glance.add_image(
            test_init.shell_image(),
            properties={'docker_init': 'false',
                        'os_shutdown_timeout': 1})['id']
        server = self.boot(image_id)
        self.assertFalse(self.workload(server)['HostConfig']['Init'])
        since = self.now()
        api = self.driver.api
        with mock.patch.object(api, 'stop', autospec=True,
                               side_effect=api.stop) as stop:
            self.action(server, 'reboot', {'type': 'SOFT'},
                        expected_state='ACTIVE')
        # Nova's 60 s would have ended the same way, only later.
        stop.assert_called_once_with(mock.ANY, timeout=1)
        self.assertEqual([SIGKILL_EXIT], self.exits_since(server, since))
