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

"""Tarballs exactly as the engine under test's ``docker save`` writes them.

Users upload what their own Docker saves: Docker 20.10 writes the legacy
layout, Docker 25+ the OCI layout (``index.json`` + ``blobs/``, with a
compatibility ``manifest.json``). ``tools/run-tests --docker=26`` runs this
against Docker 26.1.
"""

import io
import json
import subprocess
import tarfile
import uuid

from tests.fixtures import docker as docker_fixtures
from tests.fixtures import images as image_fixtures
from tests.functional import test_images


class EngineSaveTest(test_images.ImageTestCase):

    def docker_save(self, *names: str) -> bytes:
        """``docker save NAME...`` with the engine's own CLI."""
        return subprocess.run(
            [docker_fixtures.docker_cli(), '-H', docker_fixtures.api_url(),
             'save']
            + list(names), check=True, capture_output=True,
            timeout=300).stdout

    def test_one_image_two_tags_boots(self):
        """``docker save app:1 app:latest``: one image under two tags.
        Docker 25+ lists it once per tag in index.json (same manifest
        digest); it is still one image, and it boots."""
        repository = 'ndtest-app-%s' % uuid.uuid4().hex[:10]
        unique = uuid.uuid4().hex
        self.api.import_image_from_data(
            image_fixtures.busybox_rootfs({'etc/unique': unique.encode()}),
            repository=repository, tag='1',
            changes=['CMD ["/bin/sleep", "2147483647"]'])
        self.addCleanup(self._remove_repository, repository)
        self.api.tag(repository + ':1', repository, 'latest')
        tarball = self.docker_save(repository + ':1', repository + ':latest')
        image_id = self.api.inspect_image(repository + ':1')['Id']
        # As on a compute node: the image is not there before the boot.
        self._remove_repository(repository)

        with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
            names = tar.getnames()
            manifest = json.load(tar.extractfile('manifest.json'))
            index = (json.load(tar.extractfile('index.json'))
                     if 'index.json' in names else None)
        self.assertEqual(1, len(manifest))
        self.assertEqual({repository + ':1', repository + ':latest'},
                         set(manifest[0]['RepoTags']))
        api_version = tuple(
            int(part) for part in self.api.version()['ApiVersion'].split('.'))
        if api_version >= (1, 44):   # Docker 25+: the OCI layout
            self.assertIsNotNone(index, names)
        if index is not None:
            self.assertEqual(2, len(index['manifests']))
            self.assertEqual(1, len({entry['digest']
                                     for entry in index['manifests']}))

        meta = self.add_image(tarball)
        instance = self.spawn(meta)
        self.assertLoadedAs(instance, meta, tarball)
        self.assertEqual(image_id, self.inspect(instance)['Image'])
        # The tarball's names stay out of the engine.
        self.assertEqual([], self.api.images(name=repository))

    def _remove_repository(self, repository: str) -> None:
        for tag in ('1', 'latest'):
            try:
                self.api.remove_image('%s:%s' % (repository, tag))
            except Exception:
                pass
