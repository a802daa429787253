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

"""The image the devstack plugin uploads, booted by DockerDriver.

The plugin's "stack extra" phase runs with the real Docker engine; the
bytes it pipes to "openstack image create" go into the Glance stand-in,
and the driver boots them: the instance Tempest would boot.
"""

import os
import time
import uuid

from nova.compute import power_state

from tests.devstack import test_plugin
from tests.functional import base


class DevstackImageTest(test_plugin.PluginTestCase, base.DriverTestCase):

    def plugin_image(self) -> bytes:
        tag = 'nova-docker-test/devstack-%s:latest' % uuid.uuid4().hex[:12]
        self.addCleanup(self._remove_tag, tag)
        self.run_plugin(('stack', 'extra'), STUB_REAL_DOCKER='1',
                        NOVA_DOCKER_IMAGE_TAG=tag)
        with open(os.path.join(self.out, 'image-upload.bin'), 'rb') as f:
            return f.read()

    def _remove_tag(self, tag: str) -> None:
        try:
            self.api.remove_image(tag, force=True)
        except Exception:
            pass

    def console(self, instance, text: str) -> str:
        deadline = time.monotonic() + 60
        while True:
            output = self.driver.get_console_output(
                self.context, instance).decode()
            if text in output:
                return output
            if time.monotonic() > deadline:
                self.fail('%r never reached the console: %r' % (text, output))
            time.sleep(0.2)

    def test_boots_prints_and_stops_gracefully(self):
        instance = self.spawn(self.add_image(self.plugin_image()))
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(instance).state)
        # The banner carries the hostname the driver gave the instance.
        self.console(instance, 'nova-docker busybox up on %s'
                     % instance.hostname)
        # A generous timeout: had the image ignored SIGTERM, Docker would
        # have killed it (137) when it ran out, not seen it exit 0.
        self.driver.power_off(instance, timeout=120, retry_interval=5)
        self.assertEqual(power_state.SHUTDOWN,
                         self.driver.get_info(instance).state)
        self.assertEqual(0, self.inspect(instance)['State']['ExitCode'])
        self.driver.power_on(self.context, instance, [])
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(instance).state)
