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

"""Cold migration to another host: the driver's control flow and what
each failure rolls back, against specced mocks."""

import json
from unittest import mock

import fixtures
from nova import exception
from nova.image import glance
from nova import objects
from nova.virt import fake as fake_virt
from oslo_config import fixture as config_fixture
import testtools

from novadocker import conf
from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import guest
from novadocker.virt.docker import images
from novadocker.virt.docker import migrate
from novadocker.virt.docker import resize
from novadocker.virt.docker import snapshot
from novadocker.virt.docker import vifs
from tests.fixtures import objects as obj_fixtures

CONF = conf.CONF
PORTS = [{'id': 'port-1', 'address': 'fa:16:3e:00:00:01'}]
IMAGE = 'a7a5c1c4-1f06-4a43-9b0e-5d6c1c9a1e01'


class SendTest(testtools.TestCase):
    """migrate.send: a hidden image, filled by the snapshot upload."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.FakeLogger())
        self.glance = mock.create_autospec(glance.API, instance=True)
        self.glance.create.return_value = {'id': IMAGE}
        self.useFixture(fixtures.MockPatchObject(images, 'IMAGE_API',
                                                 self.glance))
        self.save = self.useFixture(fixtures.MockPatchObject(
            snapshot, 'save_to_glance', autospec=True)).mock
        self.instance = obj_fixtures.instance()
        self.api = mock.sentinel.api

    def test_hidden_private_image_of_the_commit(self):
        image_id = migrate.send(self.api, 'ctx', self.instance)
        self.assertEqual(IMAGE, image_id)
        record = self.glance.create.call_args.args[1]
        self.assertEqual('private', record['visibility'])
        self.assertIs(True, record['os_hidden'])
        self.assertEqual(('docker', 'raw'), (record['container_format'],
                                             record['disk_format']))
        self.assertEqual(self.instance.uuid,
                         record['properties'][migrate.MIGRATION_PROPERTY])
        self.save.assert_called_once_with(
            self.api, 'ctx', self.instance, IMAGE,
            resize.backup_tag(self.instance), mock.ANY,
            failure=migrate.TransferFailed)
        self.glance.delete.assert_not_called()

    def test_failed_upload_deletes_the_image(self):
        self.save.side_effect = migrate.TransferFailed(
            instance_uuid=self.instance.uuid, image_id=IMAGE,
            step='uploading', reason='503')
        self.assertRaises(migrate.TransferFailed, migrate.send, self.api,
                          'ctx', self.instance)
        self.glance.delete.assert_called_once_with('ctx', IMAGE)

    def test_delete_tolerates_a_gone_image(self):
        self.glance.delete.side_effect = exception.ImageNotFound(
            image_id=IMAGE)
        migrate.delete_image('ctx', IMAGE)

    def test_disk_info_round_trip(self):
        self.assertEqual(IMAGE, migrate.image_of(migrate.disk_info(
            IMAGE)))
        for same_host in ('[]', None, '', 'not json'):
            self.assertIsNone(migrate.image_of(same_host))


class DriverMigrateTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(config_fixture.Config(CONF)).config(
            host='src-host', my_ip='10.0.0.1')
        self.useFixture(fixtures.FakeLogger())
        self.driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        self.driver._api = mock.sentinel.api
        self.driver._host = 'src-host'
        self.instance = obj_fixtures.instance()
        self.guests = mock.create_autospec(guest.Guests, instance=True)
        self.guest = mock.create_autospec(guest.Guest, instance=True)
        self.guest.workload_id = 'w1'
        self.guest.power_state = 1            # RUNNING
        self.guest.has.return_value = False   # no rescue container
        self.guests.get.return_value = self.guest
        self.guests.lookup.return_value = self.guest
        self.useFixture(fixtures.MockPatchObject(
            docker_driver.DockerDriver, '_guests',
            new_callable=mock.PropertyMock, return_value=self.guests))
        self.driver._vifs = mock.create_autospec(vifs.VIFPlugger,
                                                 instance=True)
        # One recorder for the order of the calls that matter.
        self.calls = mock.Mock()
        self.check = self.patch(resize, 'check_new_flavor')
        self.read_host = self.patch(docker_driver.hostinfo, 'read_host')
        self.commit = self.patch(resize, 'commit_backup')
        self.remove_backup = self.patch(resize, 'remove_backup')
        self.send = self.patch(migrate, 'send', return_value=IMAGE)
        self.delete_image = self.patch(migrate, 'delete_image')
        self.start = self.useFixture(fixtures.MockPatchObject(
            self.driver, '_start_workload', autospec=True)).mock
        self.calls.attach_mock(self.guest.stop, 'stop')
        self.calls.attach_mock(self.driver._vifs.unplug, 'unplug')
        self.calls.attach_mock(self.guests.remove, 'remove_containers')
        self.calls.attach_mock(self.start, 'start')

    def patch(self, obj, name, **kwargs):
        found = self.useFixture(fixtures.MockPatchObject(
            obj, name, autospec=True, **kwargs)).mock
        self.calls.attach_mock(found, name)
        return found

    def migrate(self, dest='10.0.0.2'):
        return self.driver.migrate_disk_and_power_off(
            'ctx', self.instance, dest, obj_fixtures.flavor(2), PORTS)

    # -- the source --------------------------------------------------------

    def test_to_another_host_sends_then_leaves(self):
        info = self.migrate()
        self.assertEqual({'image_id': IMAGE}, json.loads(info))
        # Not checked against this host: the scheduler chose the other.
        self.check.assert_called_once_with(
            mock.sentinel.api, self.instance, mock.ANY, None, 'w1')
        self.read_host.assert_not_called()
        names = [c[0] for c in self.calls.mock_calls]
        self.assertEqual(['check_new_flavor', 'stop', 'commit_backup',
                          'send', 'unplug', 'remove_containers'],
                         [n for n in names if n in (
                             'check_new_flavor', 'stop', 'commit_backup',
                             'send', 'unplug', 'remove_containers',
                             'start', 'remove_backup')])
        self.driver._vifs.unplug.assert_called_once_with(self.instance,
                                                         PORTS)
        self.remove_backup.assert_not_called()   # kept for a revert
        self.start.assert_not_called()

    def test_same_host_keeps_everything_here(self):
        self.assertEqual('[]', self.migrate(dest='10.0.0.1'))
        self.read_host.assert_called_once_with(mock.sentinel.api)
        self.send.assert_not_called()
        self.guests.remove.assert_not_called()
        self.driver._vifs.unplug.assert_not_called()

    def test_failed_upload_rolls_back_and_restarts(self):
        self.send.side_effect = migrate.TransferFailed(
            instance_uuid=self.instance.uuid, image_id=IMAGE,
            step='uploading to Glance', reason='503')
        raised = self.assertRaises(exception.InstanceFaultRollback,
                                   self.migrate)
        self.assertIsInstance(raised.inner_exception, exception.ResizeError)
        self.assertIn('sending the container to 10.0.0.2',
                      str(raised.inner_exception))
        self.remove_backup.assert_called_once_with(mock.sentinel.api,
                                                   self.instance)
        self.start.assert_called_once_with(self.guest)
        # Nothing of the instance was removed; send deleted its image.
        self.guests.remove.assert_not_called()
        self.driver._vifs.unplug.assert_not_called()

    def test_failed_commit_sends_nothing(self):
        self.commit.side_effect = exception.NovaException('disk full')
        raised = self.assertRaises(exception.InstanceFaultRollback,
                                   self.migrate)
        self.assertIn('committing the container',
                      str(raised.inner_exception))
        self.send.assert_not_called()
        self.remove_backup.assert_called_once()
        self.start.assert_called_once_with(self.guest)

    def test_stopped_instance_stays_stopped_after_a_rollback(self):
        self.guest.power_state = 4   # SHUTDOWN
        self.send.side_effect = exception.NovaException('boom')
        self.assertRaises(exception.InstanceFaultRollback, self.migrate)
        self.start.assert_not_called()

    def test_refused_flavor_changes_nothing(self):
        self.check.side_effect = exception.InstanceFaultRollback(
            inner_exception=exception.ResizeError(reason='ephemeral'))
        self.assertRaises(exception.InstanceFaultRollback, self.migrate)
        self.guest.stop.assert_not_called()
        self.commit.assert_not_called()

    def test_failed_removal_is_left_to_confirm_or_revert(self):
        self.guests.remove.side_effect = exception.NovaException('busy')
        info = self.migrate()
        self.assertEqual(IMAGE, migrate.image_of(info))

    def test_confirm_after_another_host_removes_what_is_left(self):
        migration = objects.Migration(source_compute='src-host',
                                      dest_compute='dst-host')
        self.driver.confirm_migration('ctx', migration, self.instance,
                                      PORTS)
        self.guests.remove.assert_called_once_with(self.instance)
        self.driver._vifs.unplug.assert_called_once_with(self.instance,
                                                         PORTS)
        self.remove_backup.assert_called_once_with(mock.sentinel.api,
                                                   self.instance)

    def test_confirm_on_the_same_host_drops_only_the_commit(self):
        migration = objects.Migration(source_compute='src-host',
                                      dest_compute='src-host')
        for same in (migration, None):
            self.driver.confirm_migration('ctx', same, self.instance, PORTS)
        self.guests.remove.assert_not_called()
        self.assertEqual(2, self.remove_backup.call_count)

    def test_revert_writes_the_config_drive_before_the_build(self):
        self.guests.check_runtime.return_value = None
        self.patch(docker_driver.configdrive, 'build')
        self.patch(docker_driver.configdrive, 'remove')
        build = self.useFixture(fixtures.MockPatchObject(
            self.driver, '_build', autospec=True,
            return_value=self.guest)).mock
        self.calls.attach_mock(build, '_build')
        self.driver.finish_revert_migration('ctx', self.instance, PORTS,
                                            None)
        names = [c[0] for c in self.calls.mock_calls]
        # configdrive.remove, then its build, then the containers.
        self.assertEqual(['remove_containers', 'remove', 'build',
                          '_build', 'start'],
                         [n for n in names if n in (
                             'remove_containers', 'remove', 'build',
                             '_build', 'start')])
        docker_driver.configdrive.build.assert_called_once_with(
            self.instance, [], None, PORTS)

    # -- the destination ---------------------------------------------------

    def arrive(self, power_on=True, build_error=None):
        self.store = mock.create_autospec(images.ImageStore, instance=True)
        self.store.ensure_image.return_value = 'sha256:moved'
        self.store.loaded = True   # the transfer image is new here
        self.useFixture(fixtures.MockPatchObject(
            docker_driver.DockerDriver, '_images',
            new_callable=mock.PropertyMock, return_value=self.store))
        self.configdrive = self.patch(docker_driver.configdrive, 'build')
        self.build = self.useFixture(fixtures.MockPatchObject(
            self.driver, '_build', autospec=True,
            return_value=self.guest, side_effect=build_error)).mock
        self.calls.attach_mock(self.build, 'build')
        self.calls.attach_mock(self.store.release, 'release')
        self.guests.check_runtime.return_value = None
        self.driver.finish_migration(
            'ctx', objects.Migration(source_compute='src-host',
                                     dest_compute='dst-host'),
            self.instance, migrate.disk_info(IMAGE), PORTS, None, True,
            {}, power_on=power_on)

    def test_finish_builds_from_the_transfer_image(self):
        self.arrive()
        meta = self.store.ensure_image.call_args.args[1]
        self.assertEqual((IMAGE, 'docker'),
                         (meta.id, meta.container_format))
        self.assertTrue(self.store.ensure_image.call_args.kwargs['hold'])
        self.build.assert_called_once_with(self.instance, PORTS, True,
                                           mock.ANY)
        # The workload is made from the loaded image, with the commit's
        # own command (no image_meta).
        make_workload = self.build.call_args.args[3]
        make_workload('s1')
        self.guests.create_workload.assert_called_once_with(
            self.instance, 'sha256:moved', None, 's1', None)
        self.start.assert_called_once_with(self.guest)
        names = [c[0] for c in self.calls.mock_calls]
        self.assertLess(names.index('build'), names.index('start'))
        self.assertLess(names.index('start'), names.index('delete_image'))
        self.store.release.assert_called_once_with(IMAGE,
                                                   remove_if_unused=False)
        self.delete_image.assert_called_once_with('ctx', IMAGE)
        self.guests.remove.assert_not_called()

    def test_finish_powered_off_leaves_the_ports_without_carrier(self):
        self.arrive(power_on=False)
        self.start.assert_not_called()
        self.driver._vifs.set_carrier.assert_called_once_with(
            self.instance, PORTS, up=False)

    def test_failed_finish_removes_everything_here(self):
        self.assertRaises(
            exception.VirtualInterfaceCreateException, self.arrive,
            build_error=exception.VirtualInterfaceCreateException())
        self.guests.remove.assert_called_once_with(self.instance)
        self.driver._vifs.unplug.assert_called_once_with(self.instance,
                                                         PORTS)
        self.store.release.assert_called_once_with(IMAGE,
                                                   remove_if_unused=True)
        self.delete_image.assert_called_once_with('ctx', IMAGE)

    def test_failed_load_deletes_the_transfer_image(self):
        store = mock.create_autospec(images.ImageStore, instance=True)
        store.ensure_image.side_effect = images.ImageTransferFailed(
            image_id=IMAGE, reason='disk full')
        self.useFixture(fixtures.MockPatchObject(
            docker_driver.DockerDriver, '_images',
            new_callable=mock.PropertyMock, return_value=store))
        self.assertRaises(
            images.ImageTransferFailed, self.driver.finish_migration,
            'ctx', None, self.instance, migrate.disk_info(IMAGE), PORTS,
            None, True, {})
        store.release.assert_not_called()
        self.guests.remove.assert_called_once_with(self.instance)
        self.delete_image.assert_called_once_with('ctx', IMAGE)


class LiveMigrationTest(testtools.TestCase):

    def test_refused_clearly_on_both_sides(self):
        driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        instance = obj_fixtures.instance()
        for raised in (
                self.assertRaises(
                    exception.MigrationPreCheckError,
                    driver.check_can_live_migrate_destination, 'ctx',
                    instance, {}, {}),
                self.assertRaises(
                    exception.MigrationPreCheckError,
                    driver.check_can_live_migrate_source, 'ctx', instance,
                    None)):
            self.assertIn('live migration is not supported by nova-docker; '
                          'use cold migration', str(raised))

    def test_capabilities_unchanged(self):
        caps = docker_driver.DockerDriver.capabilities
        self.assertFalse(caps['supports_migrate_to_same_host'])
        self.assertTrue(caps['supports_evacuate'])
