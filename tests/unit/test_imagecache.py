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

"""Image cache ageing over a specced Docker client: what is aged, when,
by which clock, and how the driver hands Nova's pass to it."""

import datetime
from unittest import mock

import docker
import docker.errors
import fixtures
from nova.virt import fake as fake_virt
from nova.virt import imagecache as nova_imagecache
from oslo_config import fixture as config_fixture
import testtools

from novadocker import conf
from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import imagecache
from novadocker.virt.docker import images
from novadocker.virt.docker import snapshot
from tests.fixtures import objects as obj_fixtures

CONF = conf.CONF
HOST = 'unit-host'


def _api_error(explanation, cls=docker.errors.APIError, status=500):
    return cls('%d Server Error' % status,
               response=mock.Mock(status_code=status),
               explanation=explanation)


NOW = datetime.datetime(2030, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


def _stamp(seconds_ago):
    return (NOW - datetime.timedelta(seconds=seconds_ago)).strftime(
        '%Y-%m-%dT%H:%M:%S.%f123Z')


class AgeCacheTest(testtools.TestCase):
    """age_cache decisions over a specced client."""

    def setUp(self):
        super().setUp()
        self.api = mock.create_autospec(docker.APIClient, instance=True)
        tag = images.glance_tag
        self.listing = [
            {'Id': 'sha256:used', 'RepoTags': [tag('used')]},
            {'Id': 'sha256:old', 'RepoTags': [tag('old'),
                                              'someone/else:keep']},
            {'Id': 'sha256:young', 'RepoTags': [tag('young')]},
            {'Id': 'sha256:ctr', 'RepoTags': [tag('by-container')]},
            {'Id': 'sha256:never', 'RepoTags': [tag('never-tagged')]},
            {'Id': 'sha256:foreign', 'RepoTags': ['nova-docker/glancey:x']},
        ]
        self.ages = {'sha256:used': 10 ** 6, 'sha256:old': 5000,
                     'sha256:young': 10, 'sha256:ctr': 10 ** 6,
                     'sha256:never': None, 'sha256:foreign': 10 ** 6}
        self.api.images.return_value = self.listing
        self.api.containers.return_value = [
            {'Id': 'c1', 'ImageID': 'sha256:ctr'}]
        by_tag = {t: i['Id'] for i in self.listing for t in i['RepoTags']}

        def inspect(name):
            docker_id = by_tag.get(name, name)
            age = self.ages[docker_id]
            return {'Id': docker_id, 'Created': _stamp(7200),
                    'Metadata': {'LastTagTime': _stamp(age) if age is not None
                                 else '0001-01-01T00:00:00Z'}}

        self.api.inspect_image.side_effect = inspect
        patcher = mock.patch('oslo_utils.timeutils.utcnow',
                             return_value=NOW)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_decisions(self):
        result = imagecache.age_cache(self.api, {'used'}, 3600, now=NOW)
        self.assertEqual(['used', 'by-container'], result['in_use'])
        self.assertEqual(['old'], result['removed'])
        # Never tagged since its load (Created is build time): its clock
        # starts now rather than it going at once.
        self.assertEqual(['young', 'never-tagged'], result['kept'])
        self.api.remove_image.assert_called_once_with(
            images.glance_tag('old'), force=False)
        # In-use and never-touched images are re-tagged; nothing else is.
        touched = sorted(c.kwargs['tag'] for c in self.api.tag.call_args_list)
        self.assertEqual(['by-container', 'never-tagged', 'used'], touched)
        self.api.images.assert_called_once_with(name='nova-docker/glance')

    def test_removal_disabled(self):
        result = imagecache.age_cache(self.api, set(), 3600,
                                      remove_unused=False, now=NOW)
        self.api.remove_image.assert_not_called()
        self.assertIn('old', result['kept'])

    def test_docker_refusal_keeps_the_image(self):
        self.api.remove_image.side_effect = _api_error(
            'conflict: image is being used by running container', status=409)
        result = imagecache.age_cache(self.api, set(), 3600, now=NOW)
        self.assertEqual([], result['removed'])
        self.assertIn('old', result['kept'])

    def test_touched_meanwhile_is_kept(self):
        # The listing saw it old; under the lock it is young again.
        real_inspect = self.api.inspect_image.side_effect

        def inspect(name):
            found = real_inspect(name)
            if name == images.glance_tag('old'):
                found['Metadata']['LastTagTime'] = _stamp(1)
            return found

        self.api.inspect_image.side_effect = inspect
        result = imagecache.age_cache(self.api, set(), 3600, now=NOW)
        self.assertNotIn('old', result['removed'])
        self.assertIn('old', result['kept'])

    def test_last_used(self):
        self.assertIsNone(
            imagecache._last_used({'Created': _stamp(7200),
                                   'Metadata': {'LastTagTime':
                                                '0001-01-01T00:00:00Z'}}))
        self.assertEqual(
            NOW - datetime.timedelta(seconds=30),
            imagecache._last_used({'Created': _stamp(7200),
                                   'Metadata': {'LastTagTime': _stamp(30)}}))

    def test_held_image_is_kept(self):
        # A spawn between ensure_image and its container: no container
        # shows the image yet, the hold does.
        images._hold('old')
        self.addCleanup(images._unhold, 'old')
        result = imagecache.age_cache(self.api, {'used'}, 3600, now=NOW)
        self.assertIn('old', result['kept'])
        self.api.remove_image.assert_not_called()


class ImageCacheManagerTest(testtools.TestCase):
    """The driver's pass is nova's ImageCacheManager.update, as libvirt's,
    with nova's options."""

    def setUp(self):
        super().setUp()
        self.cfg = self.useFixture(config_fixture.Config(CONF))
        self.cfg.config(group='image_cache',
                        remove_unused_original_minimum_age_seconds=77,
                        remove_unused_base_images=False)
        self.api = mock.create_autospec(docker.APIClient, instance=True)
        self.instances = [obj_fixtures.instance(image_ref='img-a'),
                          obj_fixtures.instance(image_ref='img-b'),
                          obj_fixtures.instance(image_ref='')]
        self.outcome = {'in_use': ['img-a'], 'removed': [], 'kept': []}
        self.age = self.useFixture(fixtures.MockPatchObject(
            imagecache, 'age_cache', autospec=True,
            return_value=self.outcome)).mock

    def test_is_novas_image_cache_manager(self):
        self.assertTrue(issubclass(imagecache.ImageCacheManager,
                                   nova_imagecache.ImageCacheManager))

    def test_update_reads_nova_options_and_instances(self):
        result = imagecache.ImageCacheManager(self.api).update(
            None, self.instances)
        self.age.assert_called_once_with(self.api, {'img-a', 'img-b'}, 77,
                                         False)
        self.assertEqual(self.outcome, result)

    def test_driver_pass_is_the_managers_update(self):
        driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        driver._api = self.api
        driver._host = HOST
        self.assertTrue(driver.capabilities['has_imagecache'])
        with mock.patch.object(snapshot, 'remove_orphans', autospec=True,
                               return_value=[]) as orphans:
            driver.manage_image_cache(None, self.instances)
        self.age.assert_called_once_with(self.api, {'img-a', 'img-b'}, 77,
                                         False)
        orphans.assert_called_once_with(self.api, HOST,
                                        driver._snapshots.in_progress)
