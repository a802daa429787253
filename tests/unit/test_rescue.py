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

"""Rescue logic on the in-memory engine: how the stopped workload's
filesystem is mounted per storage driver, the btrfs probe's checks, and
what a failure leaves. The real mounts are tested in tests/functional
(overlay2: test_rescue, btrfs: test_resize)."""

import docker.errors
from nova import exception
from nova import objects
from oslo_config import fixture as config_fixture
import testtools

from novadocker import conf
from novadocker.virt.docker import guest
from novadocker.virt.docker import rescue
from tests.fixtures import fake_docker
from tests.fixtures import objects as obj_fixtures

CONF = conf.CONF
ROOT = '/data/docker'


class RescueTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(config_fixture.Config(CONF)).config(
            sandbox_image='sandbox:1', group='docker')
        self.engine = fake_docker.FakeEngine()
        self.api = self.engine.api
        self.engine.images['img:1'] = 'sha256:img'
        self.engine.images['sandbox:1'] = 'sha256:sandbox'
        self.api.info.return_value = {'DockerRootDir': ROOT}
        self.api.wait.return_value = {'StatusCode': 0}
        self.guests = guest.Guests(self.api, obj_fixtures.HOST)
        self.rescuer = rescue.Rescuer(self.api, self.guests)
        self.meta = objects.ImageMeta(id='x',
                                      properties=objects.ImageMetaProps())
        self.instance = obj_fixtures.instance()
        sandbox = self.guests.create_sandbox(self.instance, 'sandbox:1')
        self.guests.create_workload(self.instance, 'img:1', self.meta,
                                    sandbox)

    def guest(self) -> guest.Guest:
        return self.guests.get(self.instance)

    def rescue_id(self):
        found = self.guests.find(self.instance, rescue.ROLE_RESCUE)
        return found.id(rescue.ROLE_RESCUE) if found else None

    def rescue_container(self) -> dict:
        container_id = self.rescue_id()
        self.assertIsNotNone(container_id)
        return self.engine.containers[container_id]

    def root_mount(self) -> dict:
        [mount] = self.rescue_container()['host_config']['Mounts']
        return mount

    def assertNothingStarted(self):
        self.assertIsNone(self.rescue_id())
        self.assertEqual({guest.ROLE_SANDBOX, guest.ROLE_WORKLOAD},
                         {c['labels'][guest.LABEL_ROLE]
                          for c in self.engine.containers.values()})

    def test_overlay_of_the_workloads_own_layers(self):
        workload = self.api.inspect_container(
            self.guest().workload_id)['GraphDriver']['Data']
        self.rescuer.start(self.guest(), 'img:1', self.meta)
        mount = self.root_mount()
        self.assertEqual(
            {'Target': '/rescue', 'Type': 'volume', 'ReadOnly': False},
            {k: mount[k] for k in ('Target', 'Type', 'ReadOnly')})
        driver = mount['VolumeOptions']['DriverConfig']
        self.assertEqual('local', driver['Name'])
        self.assertEqual('overlay', driver['Options']['type'])
        # Every lower layer in order; writes land in the workload's upper
        # directory, so unrescue keeps them.
        self.assertEqual('lowerdir=%s,upperdir=%s,workdir=%s' % (
            workload['LowerDir'], workload['UpperDir'],
            workload['WorkDir']), driver['Options']['o'])

    def test_in_the_sandbox_with_the_rescue_label_and_no_quota(self):
        # The workload's root-disk quota (storage_opt) is not the
        # rescue's: its writes go to the workload's own layer.
        guests = guest.Guests(self.api, obj_fixtures.HOST, root_quota=True)
        rescue.Rescuer(self.api, guests).start(
            guests.get(self.instance), 'img:1', self.meta)
        found = self.rescue_container()
        self.assertEqual('nova-%s-rescue' % self.instance.uuid,
                         found['name'])
        self.assertEqual(rescue.ROLE_RESCUE,
                         found['labels'][guest.LABEL_ROLE])
        self.assertEqual('container:%s' % self.guest().sandbox_id,
                         found['host_config']['NetworkMode'])
        self.assertNotIn('StorageOpt', found['host_config'])
        self.assertTrue(found['running'])

    def test_overlay_without_its_directories_is_refused(self):
        real = self.engine._graph_driver

        def without_upper(cid):
            graph = real(cid)
            del graph['Data']['UpperDir']
            return graph
        self.engine._graph_driver = without_upper
        self.assertRaises(exception.InstanceNotRescuable,
                          self.rescuer.start, self.guest(), 'img:1',
                          self.meta)
        self.assertNothingStarted()

    def test_other_storage_drivers_are_refused_by_name(self):
        for name in ('vfs', 'devicemapper', 'zfs'):
            self.engine.storage_driver = name
            error = self.assertRaises(
                exception.InstanceNotRescuable, self.rescuer.start,
                self.guest(), 'img:1', self.meta)
            self.assertIn('(this engine uses %s)' % name, str(error))
            self.assertNothingStarted()

    def test_btrfs_binds_the_workloads_subvolume(self):
        self.engine.storage_driver = 'btrfs'
        self.api.logs.return_value = b'0f3c9a-mount\n'
        self.rescuer.start(self.guest(), 'img:1', self.meta)
        self.assertEqual(
            {'Target': '/rescue', 'Type': 'bind', 'ReadOnly': False,
             'Source': ROOT + '/btrfs/subvolumes/0f3c9a-mount'},
            self.root_mount())
        # The probe read the layer database read-only, without network
        # or capabilities, and is gone.
        workload_id = self.guest().workload_id
        probe = self.api.create_container.call_args_list[-2]
        self.assertEqual(['cat', '/mounts/%s/mount-id' % workload_id],
                         probe.kwargs['command'])
        probe_config = probe.kwargs['host_config']
        self.assertEqual(
            ['%s/image/btrfs/layerdb/mounts:/mounts:ro' % ROOT],
            probe_config['Binds'])
        self.assertEqual(['ALL'], probe_config['CapDrop'])
        self.assertEqual('none', probe_config['NetworkMode'])
        self.assertEqual(3, len(self.engine.containers))

    def test_btrfs_probe_output_is_checked(self):
        self.engine.storage_driver = 'btrfs'
        for status, output in ((0, b'../../../etc\n'), (0, b''),
                               (1, b'cat: no such file\n')):
            self.api.wait.return_value = {'StatusCode': status}
            self.api.logs.return_value = output
            self.assertRaises(exception.InstanceNotRescuable,
                              self.rescuer.start, self.guest(), 'img:1',
                              self.meta)
            self.assertNothingStarted()

    def test_failed_start_leaves_no_rescue_container(self):
        self.api.start.side_effect = fake_docker.api_error(
            docker.errors.APIError, 'cannot start', 500)
        self.assertRaises(exception.NovaException, self.rescuer.start,
                          self.guest(), 'img:1', self.meta)
        self.assertNothingStarted()

    def test_remove_stops_first_and_is_idempotent(self):
        self.rescuer.start(self.guest(), 'img:1', self.meta)
        rescue_id = self.rescue_id()
        self.api.reset_mock()
        self.rescuer.remove(self.guest())
        self.assertEqual(['stop', 'remove_container'],
                         [name for name, _args, _kwargs
                          in self.api.mock_calls
                          if name in ('stop', 'remove_container')])
        self.api.remove_container.assert_called_once_with(
            rescue_id, v=True, force=True)
        self.assertNothingStarted()
        self.rescuer.remove(self.guest())
        self.assertEqual(1, self.api.remove_container.call_count)
