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

"""Hardening seen through Nova's REST API: the OCI runtime a flavor or an
image asks for."""

from tests.integration import base  # isort:skip  (imports nova first)

from novadocker.virt.docker import guest
from tests.fixtures import images as image_fixtures


class FlavorRuntimeTest(base.IntegrationTestCase):

    def test_absent_runtime_is_a_readable_fault_and_leaves_nothing(self):
        self.flags(allowed_runtimes=['runsc'], group='docker')
        self.flavor_id = self._create_flavor(
            memory_mb=128, vcpu=1, disk=1, ephemeral=0,
            extra_spec={guest.EXTRA_SPEC_RUNTIME: 'runsc'})
        image_id = self.upload_image()
        self.leaks.forbid_images()
        server = self.boot(image_id, expected_state='ERROR')
        fault = self.admin_api.get_server(server['id'])['fault']
        # Aborted on this host with the driver's reason, not rescheduled
        # into "Exhausted all hosts".
        self.assertIn('OCI runtime runsc requested by the flavor',
                      fault['message'])
        self.assertIn('no such runtime', fault['message'])
        self.assertIn('Available: runc', fault['message'])
        self.assertNoContainers(server['id'])
        self.assertFalse(self.docker_image_loaded(image_id))
        self.assertNotIn(image_id, self.glance.download_count)

    def test_engine_default_runtime_by_flavor_boots(self):
        self.flavor_id = self._create_flavor(
            memory_mb=128, vcpu=1, disk=1, ephemeral=0,
            extra_spec={guest.EXTRA_SPEC_RUNTIME: 'runc'})
        server = self.boot()
        workload = self.workload(server)
        self.assertEqual('runc', workload['HostConfig']['Runtime'])
        self.assertEqual(['MKNOD', 'SETFCAP'],
                         workload['HostConfig']['CapDrop'])

    def test_image_property_runtime_when_enabled(self):
        # Nova copies every Glance property into the instance's system
        # metadata (ImageMetaProps would drop this unknown one).
        self.flags(allowed_runtimes=['runsc'], image_runtime_property=True,
                   group='docker')
        image_id = self.glance.add_image(
            image_fixtures.default_image_tarball(),
            properties={guest.IMAGE_PROP_RUNTIME: 'runsc'})['id']
        self.leaks.forbid_images()
        server = self.boot(image_id, expected_state='ERROR')
        fault = self.admin_api.get_server(server['id'])['fault']
        self.assertIn('OCI runtime runsc requested by the image',
                      fault['message'])
        self.assertNoContainers(server['id'])
        self.assertFalse(self.docker_image_loaded(image_id))
