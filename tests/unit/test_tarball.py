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

"""The tarball rewrite (names, one image only, what dockerd could read
otherwise) and its bounded stream: bytes in, bytes out, no Docker."""

import bz2
import gzip
import io
import json
import lzma
import os
import queue
import tarfile
import threading

import fixtures
import testtools

from novadocker.virt.docker import streams
from novadocker.virt.docker import tarball
from tests.fixtures import images as image_fixtures

NEW_TAG = 'nova-docker/glance:1234'


def _rewritten(data: bytes, chunk_size=4096) -> tarfile.TarFile:
    body = b''.join(tarball.retag_tarball(
        streams.ChunkReader([data]), NEW_TAG, chunk_size))
    return tarfile.open(fileobj=io.BytesIO(body))


def _json(value) -> bytes:
    return json.dumps(value).encode()


def _tar(*members, fmt=tarfile.PAX_FORMAT) -> bytes:
    """A tarball from (name, data) or (TarInfo, data) pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=fmt) as tar:
        for name, data in members:
            info = name if isinstance(name, tarfile.TarInfo) else \
                tarfile.TarInfo(name)
            if data is not None:
                info.size = len(data)
                data = io.BytesIO(data)
            tar.addfile(info, data)
    return buf.getvalue()


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _special(name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def _base(manifest=None, config=b'{"config": {}}'):
    """The members of a minimal valid Docker-layout save."""
    manifest = manifest or [{'Config': 'cfg.json', 'RepoTags': ['a:1'],
                             'Layers': ['abc/layer.tar']}]
    return [('abc/layer.tar', b'L' * 2048), ('cfg.json', config),
            ('manifest.json', _json(manifest))]


EVIL_MANIFEST = _json([{'Config': 'cfg.json', 'Layers': ['abc/layer.tar'],
                        'RepoTags': [NEW_TAG, 'victim:1']}])


class RetagTest(testtools.TestCase):

    def test_manifest_tags_replaced_and_repositories_dropped(self):
        src = image_fixtures.saved_tarball(
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
        out = _rewritten(image_fixtures.saved_tarball(
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
        src = image_fixtures.saved_tarball()
        out = _rewritten(gzip.compress(src))
        self.assertEqual([NEW_TAG], json.load(
            out.extractfile('manifest.json'))[0]['RepoTags'])

    def test_bz2_and_xz_input_give_plain_tar(self):
        src = image_fixtures.saved_tarball()
        for compress in (bz2.compress, lzma.compress):
            out = _rewritten(compress(src))
            self.assertEqual([NEW_TAG], json.load(
                out.extractfile('manifest.json'))[0]['RepoTags'])

    def test_corrupt_compressed_data_is_a_bad_tarball(self):
        # The image's fault (ImageUnacceptable), not a transfer failure.
        src = bytearray(gzip.compress(image_fixtures.saved_tarball(
            layer_size=65536)))
        src[len(src) // 2:len(src) // 2 + 64] = b'\xff' * 64
        self.assertRaises(tarfile.ReadError, _rewritten, bytes(src))

    def test_source_failure_inside_compressed_data_passes_unchanged(self):
        src = gzip.compress(image_fixtures.saved_tarball(layer_size=65536))

        def chunks():
            yield src[:len(src) // 2]
            raise ConnectionResetError('glance went away')
        exc = self.assertRaises(ConnectionResetError, b''.join,
                                tarball.retag_tarball(
                                    streams.ChunkReader(chunks()),
                                    NEW_TAG, 4096))
        self.assertIn('glance went away', str(exc))

    def test_same_output_as_tarfiles_writer(self):
        # The member data is copied by hand, headers come from tarfile:
        # the result is what tarfile's own writer makes of the members.
        src = image_fixtures.saved_tarball(layer_size=70001)
        body = b''.join(tarball.retag_tarball(
            streams.ChunkReader([src[i:i + 999]
                                 for i in range(0, len(src), 999)]),
            NEW_TAG, 4096))
        expected = io.BytesIO()
        with tarfile.open(fileobj=io.BytesIO(body)) as got, \
                tarfile.open(fileobj=expected, mode='w',
                             format=tarfile.PAX_FORMAT) as tar:
            for member in got:
                tar.addfile(member, got.extractfile(member))
        self.assertEqual(expected.getvalue(), body)

    def test_multi_image_manifest_rejected(self):
        entries = [{'Config': 'cfg.json', 'RepoTags': ['a:1'],
                    'Layers': ['abc/layer.tar']},
                   {'Config': 'other.json', 'RepoTags': ['b:1'],
                    'Layers': ['abc/layer.tar']}]
        exc = self.assertRaises(ValueError, _rewritten, _tar(
            *_base(manifest=entries)))
        self.assertIn('exactly one', str(exc))

    def test_manifest_entries_of_one_image_collapse(self):
        """Several entries (or tags) with one Config are one image."""
        entry = {'Config': 'cfg.json', 'Layers': ['abc/layer.tar']}
        out = _rewritten(_tar(*_base(manifest=[
            dict(entry, RepoTags=['app:1', 'app:latest']),
            dict(entry, RepoTags=['app:2'])])))
        self.assertEqual([dict(entry, RepoTags=[NEW_TAG])],
                         json.load(out.extractfile('manifest.json')))

    def test_oci_index_one_digest_several_tags_collapses(self):
        """docker save app:1 app:latest on Docker 25+: one index entry
        per tag, one digest."""
        digest = 'sha256:' + 'ab' * 32
        index = {'schemaVersion': 2, 'manifests': [
            {'digest': digest, 'size': 10, 'annotations': {
                'io.containerd.image.name': 'docker.io/library/app:%s' % t,
                'org.opencontainers.image.ref.name': t}}
            for t in ('1', 'latest')]}
        out = _rewritten(_tar(*_base(), ('index.json', _json(index))))
        manifests = json.load(out.extractfile('index.json'))['manifests']
        self.assertEqual(1, len(manifests))
        self.assertEqual(digest, manifests[0]['digest'])
        self.assertEqual({'io.containerd.image.name': 'docker.io/' + NEW_TAG,
                          'org.opencontainers.image.ref.name': '1234'},
                         manifests[0]['annotations'])

    def test_multi_image_oci_index_rejected(self):
        src = image_fixtures.saved_tarball(repo_tags=('a:1', 'b:2'), oci=True)
        # manifest.json has one entry with two tags (accepted), but the
        # OCI index lists two tarball.
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
        src = image_fixtures.saved_tarball(layer_size=65536)
        self.assertRaises((tarfile.TarError, ValueError, EOFError, OSError),
                          _rewritten, src[:len(src) // 2])

    def test_reader_hashes_everything_including_trailer(self):
        import hashlib
        src = gzip.compress(image_fixtures.saved_tarball())
        hasher = hashlib.sha512()
        reader = streams.ChunkReader(
            [src[i:i + 999] for i in range(0, len(src), 999)], hasher)
        b''.join(tarball.retag_tarball(reader, NEW_TAG, 4096))
        self.assertEqual(hashlib.sha512(src).hexdigest(), hasher.hexdigest())
        self.assertEqual(len(src), reader.bytes_read)


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
        if isinstance(item, (bytes, memoryview)):
            self.bytes_now += len(item)
            self.max_bytes = max(self.max_bytes, self.bytes_now)

    def _get(self):
        item = super()._get()
        if isinstance(item, (bytes, memoryview)):
            self.bytes_now -= len(item)
        return item


class StreamMemoryTest(testtools.TestCase):
    """Glance -> rewrite -> docker load holds a few chunks at most, however
    large the image and however slow the consumer."""

    CHUNK = 64 * 1024

    def test_pipeline_holds_a_few_chunks(self):
        src = image_fixtures.saved_tarball(layer_size=16 * 1024 * 1024)
        queues = []

        def make_queue(maxsize=0):
            q = _TrackingQueue(maxsize)
            queues.append(q)
            return q
        self.useFixture(fixtures.MonkeyPatch(
            'novadocker.virt.docker.streams.queue.Queue', make_queue))

        pulled = [0]

        def glance_chunks():
            for i in range(0, len(src), self.CHUNK):
                chunk = src[i:i + self.CHUNK]
                pulled[0] += len(chunk)
                yield chunk

        body = tarball.retag_tarball(streams.ChunkReader(glance_chunks()),
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
        src = image_fixtures.saved_tarball(layer_size=8 * 1024 * 1024)
        before = {t.name for t in threading.enumerate()}
        body = tarball.retag_tarball(streams.ChunkReader(
            [src[i:i + 4096] for i in range(0, len(src), 4096)]),
            NEW_TAG, 4096)
        next(body)
        body.close()
        self.assertNotIn('nova-docker-image-stream',
                         {t.name for t in threading.enumerate()} - before)


class UnsafeTarballTest(testtools.TestCase):
    """What dockerd could read otherwise than the rewrite is refused."""

    def assertRefused(self, data, message, max_unpacked=None):
        exc = self.assertRaises(tarball.UnsafeTarball, lambda: b''.join(
            tarball.retag_tarball(streams.ChunkReader([data]), NEW_TAG,
                                  4096, max_unpacked)))
        self.assertIn(message, str(exc))
        return exc

    def test_dot_dot_second_manifest(self):
        self.assertRefused(_tar(*_base(), ('x/../manifest.json',
                                           EVIL_MANIFEST)), '".."')

    def test_dot_dot_and_absolute_names(self):
        for name in ('../x', 'a/../../x', 'abc/..'):
            self.assertRefused(_tar(*_base(), (name, b'x')), '".."')
        for name in ('/manifest.json', '/etc/x'):
            self.assertRefused(_tar(*_base(), (name, b'x')), 'absolute')

    def test_names_compared_cleaned(self):
        for second in ('./manifest.json', './/manifest.json',
                       'manifest.json'):
            self.assertRefused(_tar(*_base(), (second, EVIL_MANIFEST)),
                               'manifest.json appears twice')

    def test_dot_slash_names_are_written_cleaned(self):
        members = [('./' + name, data) for name, data in _base()]
        out = _rewritten(_tar(_special('./', tarfile.DIRTYPE), *members))
        self.assertEqual(['abc/layer.tar', 'cfg.json', 'manifest.json'],
                         out.getnames())

    def test_member_through_symlinked_directory(self):
        self.assertRefused(_tar(*_base(), _link('d', '.'),
                                ('d/manifest.json', EVIL_MANIFEST)),
                           'passes through d')
        self.assertRefused(_tar(_link('d', 'abc'), *_base(),
                                ('d/x/layer.tar', b'x')), 'passes through d')
        self.assertRefused(_tar(*_base(), ('f', b'x'), ('f/g', b'y')),
                           'passes through f')

    def test_oci_layer_symlinks_allowed(self):
        """Docker 25+ saves link <id>/layer.tar into blobs/."""
        blob = 'blobs/sha256/' + 'cd' * 32
        out = _rewritten(_tar(
            _special('blobs', tarfile.DIRTYPE), (blob, b'L' * 1024),
            _special('abc', tarfile.DIRTYPE),
            _link('abc/layer.tar', '../' + blob),
            ('cfg.json', b'{}'), ('manifest.json', _json([
                {'Config': 'cfg.json', 'RepoTags': ['a:1'],
                 'Layers': ['abc/layer.tar']}]))))
        link = out.getmember('abc/layer.tar')
        self.assertTrue(link.issym())
        self.assertEqual('../' + blob, link.linkname)

    def test_symlink_outside_the_archive(self):
        for target in ('../../etc', '/etc/passwd', '../a/../../..', ''):
            self.assertRefused(_tar(*_base(), _link('abc/l', target)),
                               'outside the archive')
        # Relative to the link's own directory: inside.
        out = _rewritten(_tar(*_base(), _link('abc/l', '../cfg.json')))
        self.assertEqual('../cfg.json', out.getmember('abc/l').linkname)

    def test_special_names_must_be_regular_files(self):
        self.assertRefused(_tar(('abc/layer.tar', b'x'), ('cfg.json', b'{}'),
                                _link('manifest.json', 'cfg.json')),
                           'manifest.json is not a regular file')
        self.assertRefused(_tar(*_base(), ('evil.json', EVIL_MANIFEST),
                                _link('index.json', 'evil.json',
                                      tarfile.LNKTYPE)),
                           'index.json is not a regular file')

    def test_hard_links(self):
        out = _rewritten(_tar(*_base(), _link('copy', 'cfg.json',
                                              tarfile.LNKTYPE)))
        self.assertEqual('cfg.json', out.getmember('copy').linkname)
        for target in ('../../etc/shadow', '/etc/shadow', 'missing',
                       'abc', 'later'):
            self.assertRefused(_tar(*_base(), _link('h', target,
                                                    tarfile.LNKTYPE),
                                    ('later', b'x')),
                               'h' if target != '/etc/shadow' else 'abs')

    def test_hard_link_to_symlink(self):
        self.assertRefused(_tar(*_base(), _link('s', 'cfg.json'),
                                _link('h', 's', tarfile.LNKTYPE)),
                           'not an earlier file')

    def test_device_fifo_members(self):
        for kind in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
            self.assertRefused(_tar(*_base(), _special('dev', kind)),
                               'member type')

    def test_sparse_member(self):
        info = tarfile.TarInfo('abc/sparse')
        info.type = tarfile.GNUTYPE_SPARSE
        self.assertRefused(_tar(*_base(), (info, None),
                                fmt=tarfile.GNU_FORMAT), 'sparse')
        info = tarfile.TarInfo('abc/sparse')
        info.pax_headers = {'GNU.sparse.map': '0,10',
                            'GNU.sparse.size': '10'}
        self.assertRefused(_tar(*_base(), (info, b'x' * 10)), 'sparse')

    def test_pax_size_contradicting_ustar_size(self):
        """Two readers disagreeing on where a member ends could see other
        members: refused."""
        info = tarfile.TarInfo('abc/smuggle')
        info.pax_headers = {'size': '2048'}
        self.assertRefused(_tar(*_base(), (info, b'x' * 1024)),
                           'contradicts')

    def test_input_pax_and_gnu_records_never_reach_docker(self):
        layer = tarfile.TarInfo('abc/layer.tar')
        layer.pax_headers = {'comment': 'hello', 'uname': 'u' * 300,
                             'mtime': '1.5', 'size': '2048'}
        manifest = tarfile.TarInfo('manifest.json')
        manifest.pax_headers = {'size': str(len(EVIL_MANIFEST))}
        src = _tar((layer, b'L' * 2048), ('cfg.json', b'{}'),
                   (manifest, EVIL_MANIFEST))
        body = b''.join(tarball.retag_tarball(
            streams.ChunkReader([src]), NEW_TAG, 4096))
        self.assertNotIn(b'comment=', body)
        self.assertNotIn(b'size=', body)
        self.assertNotIn(b'victim', body)
        out = tarfile.open(fileobj=io.BytesIO(body))
        self.assertEqual([{}, {}, {}], [m.pax_headers for m in out])
        self.assertEqual([NEW_TAG], json.load(
            out.extractfile('manifest.json'))[0]['RepoTags'])
        self.assertEqual(b'L' * 2048,
                         out.extractfile('abc/layer.tar').read())

    def test_long_names_get_a_generated_pax_path_only(self):
        name = 'abc/' + 'n' * 150
        out = _rewritten(_tar(*_base(), (name, b'data')))
        member = out.getmember(name)
        self.assertEqual({'path': name}, member.pax_headers)
        self.assertEqual(b'data', out.extractfile(member).read())
        self.assertRefused(_tar(*_base(), ('n' * 300, b'x')), 'too long')

    def test_unexpected_characters(self):
        for name in ('a b', 'caf\xe9', 'a\\b', 'x\ny'):
            self.assertRefused(_tar(*_base(), (name, b'x')),
                               'unexpected characters')

    def test_oversized_pax_record(self):
        info = tarfile.TarInfo('abc/x')
        info.pax_headers = {'comment': 'c' * (2 * tarball.MAX_JSON_BYTES)}
        self.assertRefused(_tar(*_base(), (info, b'x')), 'header record')

    def test_oversized_manifest_and_index(self):
        big = _json([{'Config': 'cfg.json', 'RepoTags': ['a:1'],
                      'Layers': ['abc/layer.tar']}]) + \
            b' ' * tarball.MAX_JSON_BYTES
        self.assertRefused(_tar(('abc/layer.tar', b'x'), ('cfg.json', b'{}'),
                                ('manifest.json', big)),
                           'manifest.json is %d bytes' % len(big))
        self.assertRefused(_tar(*_base(), ('index.json', big)),
                           'index.json is')

    def test_oversized_config_before_or_after_the_manifest(self):
        config = b'{}' + b' ' * tarball.MAX_CONFIG_BYTES
        members = _base(config=config)
        self.assertRefused(_tar(*members), 'image config cfg.json')
        self.assertRefused(_tar(members[2], members[0], members[1]),
                           'image config cfg.json')
        # Reached through a symlink (OCI layout) too.
        self.assertRefused(_tar(('blobs/c', config), _link('cfg.json',
                                                           'blobs/c'),
                                members[0], members[2]),
                           'image config cfg.json')

    def test_duplicate_manifest_and_index(self):
        self.assertRefused(_tar(*_base(), ('manifest.json', EVIL_MANIFEST)),
                           'manifest.json appears twice')
        index = _json({'manifests': [{'digest': 'sha256:' + 'a' * 64}]})
        self.assertRefused(_tar(*_base(), ('index.json', index),
                                ('index.json', index)),
                           'index.json appears twice')

    def test_unpacked_size_cap_checked_before_copying(self):
        pulled = []

        def chunks():
            src = gzip.compress(_tar(*_base(), ('abc/big', b'\0' * 300000)))
            for i in range(0, len(src), 512):
                pulled.append(512)
                yield src[i:i + 512]
        exc = self.assertRaises(tarball.ImageTooLarge, lambda: b''.join(
            tarball.retag_tarball(streams.ChunkReader(chunks()), NEW_TAG,
                                  4096, max_unpacked=100000)))
        self.assertIn('image_max_unpacked_gb', str(exc))
        # Refused on the declared size: the zeros were never all read.
        self.assertLess(sum(pulled), 300000 // 100)
        # The same tarball fits a larger cap.
        _rewritten(_tar(*_base(), ('abc/big', b'\0' * 300000)))

    def test_member_count_cap(self):
        self.useFixture(fixtures.MonkeyPatch(
            'novadocker.virt.docker.tarball.MAX_MEMBERS', 5))
        self.assertRefused(_tar(*_base(), *[('f%d' % i, b'') for i in
                                            range(5)]), 'more than 5')


class UnpackedCapTest(testtools.TestCase):

    def test_default_from_floor_flavor_and_image_size(self):
        gib = 1024 ** 3
        self.assertEqual(gib, tarball.max_unpacked_bytes(None, 0))
        self.assertEqual(gib, tarball.max_unpacked_bytes(1000, 1))
        self.assertEqual(20 * gib, tarball.max_unpacked_bytes(1000, 20))
        self.assertEqual(30 * gib, tarball.max_unpacked_bytes(3 * gib, 20))

    def test_option_wins(self):
        self.assertEqual(3 * 1024 ** 3,
                         tarball.max_unpacked_bytes(100 * 1024 ** 3, 50, 3))


class MalformedJsonTest(testtools.TestCase):

    def test_unexpected_structures_are_value_errors(self):
        for name, value in (
                ('manifest.json', {'not': 'a list'}),
                ('manifest.json', ['not a dict']),
                ('manifest.json', [{'Config': 'cfg.json', 'RepoTags': ['a:1'],
                                    'Layers': 'abc/layer.tar'}, 1]),
                ('index.json', {'manifests': 'sha256:x'}),
                ('index.json', {'manifests': [{'digest': 'sha256:' + 'a' * 64,
                                               'annotations': 'x'}]}),
                ('index.json', [1, 2])):
            members = _base() if name == 'index.json' else _base()[:2]
            self.assertRaises(ValueError, _rewritten, _tar(
                *members, (name, _json(value))))

    def test_no_hard_link_to_the_dropped_repositories(self):
        exc = self.assertRaises(tarball.UnsafeTarball, _rewritten, _tar(
            *_base(), ('repositories', b'{}'),
            _link('h', 'repositories', tarfile.LNKTYPE)))
        self.assertIn('not an earlier file', str(exc))

    def test_odd_times_and_repositories_only(self):
        info = tarfile.TarInfo('cfg.json')
        info.pax_headers = {'mtime': 'inf'}
        out = _rewritten(_tar(('abc/layer.tar', b'x'), (info, b'{}'),
                              _base()[2]))
        self.assertEqual(0, out.getmember('cfg.json').mtime)
        exc = self.assertRaises(ValueError, _rewritten, _tar(
            ('abc/layer.tar', b'x'), ('repositories', b'{}')))
        self.assertIn('no manifest.json', str(exc))
