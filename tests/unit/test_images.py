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

"""The tarball rewrite (names, one image only) and its bounded stream."""

import gzip
import io
import json
import os
import queue
import tarfile
import threading
from unittest import mock

import docker
import fixtures
from nova import exception
from nova import objects
import testtools

from novadocker.virt.docker import images
from tests.unit import fake_docker

NEW_TAG = 'nova-docker/glance:1234'


def _rewritten(tarball: bytes, chunk_size=4096) -> tarfile.TarFile:
    body = b''.join(images.retag_tarball(
        images._ChunkReader([tarball]), NEW_TAG, chunk_size))
    return tarfile.open(fileobj=io.BytesIO(body))


class CheckAcceptableTest(testtools.TestCase):

    def test_only_docker_container_format(self):
        for fmt in ('bare', 'ovf', 'ova', None):
            values = {'id': 'img', 'disk_format': 'raw'}
            if fmt:
                values['container_format'] = fmt
            meta = objects.ImageMeta.from_dict(values)
            exc = self.assertRaises(exception.ImageUnacceptable,
                                    images.check_image_acceptable, meta)
            self.assertIn('docker save', str(exc))
            self.assertIn('--container-format docker', str(exc))
        images.check_image_acceptable(objects.ImageMeta.from_dict(
            {'id': 'img', 'container_format': 'docker'}))


class RetagTest(testtools.TestCase):

    def test_manifest_tags_replaced_and_repositories_dropped(self):
        src = fake_docker.saved_tarball(
            repo_tags=('mariadb:10.11', 'busybox:latest'), layer_size=8192)
        out = _rewritten(src)
        manifest = json.load(out.extractfile('manifest.json'))
        self.assertEqual([NEW_TAG], manifest[0]['RepoTags'])
        self.assertNotIn('repositories', out.getnames())
        # Layers pass through byte for byte.
        original = tarfile.open(fileobj=io.BytesIO(src))
        self.assertEqual(original.extractfile('abc/layer.tar').read(),
                         out.extractfile('abc/layer.tar').read())

    def test_oci_index_names_replaced(self):
        out = _rewritten(fake_docker.saved_tarball(
            repo_tags=('library/mariadb:10.11',), oci=True))
        index = json.load(out.extractfile('index.json'))
        annotations = index['manifests'][0]['annotations']
        self.assertEqual('docker.io/' + NEW_TAG,
                         annotations['io.containerd.image.name'])
        self.assertEqual('1234',
                         annotations['org.opencontainers.image.ref.name'])
        self.assertNotIn('mariadb', json.dumps(index))
        self.assertEqual([NEW_TAG], json.load(
            out.extractfile('manifest.json'))[0]['RepoTags'])

    def test_gzip_input_gives_plain_tar(self):
        src = fake_docker.saved_tarball()
        out = _rewritten(gzip.compress(src))
        self.assertEqual([NEW_TAG], json.load(
            out.extractfile('manifest.json'))[0]['RepoTags'])

    def test_multi_image_manifest_rejected(self):
        src = fake_docker.saved_tarball(repo_tags=('a:1',), images=2)
        exc = self.assertRaises(ValueError, _rewritten, src)
        self.assertIn('exactly one', str(exc))

    def test_multi_image_oci_index_rejected(self):
        src = fake_docker.saved_tarball(repo_tags=('a:1', 'b:2'), oci=True)
        # manifest.json has one entry with two tags (accepted), but the
        # OCI index lists two images.
        exc = self.assertRaises(ValueError, _rewritten, src)
        self.assertIn('exactly one', str(exc))

    def test_not_a_docker_save(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode='w') as tar:
            info = tarfile.TarInfo('etc/passwd')
            info.size = 4
            tar.addfile(info, io.BytesIO(b'root'))
        exc = self.assertRaises(ValueError, _rewritten, buf.getvalue())
        self.assertIn('not a docker save', str(exc))

    def test_garbage_raises(self):
        self.assertRaises((tarfile.TarError, ValueError, EOFError, OSError),
                          _rewritten, os.urandom(20000))

    def test_truncated_raises(self):
        src = fake_docker.saved_tarball(layer_size=65536)
        self.assertRaises((tarfile.TarError, ValueError, EOFError, OSError),
                          _rewritten, src[:len(src) // 2])

    def test_reader_hashes_everything_including_trailer(self):
        import hashlib
        src = gzip.compress(fake_docker.saved_tarball())
        hasher = hashlib.sha512()
        reader = images._ChunkReader(
            [src[i:i + 999] for i in range(0, len(src), 999)], hasher)
        b''.join(images.retag_tarball(reader, NEW_TAG, 4096))
        self.assertEqual(hashlib.sha512(src).hexdigest(), hasher.hexdigest())
        self.assertEqual(len(src), reader.size)


class _TrackingQueue(queue.Queue):
    """A queue.Queue that records the most bytes it ever held, and notes
    when the producer had to wait because it was full."""

    def __init__(self, maxsize=0):
        super().__init__(maxsize)
        self.bytes_now = 0
        self.max_bytes = 0
        self.blocked = threading.Event()

    def put(self, item, block=True, timeout=None):
        if self.full():
            self.blocked.set()
        super().put(item, block, timeout)

    def _put(self, item):
        super()._put(item)
        if isinstance(item, bytes):
            self.bytes_now += len(item)
            self.max_bytes = max(self.max_bytes, self.bytes_now)

    def _get(self):
        item = super()._get()
        if isinstance(item, bytes):
            self.bytes_now -= len(item)
        return item


class StreamMemoryTest(testtools.TestCase):
    """Glance -> rewrite -> docker load holds a few chunks at most, however
    large the image and however slow the consumer."""

    CHUNK = 64 * 1024

    def test_pipeline_holds_a_few_chunks(self):
        src = fake_docker.saved_tarball(layer_size=16 * 1024 * 1024)
        queues = []

        def make_queue(maxsize=0):
            q = _TrackingQueue(maxsize)
            queues.append(q)
            return q
        self.useFixture(fixtures.MonkeyPatch(
            'novadocker.virt.docker.images.queue.Queue', make_queue))

        pulled = [0]

        def glance_chunks():
            for i in range(0, len(src), self.CHUNK):
                chunk = src[i:i + self.CHUNK]
                pulled[0] += len(chunk)
                yield chunk

        body = images.retag_tarball(images._ChunkReader(glance_chunks()),
                                    NEW_TAG, self.CHUNK)
        received = 0
        max_in_flight = 0
        for n, chunk in enumerate(body):
            if n == 0:
                # A slow docker load: let the producer run as far ahead as
                # the pipe allows (it blocks on a full queue, or finishes
                # if nothing bounds it).
                producer = [t for t in threading.enumerate()
                            if t.name == 'nova-docker-image-stream'][0]
                while producer.is_alive() and \
                        not queues[0].blocked.wait(0.05):
                    pass
            received += len(chunk)
            max_in_flight = max(max_in_flight, pulled[0] - received)
        self.assertGreaterEqual(received, 16 * 1024 * 1024)   # all of it
        self.assertTrue(queues[0].blocked.is_set(),
                        'the producer never waited for the consumer')
        bound = (queues[0].maxsize + 2) * self.CHUNK
        self.assertLessEqual(queues[0].max_bytes,
                             queues[0].maxsize * self.CHUNK)
        self.assertLess(max_in_flight, bound + self.CHUNK)
        self.assertLess(bound * 10, len(src))    # the bound means something

    def test_consumer_closing_early_stops_producer(self):
        src = fake_docker.saved_tarball(layer_size=8 * 1024 * 1024)
        before = {t.name for t in threading.enumerate()}
        body = images.retag_tarball(images._ChunkReader(
            [src[i:i + 4096] for i in range(0, len(src), 4096)]),
            NEW_TAG, 4096)
        next(body)
        body.close()
        self.assertNotIn('nova-docker-image-stream',
                         {t.name for t in threading.enumerate()} - before)


class LoadFailureTest(testtools.TestCase):
    """How a failing docker load reaches Nova (fault matrix cases 6, 7)."""

    def load(self, load_image, body=(b'x',)):
        api = mock.create_autospec(docker.APIClient, instance=True)
        api.load_image.side_effect = load_image
        return images.ImageStore(api)._docker_load('img-1', iter(body))

    def test_full_data_root_in_the_stream_is_transfer_failed(self):
        # What Docker 20.10 streams when its data root fills up.
        message = ('Error processing tar file(exit status 1): write '
                   '/var/lib/docker/tmp/docker-import-1/a/layer.tar: no '
                   'space left on device')
        error = self.assertRaises(
            images.ImageTransferFailed, self.load,
            lambda body: iter([{'errorDetail': {'message': message},
                                'error': message}]))
        self.assertIn('no space left on device', str(error))
        self.assertNotIn('docker-import', str(error))

    def test_full_data_root_as_api_error_is_transfer_failed(self):
        def refuse(body):
            raise docker.errors.APIError(
                '500 Server Error', explanation='mkdir /var/lib/docker/tmp/'
                'docker-import-2: no space left on device')
        self.assertRaises(images.ImageTransferFailed, self.load, refuse)

    def test_other_load_errors_stay_unacceptable(self):
        self.assertRaises(
            exception.ImageUnacceptable, self.load,
            lambda body: iter([{'error': 'invalid tar header'}]))

    def test_body_oserror_reaches_requests_as_no_oserror(self):
        # urllib3 takes an ECONNRESET from the body for the engine closing
        # the socket, and waits for a response until the read timeout.
        seen = []

        def glance_drops():
            yield b'x' * 10
            raise ConnectionResetError(104, 'Connection reset by peer')

        def consume(body):
            try:
                for _chunk in body:
                    pass
            except Exception as exc:
                seen.append(exc)
                raise
            return iter([])

        error = self.assertRaises(images.ImageTransferFailed, self.load,
                                  consume, glance_drops())
        self.assertIn('Connection reset', str(error))
        self.assertEqual(1, len(seen))
        self.assertNotIsInstance(seen[0], OSError)
