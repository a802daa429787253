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

"""Nova's in-process services with DockerDriver on the real Docker engine.

:class:`IntegrationTestCase` starts Nova's API (through the real paste
pipeline), conductor, scheduler and placement in-process, then one
nova-compute loading ``compute_driver = docker.DockerDriver``, i.e. through
the shim installed in nova's tree. Each test gets its own compute host name
and instance name prefix, so containers of tests running in parallel never
collide, and a leak check fails the test if containers labelled with its
host remain afterwards.

:class:`RealGlanceFixture` is nova's GlanceFixture serving real bytes.
Reuse it (and the helpers of :class:`IntegrationTestCase`) for snapshot,
shelve and networking tests:

- ``create(ctx, meta, data=...)`` stores ``data`` (bytes or anything with
  ``.read()``), with size, ``os_hash_algo``/``os_hash_value`` (sha512) and
  ``checksum`` set as Glance would;
- ``download(ctx, id)`` with neither ``data`` nor ``dst_path`` returns a
  chunk iterator, as nova's glance API does (the stock fixture returns
  None); ``data``/``dst_path`` get the bytes written;
- ``update(ctx, id, meta, data=f)`` reads ``f`` with ``.read(n)`` the way
  glanceclient does (a generator fails here as it would against Glance)
  and stores the bytes, marking the image active;
- ``bytes_of(id)`` returns what was uploaded, e.g. a snapshot tarball.
"""

# Gotcha 11: nova.tests.functional applies nova's monkey_patch (threading
# mode with OS_NOVA_DISABLE_EVENTLET_PATCHING=1); it must come before
# nova.tests.fixtures, which would import eventlet through oslo_service.
import nova.tests.functional  # noqa: F401  isort:skip

import copy
import hashlib
import io
import time
import typing
import uuid
import warnings

import fixtures
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.api import client as api_client
from nova.tests.functional import integrated_helpers
from sqlalchemy import exc as sqla_exc

from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import guest
from novadocker.virt.docker import images
from tests import fixtures as nd_fixtures

# How long to wait for a server to reach a state: booting loads a tarball
# into Docker, which is slower than the fake driver the helpers assume.
# This bounds a wait; no test asserts on speed.
WAIT_RETRIES = 240   # x 0.5 s


class RealGlanceFixture(nova_fixtures.GlanceFixture):
    """nova's GlanceFixture, storing and serving real image bytes."""

    CHUNK = 64 * 1024

    def setUp(self):
        super().setUp()
        self.download_count: typing.Dict[str, int] = {}

    # -- writing ---------------------------------------------------------

    @classmethod
    def _read_all(cls, data) -> bytes:
        """bytes as they are; file-likes read with read(n) like
        glanceclient's chunked body (so a generator fails as it would)."""
        if isinstance(data, (bytes, bytearray)):
            return bytes(data)
        out = io.BytesIO()
        while True:
            chunk = data.read(cls.CHUNK)
            if not chunk:
                break
            out.write(chunk)
        return out.getvalue()

    def _store(self, image_id: str, blob: bytes) -> None:
        self._imagedata[image_id] = blob
        self.images[image_id].update(
            size=len(blob), status='active', os_hash_algo='sha512',
            os_hash_value=hashlib.sha512(blob).hexdigest(),
            checksum=hashlib.md5(blob).hexdigest())

    def create(self, context, metadata, data=None):
        image = super().create(context, metadata)
        if data is not None:
            self._store(image['id'], self._read_all(data))
        return copy.deepcopy(self.images[image['id']])

    def update(self, context, image_id, metadata, data=None,
               purge_props=False):
        super().update(context, image_id, metadata, purge_props=purge_props)
        if data is not None:
            self._store(image_id, self._read_all(data))
        return copy.deepcopy(self.images[image_id])

    def delete(self, context, image_id):
        super().delete(context, image_id)
        self._imagedata.pop(image_id, None)

    # -- reading ---------------------------------------------------------

    def download(self, context, image_id, data=None, dst_path=None,
                 trusted_certs=None):
        self.show(context, image_id)   # ImageNotFound as Glance would
        self.download_count[image_id] = self.download_count.get(
            image_id, 0) + 1
        blob = self._imagedata.get(image_id, b'')
        if data is not None:
            data.write(blob)
            return None
        if dst_path:
            with open(dst_path, 'wb') as out:
                out.write(blob)
            return None
        return iter([blob[i:i + self.CHUNK]
                     for i in range(0, len(blob), self.CHUNK)])

    def bytes_of(self, image_id: str) -> typing.Optional[bytes]:
        return self._imagedata.get(image_id)

    def ids_with_data(self) -> typing.List[str]:
        return list(self._imagedata)

    # -- convenience -----------------------------------------------------

    def add_image(self, data: bytes, name: str = None,
                  container_format: str = 'docker', disk_format: str = 'raw',
                  properties: dict = None) -> dict:
        """Upload an image as ``openstack image create`` would."""
        meta = {'name': name or 'nd-image-%s' % uuid.uuid4().hex[:8],
                'container_format': container_format,
                'disk_format': disk_format, 'visibility': 'public',
                'min_ram': 0, 'min_disk': 0, 'protected': False,
                'tags': [], 'properties': dict(properties or {})}
        return self.create(None, meta, data=data)


class IntegrationTestCase(integrated_helpers.ProviderUsageBaseTestCase):
    """API, conductor, scheduler, placement and one Docker compute.

    The compute service (``self.compute``) runs on a host name unique to
    the test (``self.compute_host``); ``self.driver`` is its DockerDriver,
    ``self.docker`` a raw Docker API client for checking the real state.
    """

    compute_driver = 'docker.DockerDriver'
    # Servers take a few seconds to stop (the test image's PID 1 ignores
    # SIGTERM, so Docker kills it after this grace period).
    SHUTDOWN_TIMEOUT = 2

    def setUp(self):
        super().setUp()
        nd_fixtures.require_functional(self)
        # nova 34's DB layer calls orm.noload(), deprecated in SQLAlchemy
        # 2.1, and nova's WarningsFixture turns that warning into an error
        # in any nova module: instance lookups (stop, delete, lifecycle
        # events) would fail with a 500. Nothing to do with the driver;
        # WarningsFixture resets the filters after the test.
        warnings.filterwarnings(
            'ignore', message=r'The noload\(\) option is deprecated',
            category=sqla_exc.SADeprecationWarning)
        suffix = uuid.uuid4().hex[:10]
        self.compute_host = 'ndint-%s' % suffix
        # Instance names (a container label, list_instances) come from the
        # template: make them unique per test (every test's database
        # numbers instances from 1).
        self.flags(instance_name_template='nd%s-%%08x' % suffix)
        state_path = self.useFixture(fixtures.TempDir()).path
        self.flags(state_path=state_path, instances_path=state_path,
                   shutdown_timeout=self.SHUTDOWN_TIMEOUT)
        self.flags(api_url=nd_fixtures.api_url(), group='docker')
        self.glance = self.useFixture(RealGlanceFixture(self))
        self.docker = nd_fixtures.docker_api()
        # Registered before the compute starts, so it runs after the
        # compute service stopped.
        self.leaks = self.useFixture(nd_fixtures.DockerLeakCheck(
            self.compute_host, self.glance.ids_with_data))
        self.compute = self._start_compute(self.compute_host)
        self.driver = self.compute.manager.driver
        self.assertIsInstance(self.driver, docker_driver.DockerDriver)
        self.flavor_id = self._create_flavor(
            memory_mb=128, vcpu=1, disk=1, ephemeral=0)

    # -- waiting (real containers are slower than the fake driver) -------

    def _wait_for_server_parameter(self, server, expected_params,
                                   max_retries=WAIT_RETRIES, api=None,
                                   wait_for_fault_key=True):
        return super()._wait_for_server_parameter(
            server, expected_params, max_retries=max_retries, api=api,
            wait_for_fault_key=wait_for_fault_key)

    def _wait_for_state_change(self, server, expected_status,
                               max_retries=WAIT_RETRIES,
                               wait_for_fault_key=True):
        return self._wait_for_server_parameter(
            server, {'status': expected_status}, max_retries,
            wait_for_fault_key=wait_for_fault_key)

    def _wait_until_deleted(self, server):
        for _attempt in range(WAIT_RETRIES):
            try:
                found = self.api.get_server(server['id'])
            except api_client.OpenStackApiNotFoundException:
                return
            if found['status'] == 'ERROR' and server.get('status') != \
                    'ERROR':
                self.fail('server went to ERROR instead of disappearing: '
                          '%s' % found.get('fault'))
            time.sleep(0.5)
        self.fail('server %s was not deleted' % server['id'])

    def wait_for_task_done(self, server) -> dict:
        """Wait until no task runs on the server; return it."""
        return self._wait_for_server_parameter(
            server, {'OS-EXT-STS:task_state': None})

    # -- images ----------------------------------------------------------

    def upload_image(self, data: bytes = None, **kwargs) -> str:
        """Put a ``docker save`` tarball (default: the sleeping busybox
        image) into Glance; return the image id."""
        if data is None:
            data = nd_fixtures.default_image_tarball()
        return self.glance.add_image(data, **kwargs)['id']

    def docker_image_loaded(self, image_id: str) -> bool:
        return bool(self.docker.images(name=images.glance_tag(image_id)))

    # -- servers ---------------------------------------------------------

    def boot(self, image_id: str = None, expected_state: str = 'ACTIVE',
             networks='none', **extra) -> dict:
        """Boot through the REST API and wait; deletes it at cleanup if
        the test did not (so the leak check judges the driver's destroy).
        """
        image_id = image_id or self.upload_image()
        body = {'name': 'nd-%s' % uuid.uuid4().hex[:8],
                'imageRef': image_id, 'flavorRef': self.flavor_id,
                'networks': networks}
        body.update(extra)
        server = self.api.post_server({'server': body})
        self.addCleanup(self._delete_if_exists, server)
        return self._wait_for_state_change(server, expected_state)

    def _delete_if_exists(self, server) -> None:
        try:
            self.api.delete_server(server['id'])
        except api_client.OpenStackApiNotFoundException:
            return
        self._wait_until_deleted(server)

    def action(self, server, action: str, body=None, expected_state=None
               ) -> dict:
        """POST a server action; wait for its end state and no task."""
        self.api.post_server_action(server['id'], {action: body})
        if expected_state:
            self._wait_for_state_change(server, expected_state)
        return self.wait_for_task_done(server)

    # -- the real containers ---------------------------------------------

    def containers_of(self, server_id: str) -> typing.Dict[str, dict]:
        """role -> ``docker inspect`` of the server's containers here."""
        found = self.docker.containers(all=True, filters={'label': [
            '%s=%s' % (guest.LABEL_INSTANCE, server_id),
            '%s=%s' % (guest.LABEL_HOST, self.compute_host)]})
        return {c['Labels'][guest.LABEL_ROLE]:
                self.docker.inspect_container(c['Id']) for c in found}

    def workload(self, server) -> dict:
        """``docker inspect`` of the server's workload container."""
        containers = self.containers_of(server['id'])
        self.assertIn(guest.ROLE_WORKLOAD, containers,
                      'no workload container for %s' % server['id'])
        return containers[guest.ROLE_WORKLOAD]

    def assertContainerStatus(self, server, status: str) -> dict:
        """The workload's Docker State.Status is ``status``."""
        inspect = self.workload(server)
        self.assertEqual(status, inspect['State']['Status'],
                         'container state: %s' % inspect['State'])
        return inspect

    def exec_in(self, server, *cmd) -> str:
        """Run a command in the server's workload container."""
        container = self.workload(server)['Id']
        exec_id = self.docker.exec_create(container, list(cmd))
        output = self.docker.exec_start(exec_id)
        result = self.docker.exec_inspect(exec_id)
        self.assertEqual(0, result['ExitCode'],
                         '%s failed: %r' % (cmd, output))
        return output.decode()

    def assertNoContainers(self, server_id: str) -> None:
        self.assertEqual({}, self.containers_of(server_id))
