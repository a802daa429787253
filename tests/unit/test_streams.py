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

"""streams: chunk iterators as file-likes and back, in bounded memory."""

import hashlib
import threading

from glanceclient.common import http as glance_http
import testtools

from novadocker.virt.docker import streams


class ChunkReaderTest(testtools.TestCase):

    def test_read_n_across_chunks_and_empty_chunks(self):
        reader = streams.ChunkReader(
            iter([b'abc', b'', b'defgh', b'i']))
        out = []
        while True:
            data = reader.read(2)
            if not data:
                break
            self.assertLessEqual(len(data), 2)
            out.append(data)
        self.assertEqual(b'abcdefghi', b''.join(out))
        self.assertEqual(9, reader.bytes_read)

    def test_read_all(self):
        reader = streams.ChunkReader([b'x' * 10, b'y' * 5])
        self.assertEqual(b'x' * 10 + b'y' * 5, reader.read())

    def test_glanceclient_uploads_it_as_a_chunked_body(self):
        # The real glanceclient code path: json.dumps fails, then its
        # chunker calls read(CHUNKSIZE) until empty.
        payload = [bytes([i]) * 300000 for i in range(7)]
        reader = streams.ChunkReader(iter(payload))
        headers = {}
        kwargs = {'data': reader}
        body = glance_http._BaseHTTPClient()._set_common_request_kwargs(
            headers, kwargs)
        self.assertEqual('application/octet-stream',
                         headers['Content-Type'])
        self.assertEqual(b''.join(payload), b''.join(body))

    def test_a_generator_would_not_do(self):
        # Why the adapter exists (design notes, section 5).
        body = glance_http._BaseHTTPClient()._set_common_request_kwargs(
            {}, {'data': (c for c in [b'a'])})
        self.assertRaises(AttributeError, list, body)

    def test_stream_error_is_recorded_and_raised(self):
        def chunks():
            yield b'first'
            raise IOError('save broke')

        reader = streams.ChunkReader(chunks())
        self.assertEqual(b'first', reader.read(100))
        self.assertRaises(IOError, reader.read, 100)
        self.assertIsInstance(reader.error, IOError)

    def test_close_closes_the_generator(self):
        closed = []

        def chunks():
            try:
                while True:
                    yield b'z' * 10
            finally:
                closed.append(True)

        reader = streams.ChunkReader(chunks())
        reader.read(3)
        reader.close()
        self.assertEqual([True], closed)
        self.assertTrue(reader.closed)

    def test_prime_surfaces_errors_before_reading(self):
        def chunks():
            raise IOError('refused')
            yield b''

        reader = streams.ChunkReader(chunks())
        self.assertRaises(IOError, reader.prime)

    def test_hasher_sees_every_byte_and_reads_count(self):
        hasher = hashlib.sha256()
        chunks = [b'a' * 5000, b'', b'b' * 3, b'c' * 70000]
        reader = streams.ChunkReader(iter(chunks), hasher)
        self.assertEqual(b'a' * 10, reader.read(10))
        reader.drain()
        self.assertEqual(hashlib.sha256(b''.join(chunks)).hexdigest(),
                         hasher.hexdigest())
        self.assertEqual(70003 + 5000, reader.bytes_read)

    def test_reads_never_join_chunks(self):
        # What Glance under uwsgi takes (joined 64 KiB blocks broke
        # snapshot uploads): at most the rest of the current chunk.
        reader = streams.ChunkReader(iter([b'a' * 3] * 3 + [b'x' * 1000]))
        self.assertEqual([b'aaa', b'aaa', b'aaa', b'x' * 16],
                         [reader.read(16) for _ in range(4)])
        view = reader.read_view(100)
        self.assertEqual(b'x' * 100, view)

    def test_closed_reader_reads_nothing(self):
        reader = streams.ChunkReader([b'data'])
        reader.close()
        self.assertEqual(0, reader.readinto(bytearray(4)))


class BackgroundHasherTest(testtools.TestCase):

    def test_same_digest_and_the_thread_ends(self):
        data = [bytes([i]) * 70000 for i in range(50)]
        hasher = streams.BackgroundHasher(hashlib.sha512(), depth=2)
        reader = streams.ChunkReader(iter(data), hasher)
        self.assertEqual(b''.join(data), reader.read())
        self.assertEqual(hashlib.sha512(b''.join(data)).hexdigest(),
                         hasher.hexdigest())
        self.assertFalse(hasher._thread.is_alive())

    def test_close_of_a_stream_given_up_ends_the_thread(self):
        hasher = streams.BackgroundHasher(hashlib.sha256())
        hasher.update(b'part')
        hasher.close()
        self.assertFalse(hasher._thread.is_alive())
        self.assertRaises(ValueError, hasher.update, b'more')

    def test_hash_failure_raised_by_hexdigest(self):
        hasher = streams.BackgroundHasher(hashlib.sha256())
        hasher.update('not bytes')
        self.assertRaises(TypeError, hasher.hexdigest)


class PipeTest(testtools.TestCase):

    def test_writes_come_out_in_chunks_of_the_size(self):
        def write(out):
            for _ in range(10):
                out.write(b'x' * 7)
        chunks = list(streams.pipe(write, 16, 'test-pipe'))
        self.assertEqual(b'x' * 70, b''.join(chunks))
        self.assertEqual([16, 16, 16, 16, 6], [len(c) for c in chunks])

    def test_large_blocks_pass_as_views_without_a_copy(self):
        block = b'd' * 20000

        def write(out):
            out.write(b'h' * 10)
            out.write(block)
            out.write(b't')
        chunks = list(streams.pipe(write, 8192, 'test-pipe'))
        self.assertEqual(b'h' * 10 + block + b't', b''.join(chunks))
        self.assertEqual([10, 8192, 8192, 3616, 1], [len(c) for c in chunks])
        for view in chunks[1:4]:
            self.assertIs(block, view.obj)

    def test_writer_error_raised_after_what_came_before(self):
        def write(out):
            out.write(b'y' * 32)
            raise ValueError('bad input')
        body = streams.pipe(write, 16, 'test-pipe')
        self.assertEqual(b'y' * 16, next(body))
        self.assertEqual(b'y' * 16, next(body))
        exc = self.assertRaises(ValueError, next, body)
        self.assertEqual('bad input', str(exc))

    def test_closing_early_stops_the_writer(self):
        wrote = []

        def write(out):
            for _ in range(1000):
                out.write(b'z' * 16)
                wrote.append(1)
        body = streams.pipe(write, 16, 'test-pipe', depth=2)
        self.assertEqual(b'z' * 16, next(body))
        body.close()
        self.assertLess(len(wrote), 10)
        self.assertNotIn('test-pipe', [t.name for t in threading.enumerate()])


class PrefetchTest(testtools.TestCase):

    def test_chunks_pass_unchanged_in_order(self):
        chunks = [b'a' * 5, b'b' * 32768, b'', b'c']
        out = list(streams.prefetch(chunks, 'test-prefetch', 2))
        self.assertEqual(chunks, out)
        for sent, got in zip(chunks, out):
            self.assertIs(sent, got)   # no copy, no joining

    def test_the_source_is_drained_ahead_of_the_consumer(self):
        produced = threading.Semaphore(0)

        def source():
            for number in range(10):
                produced.release()
                yield b'%d' % number
        ahead = streams.prefetch(source(), 'test-prefetch', 3)
        self.assertEqual(b'0', next(ahead))
        # Without another read, the thread goes on: the queue's 3 and the
        # one it waits to put, besides the one read.
        for _ in range(5):
            self.assertTrue(produced.acquire(timeout=10))
        self.assertFalse(produced.acquire(timeout=0.5))
        self.assertEqual([b'%d' % n for n in range(1, 10)], list(ahead))

    def test_source_error_raised_after_what_came_before(self):
        def source():
            yield b'one'
            yield b'two'
            raise IOError('engine went away')
        ahead = streams.prefetch(source(), 'test-prefetch', 4)
        self.assertEqual([b'one', b'two'], [next(ahead), next(ahead)])
        exc = self.assertRaises(IOError, next, ahead)
        self.assertEqual('engine went away', str(exc))

    def test_closing_early_closes_the_source_and_ends_the_thread(self):
        closed = threading.Event()

        def source():
            try:
                while True:
                    yield b'x' * 10
            finally:
                closed.set()
        reader = streams.ChunkReader(streams.prefetch(
            source(), 'test-prefetch', 2))
        self.assertEqual(b'x' * 4, reader.read(4))
        reader.close()
        self.assertTrue(closed.wait(10))
        self.assertNotIn('test-prefetch',
                         [t.name for t in threading.enumerate()])
