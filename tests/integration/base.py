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

:class:`tests.fixtures.glance.NovaGlanceFixture` (``self.glance``) is
nova's GlanceFixture serving real bytes: ``create``/``update`` store the
data with size and hashes as Glance would, ``download`` streams chunks,
``bytes_of(id)`` returns what was uploaded (e.g. a snapshot tarball).
"""

# Gotcha 11: nova.tests.functional applies nova's monkey_patch (threading
# mode with OS_NOVA_DISABLE_EVENTLET_PATCHING=1); it must come before
# nova.tests.fixtures, which would import eventlet through oslo_service.
import nova.tests.functional  # noqa: F401  isort:skip

import sys
import time
import typing
from unittest import mock
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
from tests.fixtures import docker as docker_fixtures
from tests.fixtures import glance as glance_fixtures
from tests.fixtures import images as image_fixtures

# How long to wait for a server to reach a state: booting loads a tarball
# into Docker, which is slower than the fake driver the helpers assume.
# This bounds a wait; no test asserts on speed.
WAIT_RETRIES = 240   # x 0.5 s


# The module of nova's CellDatabases fixture (the package re-exports its
# names, but the fixture looks ReaderWriterLock up in its own module).
NOVA_FIXTURES_MODULE = sys.modules[nova_fixtures.CellDatabases.__module__]


class ReaderPreferringLock(nova_fixtures.ReaderWriterLock):
    """Nova's CellDatabases lock, letting a reader in while a writer waits.

    Under native threads, nova 34's test fixtures can deadlock: CellDatabases
    guards its cell switching with a writer-preferring reader/writer lock,
    and DatabaseWriteLock serialises SQLite writers with a per-database
    lock, taken in either order. Seen in CI as a hung integration test: a
    build held a cell read lock and waited for the database write lock; the
    service heartbeat held that one and asked for a nested read lock, refused
    because a quota recheck was waiting for the cell write lock, which waited
    for the build's read lock. Letting readers in while a writer waits breaks
    the cycle (a writer still waits for all readers to leave). Only the test
    harness changes; the driver is not involved.
    """

    def _acquire_read_lock(self, me):
        if me in self._pending_writers:
            raise RuntimeError('Writer %s can not acquire a read lock while '
                               'waiting for the write lock' % me)
        with self._cond:
            while self._writer is not None and self._writer != me:
                self._cond.wait()
            self._readers[me] = self._readers.get(me, 0) + 1


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
        # The CellDatabases fixture nova's setUp makes keeps this lock.
        with mock.patch.object(NOVA_FIXTURES_MODULE, 'ReaderWriterLock',
                               ReaderPreferringLock):
            super().setUp()
        docker_fixtures.require_functional(self)
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
        self.flags(api_url=docker_fixtures.api_url(), group='docker')
        self.glance = self.useFixture(glance_fixtures.NovaGlanceFixture(self))
        self.docker = docker_fixtures.docker_api()
        # Registered before the compute starts, so it runs after the
        # compute service stopped.
        self.leaks = self.useFixture(docker_fixtures.DockerLeakCheck(
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
            data = image_fixtures.default_image_tarball()
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
        """Run a command in the server's workload container; return its
        output. A non-zero exit fails the test."""
        return self.exec_result(server, *cmd).output

    def exec_result(self, server, *cmd,
                    check=True) -> docker_fixtures.ExecResult:
        """Exit code and output of a command in the server's workload."""
        return docker_fixtures.exec_in(
            self.docker, self.workload(server)['Id'], *cmd, check=check)

    def assertNoContainers(self, server_id: str) -> None:
        self.assertEqual({}, self.containers_of(server_id))
