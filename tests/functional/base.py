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

"""Base class for tests that drive DockerDriver against the real engine."""

import uuid

import fixtures
from nova import context as nova_context
from nova import objects
from nova.virt import fake as fake_virt
from oslo_config import fixture as config_fixture
import testtools

import nova.conf  # noqa: F401  (registers nova's options)
from novadocker import conf
from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import guest
from tests.fixtures import docker as docker_fixtures
from tests.fixtures import glance as glance_fixtures
from tests.fixtures import images as image_fixtures
from tests.fixtures import objects as obj_fixtures

CONF = conf.CONF


class DriverTestCase(testtools.TestCase):
    """A DockerDriver on the real engine, with a unique compute host name.

    The unique host label scopes the leak check, so these tests may run in
    parallel with each other on one engine.
    """

    NEEDS_OVS = False

    def setUp(self):
        super().setUp()
        docker_fixtures.require_functional(self, ovs=self.NEEDS_OVS)
        self.host = 'ndtest-%s' % uuid.uuid4().hex[:10]
        self.conf = self.useFixture(config_fixture.Config(CONF))
        state_path = self.useFixture(fixtures.TempDir()).path
        self.conf.config(host=self.host, state_path=state_path,
                         instances_path=state_path, shutdown_timeout=5,
                         vif_plugging_timeout=0)
        self.conf.config(api_url=docker_fixtures.api_url(), group='docker')
        self.glance = self.useFixture(glance_fixtures.GlanceFixture()).api
        self.context = nova_context.get_admin_context()
        self.dockerd = self.private_dockerd()
        if self.dockerd is not None:
            self.conf.config(api_url=self.dockerd.url, group='docker')
            self.api = self.dockerd.api()
        else:
            self.api = docker_fixtures.docker_api()
        self.leaks = self.useFixture(docker_fixtures.DockerLeakCheck(
            self.host, lambda: list(self.glance.images), api=self.api))
        # The instances "Nova" has on self.host, as the driver's reaper
        # asks (there is no database here): every instance the test made,
        # until it forgets one (nova_forgets).
        self.nova_instances = set()
        self.driver = self.new_driver()

    def new_driver(self) -> docker_driver.DockerDriver:
        """A driver on self.host after init_host (a nova-compute
        (re)start), whose reaper asks self.nova_instances."""
        driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        driver.nova_instance_uuids = lambda: sorted(self.nova_instances)
        driver.init_host(self.host)
        self.addCleanup(driver.cleanup_host, self.host)
        return driver

    def nova_forgets(self, instance) -> None:
        """Nova no longer has the instance on this host (deleted, or its
        build failed and lost its host)."""
        self.nova_instances.discard(instance.uuid)

    def private_dockerd(self):
        """The PrivateDockerd fixture (already in use) this test's driver
        talks to, or None for the shared engine. Tests that stop, kill or
        fill the engine override it."""
        return None

    def add_image(self, data: bytes = None, **kwargs) -> objects.ImageMeta:
        if data is None:
            data = image_fixtures.default_image_tarball()
        return obj_fixtures.image_meta(self.glance.add(data, **kwargs))

    def make_instance(self, image_meta=None, vcpus=1, memory_mb=128,
                      **kwargs) -> objects.Instance:
        """An instance on self.host that "Nova" has (see nova_forgets)."""
        instance = obj_fixtures.instance(
            vcpus=vcpus, memory_mb=memory_mb, host=self.host,
            context=self.context,
            image_ref=image_meta.id if image_meta else None,
            hostname='srv-%s' % uuid.uuid4().hex[:6], project_id='project',
            user_id='user', **kwargs)
        self.nova_instances.add(instance.uuid)
        return instance

    def spawn(self, image_meta=None, network_info=None, **kwargs):
        image_meta = image_meta or self.add_image()
        instance = self.make_instance(image_meta, **kwargs)
        obj_fixtures.set_ports(instance, network_info)
        self.driver.spawn(self.context, instance, image_meta, [], None, {},
                          network_info=network_info)
        self.addCleanup(self.driver.destroy, self.context, instance,
                        network_info)
        return instance

    def inspect(self, instance, role=guest.ROLE_WORKLOAD) -> dict:
        return self.driver._guests.get(instance, role).inspect(role)

    def exec_in(self, instance, *cmd, role=guest.ROLE_WORKLOAD) -> str:
        """Run a command in the instance's container of ``role`` (the
        workload); return its output. A non-zero exit fails the test."""
        return self.exec_result(instance, *cmd, role=role).output

    def exec_result(self, instance, *cmd, role=guest.ROLE_WORKLOAD,
                    check=True) -> docker_fixtures.ExecResult:
        """Exit code and output of a command in the instance's container
        of ``role``; without ``check`` a failure is the caller's to
        judge."""
        return docker_fixtures.exec_in(
            self.api, self.driver._guests.get(instance, role).id(role), *cmd,
            check=check)
