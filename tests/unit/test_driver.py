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

"""DockerDriver against a stateful specced engine: spawn clean-up after a
failure injected at each step, and the host side."""

import threading
from unittest import mock

import docker.errors
import fixtures
from nova.compute import power_state
from nova.console import serial as serial_ports
from nova.console import type as ctype
from nova import exception
from nova import objects
from nova.virt import fake as fake_virt
from oslo_config import fixture as config_fixture
import testtools

from novadocker import conf
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import guest
from novadocker.virt.docker import images
from novadocker.virt.docker import reaper
from tests.fixtures import console as console_fixtures
from tests.fixtures import fake_docker
from tests.fixtures import glance as glance_fixtures
from tests.fixtures import images as image_fixtures
from tests.fixtures import network as net_fixtures
from tests.fixtures import objects as obj_fixtures

CONF = conf.CONF


def _api_error(status, explanation, cls=docker.errors.APIError):
    return cls('%d Server Error' % status,
               response=mock.Mock(status_code=status),
               explanation=explanation)


class DriverTestBase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.cfg = self.useFixture(config_fixture.Config(CONF))
        self.cfg.config(host='unit-host', vif_plugging_timeout=0)
        self.engine = fake_docker.FakeEngine()
        self.engine.images[CONF.docker.sandbox_image] = 'sha256:sandbox'
        self.glance = self.useFixture(glance_fixtures.GlanceFixture()).api
        self.driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        self.driver._api = self.engine.api
        self.driver._host = 'unit-host'
        self.context = mock.sentinel.context
        self.useFixture(fixtures.FakeLogger())

    def add_image(self, **kwargs):
        return objects.ImageMeta.from_dict(self.glance.add(
            image_fixtures.saved_tarball(('evil/name:latest',)), **kwargs))

    def spawn(self, image_meta, instance=None):
        instance = instance or obj_fixtures.instance()
        self.driver.spawn(self.context, instance, image_meta, [], None, {},
                          network_info=[])
        return instance

    def glance_tags(self):
        return sorted(t for t in self.engine.images
                      if t.startswith(images.GLANCE_REPOSITORY))


class SpawnTest(DriverTestBase):

    def test_spawn_creates_sandbox_and_workload(self):
        meta = self.add_image()
        instance = self.spawn(meta)
        roles = sorted(c['labels'][guest.LABEL_ROLE]
                       for c in self.engine.containers.values())
        self.assertEqual([guest.ROLE_SANDBOX, guest.ROLE_WORKLOAD], roles)
        self.assertEqual([images.glance_tag(meta.id)], self.glance_tags())
        self.assertNotIn('evil/name:latest', self.engine.images)
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(instance).state)

    def test_power_on_false_creates_but_does_not_start(self):
        meta = self.add_image()
        instance = obj_fixtures.instance()
        self.driver.spawn(self.context, instance, meta, [], None, {},
                          network_info=[], power_on=False)
        self.assertEqual(power_state.SHUTDOWN,
                         self.driver.get_info(instance).state)

    def test_workload_is_created_while_the_sandbox_starts(self):
        """The sandbox's start waits for the workload's creation: done one
        after the other, the wait would go unanswered."""
        meta = self.add_image()
        create = self.engine.api.create_container.side_effect
        start = self.engine.api.start.side_effect
        workload_created = threading.Event()

        def create_and_tell(image, **kwargs):
            created = create(image, **kwargs)
            if kwargs['labels'][guest.LABEL_ROLE] == guest.ROLE_WORKLOAD:
                workload_created.set()
            return created

        def start_sandbox_after_workload_create(cid):
            if self.engine.containers[cid]['labels'][guest.LABEL_ROLE] == \
                    guest.ROLE_SANDBOX:
                self.assertTrue(workload_created.wait(30))
            return start(cid)
        self.engine.api.create_container.side_effect = create_and_tell
        self.engine.api.start.side_effect = \
            start_sandbox_after_workload_create
        instance = self.spawn(meta)
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(instance).state)

    def test_spawn_lists_and_inspects_nothing_it_made(self):
        """The Guest comes from what create returned: no list call, and
        without ports no inspect of the sandbox."""
        meta = self.add_image()
        self.spawn(meta)   # loads the image
        self.engine.api.reset_mock()
        self.spawn(meta)
        calls = [name for name, _args, _kwargs
                 in self.engine.api.method_calls]
        self.assertNotIn('containers', calls)
        self.assertEqual(1, calls.count('inspect_container'))  # the command
        self.assertEqual(2, calls.count('create_container'))
        self.assertEqual(2, calls.count('start'))


class SpawnCleanupTest(DriverTestBase):
    """A failure at each step leaves no container and no loaded image."""

    def assertNothingLeft(self):
        self.assertEqual({}, self.engine.containers)
        self.assertEqual([], self.glance_tags())

    def _fail_spawn(self, meta, expected=exception.NovaException):
        exc = self.assertRaises(expected, self.spawn, meta)
        self.assertNothingLeft()
        return exc

    def test_non_docker_image_touches_nothing(self):
        meta = self.add_image(container_format='bare')
        exc = self._fail_spawn(meta, exception.ImageUnacceptable)
        self.assertIn('--container-format docker', str(exc))
        self.assertEqual({}, self.glance.download_count)
        self.assertEqual([], self.engine.api.method_calls)

    def test_download_refused(self):
        meta = self.add_image()
        with mock.patch.object(self.glance, 'download', autospec=True,
                               side_effect=exception.GlanceConnectionFailed(
                                   server='glance', reason='503')):
            self._fail_spawn(meta, exception.GlanceConnectionFailed)

    def test_download_breaks_mid_stream(self):
        meta = self.add_image()
        data = self.glance.data[meta.id]

        def broken(*args, **kwargs):
            yield data[:1024]
            raise IOError('connection reset by Glance')
        with mock.patch.object(self.glance, 'download', autospec=True,
                               side_effect=broken):
            exc = self._fail_spawn(meta, images.ImageTransferFailed)
        self.assertIn('connection reset by Glance', str(exc))

    def test_glance_error_mid_stream_is_not_blamed_on_the_image(self):
        meta = self.add_image()
        data = self.glance.data[meta.id]

        def broken(*args, **kwargs):
            yield data[:1024]
            raise exception.GlanceConnectionFailed(server='glance',
                                                   reason='reset')
        with mock.patch.object(self.glance, 'download', autospec=True,
                               side_effect=broken):
            self._fail_spawn(meta, exception.GlanceConnectionFailed)

    def test_checksum_mismatch(self):
        meta = self.add_image(corrupt_hash=True)
        exc = self._fail_spawn(meta, exception.ImageUnacceptable)
        self.assertIn('checksum mismatch', str(exc))
        self.assertEqual(1, self.engine.loads)   # it was loaded, then removed

    def test_load_refused(self):
        meta = self.add_image()

        def refuse(data, quiet=None):
            b''.join(data)
            return iter([{'errorDetail': {'message': 'invalid tar header'},
                          'error': 'invalid tar header'}])
        self.engine.api.load_image.side_effect = refuse
        exc = self._fail_spawn(meta, exception.ImageUnacceptable)
        self.assertIn('invalid tar header', str(exc))

    def test_load_reports_another_name(self):
        meta = self.add_image()

        def other(data, quiet=None):
            b''.join(data)
            self.engine.images['something:else'] = 'sha256:x'
            return iter([{'stream': 'Loaded image: something:else\n'}])
        self.engine.api.load_image.side_effect = other
        self._fail_spawn(meta, exception.ImageUnacceptable)

    def test_sandbox_create_fails(self):
        meta = self.add_image()
        self.engine.api.create_container.side_effect = _api_error(
            500, 'no space left on device')
        exc = self._fail_spawn(meta, docker_client.DockerOperationFailed)
        self.assertIn('no space left on device', str(exc))

    def test_workload_create_fails(self):
        meta = self.add_image()
        create = self.engine.api.create_container.side_effect

        def create_sandbox_only(image, **kwargs):
            if kwargs['labels'][guest.LABEL_ROLE] == guest.ROLE_WORKLOAD:
                raise _api_error(500, 'invalid mount config')
            return create(image, **kwargs)
        self.engine.api.create_container.side_effect = create_sandbox_only
        exc = self._fail_spawn(meta, docker_client.DockerOperationFailed)
        self.assertIn('invalid mount config', str(exc))

    def test_workload_start_fails_command_missing(self):
        meta = self.add_image()
        start = self.engine.api.start.side_effect
        sandboxes = []

        def start_sandbox_only(cid):
            if self.engine.containers[cid]['labels'][guest.LABEL_ROLE] == \
                    guest.ROLE_WORKLOAD:
                raise _api_error(
                    400, 'OCI runtime create failed: exec: "/nope": stat '
                         '/nope: no such file or directory: unknown')
            sandboxes.append(cid)
            return start(cid)
        self.engine.api.start.side_effect = start_sandbox_only
        exc = self._fail_spawn(meta, docker_client.CommandNotFound)
        self.assertIsInstance(exc, exception.ImageUnacceptable)
        self.assertIn('/nope', str(exc))
        self.assertEqual(1, len(sandboxes))   # it got that far

    def test_image_gone_before_create_is_a_boot_fault(self):
        """Someone removed the loaded image under the spawn: the boot
        ends with an image fault, not "instance disappeared"."""
        meta = self.add_image()
        create = self.engine.api.create_container.side_effect

        def image_removed_meanwhile(image, **kwargs):
            if kwargs['labels'][guest.LABEL_ROLE] == guest.ROLE_WORKLOAD:
                self.engine.images.pop(images.glance_tag(meta.id))
            return create(image, **kwargs)
        self.engine.api.create_container.side_effect = \
            image_removed_meanwhile
        exc = self._fail_spawn(meta, docker_client.ImageMissing)
        self.assertIsInstance(exc, exception.ImageUnacceptable)
        self.assertNotIsInstance(exc, exception.InstanceNotFound)
        self.assertIn(meta.id, str(exc))

    def test_sandbox_gone_before_workload_create_is_instance_not_found(self):
        """Docker says the sandbox container is missing: that is one of
        the instance's own containers, so the instance is gone."""
        meta = self.add_image()
        create = self.engine.api.create_container.side_effect

        def sandbox_removed_meanwhile(image, **kwargs):
            if kwargs['labels'][guest.LABEL_ROLE] == guest.ROLE_WORKLOAD:
                raise _api_error(404, 'No such container: abc',
                                 docker.errors.NotFound)
            return create(image, **kwargs)
        self.engine.api.create_container.side_effect = \
            sandbox_removed_meanwhile
        self._fail_spawn(meta, docker_client.ContainerMissing)

    def test_sandbox_start_fails_while_the_workload_is_made(self):
        """The workload is created after the sandbox failed to start: the
        clean-up waits for it and removes it too."""
        meta = self.add_image()
        create = self.engine.api.create_container.side_effect
        sandbox_failed = threading.Event()

        def create_workload_late(image, **kwargs):
            if kwargs['labels'][guest.LABEL_ROLE] == guest.ROLE_WORKLOAD:
                self.assertTrue(sandbox_failed.wait(30))
            return create(image, **kwargs)

        def fail_sandbox_start(cid):
            sandbox_failed.set()
            raise _api_error(500, 'cannot start the sandbox')
        self.engine.api.create_container.side_effect = create_workload_late
        self.engine.api.start.side_effect = fail_sandbox_start
        exc = self._fail_spawn(meta, docker_client.DockerOperationFailed)
        self.assertIn('cannot start the sandbox', str(exc))
        self.assertEqual(2, self.engine.api.create_container.call_count)

    def test_workload_start_fails_otherwise(self):
        meta = self.add_image()
        start = self.engine.api.start.side_effect

        def start_sandbox_only(cid):
            if self.engine.containers[cid]['labels'][guest.LABEL_ROLE] == \
                    guest.ROLE_WORKLOAD:
                raise _api_error(500, 'cgroup: device busy')
            return start(cid)
        self.engine.api.start.side_effect = start_sandbox_only
        exc = self._fail_spawn(meta, exception.InstanceDeployFailure)
        self.assertIn('device busy', str(exc))

    def test_cached_image_survives_a_failed_spawn(self):
        meta = self.add_image()
        first = self.spawn(meta)
        self.engine.api.create_container.side_effect = _api_error(
            500, 'boom')
        self.assertRaises(docker_client.DockerOperationFailed,
                          self.spawn, meta)
        self.assertEqual([images.glance_tag(meta.id)], self.glance_tags())
        self.assertEqual(1, self.glance.download_count[meta.id])
        # Only the failed spawn's containers went away.
        self.assertEqual({first.uuid}, {
            c['labels'][guest.LABEL_INSTANCE]
            for c in self.engine.containers.values()})

    def test_image_another_boot_loaded_survives(self):
        """Two boots of one uncached image: the one that did not load it
        fails, and must not take the image away from the other."""
        meta = self.add_image()
        check = images.check_image_acceptable
        calls = []

        def other_boot_loads_meanwhile(image_meta):
            calls.append(image_meta.id)
            if len(calls) == 2:   # inside ensure_image, before its lock
                images.ImageStore(self.engine.api).ensure_image(
                    self.context, image_meta)
            return check(image_meta)
        self.useFixture(fixtures.MonkeyPatch(
            'novadocker.virt.docker.images.check_image_acceptable',
            other_boot_loads_meanwhile))
        self.engine.api.create_container.side_effect = _api_error(
            500, 'boom')
        self.assertRaises(docker_client.DockerOperationFailed,
                          self.spawn, meta)
        self.assertEqual([images.glance_tag(meta.id)], self.glance_tags())
        self.assertEqual(1, self.glance.download_count[meta.id])


class DestroyTest(DriverTestBase):

    def test_destroy_is_idempotent(self):
        instance = self.spawn(self.add_image())
        self.driver.destroy(self.context, instance, [])
        self.driver.destroy(self.context, instance, [])
        self.driver.destroy(self.context, obj_fixtures.instance(), [])
        self.assertEqual({}, self.engine.containers)

    def test_get_info_of_missing_instance(self):
        self.assertRaises(exception.InstanceNotFound, self.driver.get_info,
                          obj_fixtures.instance())


class GetInfoTest(DriverTestBase):
    """The power-state sync's get_info: one listing for the host."""

    def setUp(self):
        super().setUp()
        self.now = 1000.0
        self.driver._states = guest.StateCache(clock=lambda: self.now)
        self.meta = self.add_image()
        self.instances = [self.spawn(self.meta) for _ in range(3)]
        # Listings made now begin after the spawns' changes, and later
        # than Docker's listing may lag behind them.
        self.driver._states.forget()
        self.now += guest.REPLICA_LAG
        self.api = self.engine.api
        self.api.containers.reset_mock()
        self.api.inspect_container.reset_mock()

    def test_cached_get_info_is_one_listing_for_all(self):
        states = [self.driver.get_info(i).state for i in self.instances]
        self.assertEqual([power_state.RUNNING] * 3, states)
        self.assertEqual(1, self.api.containers.call_count)
        self.assertEqual(0, self.api.inspect_container.call_count)

    def test_uncached_get_info_reads_each_instance(self):
        for instance in self.instances:
            self.driver.get_info(instance, use_cache=False)
        self.assertEqual(3, self.api.containers.call_count)
        self.assertEqual(3, self.api.inspect_container.call_count)

    def test_state_after_the_drivers_own_operations_is_fresh(self):
        paused, stopped, suspended = self.instances
        self.driver.get_info(paused)   # the listing, before the changes
        self.driver.pause(paused)
        self.driver.power_off(stopped)
        self.driver.suspend(self.context, suspended)
        self.assertEqual(
            [power_state.PAUSED, power_state.SHUTDOWN, power_state.PAUSED],
            [self.driver.get_info(i).state for i in self.instances])
        self.driver.unpause(paused)
        self.driver.power_on(self.context, stopped, [])
        self.assertEqual(
            [power_state.RUNNING, power_state.RUNNING],
            [self.driver.get_info(i).state for i in (paused, stopped)])
        self.driver.destroy(self.context, paused, [])
        self.assertRaises(exception.InstanceNotFound, self.driver.get_info,
                          paused)

    def test_engine_back_forgets_the_listing(self):
        instance = self.instances[0]
        self.driver.get_info(instance)
        # Changed while the event stream was down: no event came.
        workload = self.driver._guests.get(instance).workload_id
        self.engine._set(workload, paused=True)
        self.driver._reaper_thread = mock.create_autospec(
            reaper.ReaperThread, instance=True)
        self.driver._engine_back()
        self.assertEqual(power_state.PAUSED,
                         self.driver.get_info(instance).state)
        self.driver._reaper_thread.trigger.assert_called_once_with(
            'the Docker engine is back')


class UnplugFailureTest(DriverTestBase):
    """OVSDB down or a privsep error while unplugging: the delete goes
    on and the containers are removed (libvirt ignores unplug errors on
    clean-up)."""

    def setUp(self):
        super().setUp()
        self.logs = self.useFixture(fixtures.FakeLogger())
        self.instance = self.spawn(self.add_image())
        self.unplug = self.useFixture(fixtures.MockPatchObject(
            self.driver._vifs, 'unplug', autospec=True,
            side_effect=exception.VirtualInterfaceUnplugException(
                reason='OVSDB unreachable'))).mock

    def test_destroy_removes_the_containers(self):
        vifs = [net_fixtures.make_vif()]
        self.driver.destroy(self.context, self.instance, vifs)
        self.unplug.assert_called_once_with(self.instance, vifs)
        self.assertEqual({}, self.engine.containers)
        self.assertIn('OVSDB unreachable', self.logs.output)

    def test_cleanup_removes_the_containers(self):
        self.driver.cleanup(self.context, self.instance, [])
        self.assertEqual(1, self.unplug.call_count)
        self.assertEqual({}, self.engine.containers)

    def test_cleanup_without_vifs_does_not_unplug(self):
        self.driver.cleanup(self.context, self.instance, [],
                            destroy_vifs=False)
        self.unplug.assert_not_called()
        self.assertEqual({}, self.engine.containers)

    def test_failed_spawn_with_failed_unplug_reports_the_spawn_error(self):
        self.engine.api.create_container.side_effect = _api_error(
            500, 'no space left on device')
        exc = self.assertRaises(docker_client.DockerOperationFailed,
                                self.spawn, self.add_image())
        self.assertIn('no space left on device', str(exc))
        self.assertEqual([self.instance.uuid], [
            c['labels'][guest.LABEL_INSTANCE]
            for c in self.engine.containers.values()
            if c['labels'][guest.LABEL_ROLE] == guest.ROLE_WORKLOAD])


class CarrierTest(DriverTestBase):
    """A stopped or frozen workload's ports lose carrier; they get it
    back before the workload runs again."""

    def setUp(self):
        super().setUp()
        self.logs = self.useFixture(fixtures.FakeLogger())
        self.instance = self.spawn(self.add_image())
        self.ports = [net_fixtures.make_vif()]
        obj_fixtures.set_ports(self.instance, self.ports)
        self.set_carrier = self.useFixture(fixtures.MockPatchObject(
            self.driver._vifs, 'set_carrier', autospec=True)).mock

    def workload(self) -> dict:
        guest_ = self.driver._guests.get(self.instance)
        return self.engine.api.inspect_container(guest_.workload_id)['State']

    def assertCarrier(self, up: bool) -> None:
        self.set_carrier.assert_called_once_with(self.instance, self.ports,
                                                 up=up)
        self.set_carrier.reset_mock()

    def test_off_after_stop_and_pause(self):
        self.driver.pause(self.instance)
        self.assertTrue(self.workload()['Paused'])
        self.assertCarrier(False)
        self.driver.unpause(self.instance)
        self.assertCarrier(True)
        self.assertFalse(self.workload()['Paused'])
        self.driver.suspend(self.context, self.instance)
        self.assertCarrier(False)
        self.driver.resume(self.context, self.instance, self.ports)
        self.assertCarrier(True)
        self.driver.power_off(self.instance)
        self.assertFalse(self.workload()['Running'])
        self.assertCarrier(False)
        self.driver.soft_delete(self.instance)
        self.assertCarrier(False)

    def test_failure_to_drop_it_does_not_fail_the_stop(self):
        self.set_carrier.side_effect = \
            exception.VirtualInterfacePlugException('netlink says no')
        self.driver.power_off(self.instance)
        self.assertFalse(self.workload()['Running'])
        self.assertIn('netlink says no', self.logs.output)

    def _attach(self) -> dict:
        if not hasattr(self, 'attach'):   # patched once per test
            self.attach = self.useFixture(fixtures.MockPatchObject(
                self.driver._vifs, 'attach', autospec=True,
                return_value='eth1')).mock
            self.detach = self.useFixture(fixtures.MockPatchObject(
                self.driver._vifs, 'detach', autospec=True)).mock
        self.attach.reset_mock()
        vif = net_fixtures.make_vif()
        self.driver.attach_interface(self.context, self.instance, None, vif)
        self.attach.assert_called_once_with(self.instance, vif, mock.ANY)
        return vif

    def test_port_attached_to_a_running_instance_keeps_carrier(self):
        self._attach()
        self.set_carrier.assert_not_called()

    def test_port_attached_to_a_stopped_or_paused_instance_has_none(self):
        for stop, start in ((self.driver.power_off, None),
                            (self.driver.pause, self.driver.unpause)):
            stop(self.instance)
            self.set_carrier.reset_mock()
            vif = self._attach()
            self.set_carrier.assert_called_once_with(self.instance, [vif],
                                                     up=False)
            self.set_carrier.reset_mock()
            if start:
                start(self.instance)

    def test_port_is_detached_again_if_its_carrier_cannot_drop(self):
        self.driver.power_off(self.instance)
        self.set_carrier.side_effect = \
            exception.VirtualInterfacePlugException('netlink says no')
        self.assertRaises(exception.VirtualInterfacePlugException,
                          self._attach)
        self.detach.assert_called_once_with(self.instance, mock.ANY)

    def test_no_carrier_no_thaw(self):
        self.driver.pause(self.instance)
        self.set_carrier.side_effect = \
            exception.VirtualInterfacePlugException('netlink says no')
        self.assertRaises(exception.VirtualInterfacePlugException,
                          self.driver.unpause, self.instance)
        self.assertTrue(self.workload()['Paused'])


class ResourcePassTest(DriverTestBase):
    """One update_available_resource pass reads docker info once; the
    claims after it reuse that read."""

    def setUp(self):
        super().setUp()
        self.engine.api.info.return_value = {
            'NCPU': 2, 'MemTotal': 4 * 1024 ** 3, 'DockerRootDir': '/',
            'Runtimes': {'runc': {}}, 'DefaultRuntime': 'runc'}
        from nova.compute import provider_tree
        self.tree = provider_tree.ProviderTree()
        self.tree.new_root('unit-host', 'a4cd1dd6-2d5e-4b8f-9f0d-c1ab38d3d4c1')

    def test_one_info_call_per_pass(self):
        self.engine.api.info.reset_mock()
        resources = self.driver.get_available_resource('unit-host')
        self.driver.update_provider_tree(self.tree, 'unit-host')
        self.driver.update_provider_tree(self.tree, 'unit-host')   # a claim
        self.assertEqual(1, self.engine.api.info.call_count)
        self.assertEqual(2, resources['vcpus'])
        self.assertEqual(2, self.tree.data('unit-host').inventory[
            'VCPU']['total'])
        self.assertIn('CUSTOM_DOCKER_RUNTIME_RUNC',
                      self.tree.data('unit-host').traits)
        self.driver.get_available_resource('unit-host')   # next pass
        self.assertEqual(2, self.engine.api.info.call_count)


class ConsoleTest(DriverTestBase):

    def test_unreadable_log_is_console_not_available(self):
        instance = self.spawn(self.add_image())
        self.engine.api.logs.side_effect = _api_error(
            501, 'configured logging driver does not support reading')
        self.assertRaises(exception.ConsoleNotAvailable,
                          self.driver.get_console_output, self.context,
                          instance)

    def test_missing_instance(self):
        self.assertRaises(exception.InstanceNotFound,
                          self.driver.get_console_output, self.context,
                          obj_fixtures.instance())


class SerialConsoleTest(DriverTestBase):
    """get_serial_console translates; the relay is test_console's."""

    def setUp(self):
        super().setUp()
        ports = self.useFixture(console_fixtures.PrivatePortRange())
        self.cfg.config(enabled=True, proxyclient_address='127.0.0.1',
                        port_range=ports.port_range, group='serial_console')
        self.instance = self.spawn(self.add_image())
        self.addCleanup(self.driver.cleanup_host, 'unit-host')

    def test_disabled_is_console_type_unavailable(self):
        self.cfg.config(enabled=False, group='serial_console')
        self.assertRaises(exception.ConsoleTypeUnavailable,
                          self.driver.get_serial_console, self.context,
                          self.instance)

    def test_stopped_workload_is_not_ready(self):
        self.driver.power_off(self.instance)
        self.assertRaises(exception.InstanceNotReady,
                          self.driver.get_serial_console, self.context,
                          self.instance)

    def test_missing_instance(self):
        self.assertRaises(exception.InstanceNotFound,
                          self.driver.get_serial_console, self.context,
                          obj_fixtures.instance())

    def test_host_and_port_until_destroy(self):
        first = self.driver.get_serial_console(self.context, self.instance)
        self.assertIsInstance(first, ctype.ConsoleSerial)
        self.assertEqual('127.0.0.1', first.host)
        self.assertEqual(first.port, self.driver.get_serial_console(
            self.context, self.instance).port)
        self.driver.destroy(self.context, self.instance, [])
        self.assertNotIn(('127.0.0.1', first.port),
                         serial_ports.ALLOCATED_PORTS)


class InitHostTest(DriverTestBase):

    def test_unreachable_engine_has_a_clear_message(self):
        driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        with mock.patch.object(docker_client, 'connect', autospec=True,
                               side_effect=docker_client.DockerUnavailable(
                                   url='unix:///nowhere', reason='refused')):
            exc = self.assertRaises(exception.NovaException,
                                    driver.init_host, 'h')
        self.assertIn('docker group', str(exc))
        self.assertIn('unix:///nowhere', str(exc))


class ShutdownTimeoutTest(testtools.TestCase):
    """Soft reboot and soft delete get power_off's budget."""

    def setUp(self):
        super().setUp()
        self.cfg = self.useFixture(config_fixture.Config(CONF))
        self.cfg.config(shutdown_timeout=42)

    def test_default_is_shutdown_timeout(self):
        self.assertEqual(42, docker_driver.shutdown_timeout(
            obj_fixtures.instance()))

    def test_image_os_shutdown_timeout_wins(self):
        instance = obj_fixtures.instance(
            system_metadata={'image_os_shutdown_timeout': '7'})
        self.assertEqual(7, docker_driver.shutdown_timeout(instance))

    def test_soft_reboot_uses_it_hard_reboot_does_not(self):
        driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        guests = mock.create_autospec(guest.Guests, instance=True)
        found = mock.create_autospec(guest.Guest, instance=True)
        guests.lookup.return_value = guests.get.return_value = found
        instance = obj_fixtures.instance(
            system_metadata={'image_os_shutdown_timeout': '7'})
        with mock.patch.object(docker_driver.DockerDriver, '_guests',
                               new=guests), \
                mock.patch.object(driver, '_ensure_sandbox', autospec=True), \
                mock.patch.object(driver, '_start_workload', autospec=True):
            driver.reboot(None, instance, [], 'SOFT')
            found.stop.assert_called_once_with(7)
            found.stop.reset_mock()
            driver.reboot(None, instance, [], 'HARD')
            found.stop.assert_called_once_with(0)
            found.stop.reset_mock()
            driver.soft_delete(instance)
            found.stop.assert_called_once_with(7)
