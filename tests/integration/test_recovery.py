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

"""The reaper with Nova's own services: it learns from Nova's database
which instances this host has, and removes the containers of any other."""

import time
from unittest import mock
import uuid

from novadocker import conf
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import guest
from novadocker.virt.docker import images
from tests.integration import base

CONF = conf.CONF


class ReaperTest(base.IntegrationTestCase):

    def setUp(self):
        super().setUp()
        self.flags(reap_min_age=0, group='docker')

    def container(self, labels) -> str:
        created = self.docker.create_container(
            CONF.docker.sandbox_image,
            name='ndint-orphan-%s' % uuid.uuid4().hex[:8], labels=labels,
            host_config=self.docker.create_host_config(network_mode='none'))
        self.addCleanup(self._remove_quietly, created['Id'])
        self.docker.start(created['Id'])
        return created['Id']

    def _remove_quietly(self, container_id):
        try:
            self.docker.remove_container(container_id, force=True)
        except Exception:
            pass

    def orphan(self, host=None, instance_uuid=None) -> str:
        """A container as a lost clean-up leaves it: labelled with an
        instance Nova does not have on the host."""
        return self.container({
            guest.LABEL_INSTANCE: instance_uuid or str(uuid.uuid4()),
            guest.LABEL_HOST: host or self.compute_host,
            guest.LABEL_ROLE: guest.ROLE_SANDBOX})

    def exists(self, container_id) -> bool:
        return bool(self.docker.containers(
            all=True, filters={'id': container_id}))

    def wait_gone(self, container_id, what):
        # Polls; the deadline only stops a hung test.
        deadline = time.monotonic() + 120
        while self.exists(container_id):
            if time.monotonic() > deadline:
                self.fail('%s still there' % what)
            time.sleep(0.2)

    def test_start_up_reaps_only_what_nova_does_not_have(self):
        server = self.boot()
        before = self.workload(server)
        orphan = self.orphan()
        plain = self.container({})
        elsewhere = self.orphan(host='ndint-other-%s' % uuid.uuid4().hex[:8])
        twin = self.orphan(host='ndint-other-%s' % uuid.uuid4().hex[:8],
                           instance_uuid=server['id'])

        self.compute = self.restart_compute_service(
            self.compute, keep_hypervisor_state=False)
        self.driver = self.compute.manager.driver

        self.assertFalse(self.exists(orphan))
        for container in (plain, elsewhere, twin):
            self.assertTrue(
                self.docker.inspect_container(container)['State']['Running'])
        after = self.workload(server)
        self.assertEqual(before['Id'], after['Id'])
        self.assertEqual(before['State']['StartedAt'],
                         after['State']['StartedAt'])
        self._wait_for_state_change(server, 'ACTIVE')
        # Right after a restart the API may still see the compute service
        # down and delete locally, never reaching the driver: the next
        # reaper pass finishes the job either way.
        self.api.delete_server(server['id'])
        self._wait_until_deleted(server)
        self.driver.reap('test')
        self.assertNoContainers(server['id'])

    def test_periodic_pass(self):
        self.flags(reap_interval=1, group='docker')
        self.compute = self.restart_compute_service(
            self.compute, keep_hypervisor_state=False)
        self.driver = self.compute.manager.driver
        server = self.boot()
        orphan = self.orphan()
        self.wait_gone(orphan, 'the orphan container')
        self.assertContainerStatus(server, 'running')

    def test_failed_build_whose_clean_up_missed_the_engine(self):
        """The issue's case through Nova: the build fails, its clean-up
        cannot reach the engine, Nova nils the instance's host (ERROR). The
        next reaper pass removes what the build left."""
        tiny = self._create_flavor(memory_mb=4, vcpu=1, disk=1, ephemeral=0)
        with mock.patch.object(
                self.driver, '_remove_instance', autospec=True,
                side_effect=docker_client.DockerUnavailable(
                    url=CONF.docker.api_url, reason='engine restarting')):
            server = self.boot(expected_state='ERROR', flavorRef=tiny)
        self.assertIsNone(self.admin_api.get_server(server['id'])[
            'OS-EXT-SRV-ATTR:host'])
        left = self.containers_of(server['id'])
        self.assertIn(guest.ROLE_SANDBOX, left)
        result = self.driver.reap('the Docker engine is back')
        self.assertEqual([server['id']], result.reaped)
        self.assertNoContainers(server['id'])


class BootFaultTest(base.IntegrationTestCase):
    """What the engine says during a boot becomes a fault Nova shows: the
    server ends in ERROR with it, never stuck in BUILD."""

    def test_image_removed_under_the_boot(self):
        image_id = self.upload_image()
        real = self.driver._create_sandbox

        def remove_image_first(instance, network_info):
            # Fault injection: an operator's docker rmi -f meanwhile.
            self.docker.remove_image(images.glance_tag(image_id),
                                     force=True)
            return real(instance, network_info)
        with mock.patch.object(self.driver, '_create_sandbox',
                               autospec=True,
                               side_effect=remove_image_first):
            server = self.boot(image_id, expected_state='ERROR')
        fault = self.admin_api.get_server(server['id'])['fault']
        self.assertIn('is not in the Docker store', fault['message'])
        self.assertIn(image_id, fault['message'])
        self.assertNoContainers(server['id'])

    def test_command_that_cannot_run(self):
        image_id = self.upload_image(
            properties={'os_command_line': '/no/such/command'})
        server = self.boot(image_id, expected_state='ERROR')
        fault = self.admin_api.get_server(server['id'])['fault']
        self.assertIn('its command cannot run', fault['message'])
        self.assertIn(image_id, fault['message'])
        self.assertNoContainers(server['id'])
