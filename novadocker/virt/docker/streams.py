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

"""Chunk iterators and file-like objects, both ways, in bounded memory.

Glance downloads and ``docker save`` yield chunks, while tarfile and
glanceclient's upload want ``read(n)``: :class:`ChunkReader` serves both
directions. tarfile writes into a file, while ``docker load`` wants a
chunk iterator as its request body: :func:`pipe` runs the writer in a
thread behind a bounded queue; :func:`prefetch` drains a source in a thread
the same way. Nothing here buffers a whole image.
"""

import io
import queue
import threading
import typing


class ChunkReader(io.RawIOBase):
    """A file-like ``read(n)`` view of a chunk iterator.

    At most one chunk is held, so memory does not grow with the stream.
    Every chunk goes through ``hasher`` (if any) as it is fetched, so a
    checksum is verified on the single pass the consumer makes anyway.
    An error of the iterator is kept in :attr:`error` and raised, so that
    the consumer can tell "the source broke" from its own failure.
    """

    def __init__(self, chunks: typing.Iterable[bytes], hasher=None):
        super().__init__()
        self._chunks = iter(chunks)
        # The current chunk and how far it has been read: tarfile reads
        # 10 KiB at a time, and re-slicing a large chunk on every read
        # would copy it over and over.
        self._pending = memoryview(b'')
        self._offset = 0
        self._hasher = hasher
        self.bytes_read = 0
        self.error: typing.Optional[BaseException] = None

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Get the next non-empty chunk; False at the end of the stream."""
        while self._offset >= len(self._pending):
            try:
                chunk = next(self._chunks)
            except StopIteration:
                return False
            except Exception as exc:
                self.error = exc
                raise
            if chunk:
                # bytes(): no copy of bytes, and a chunk the hasher's
                # thread holds can never change under it.
                chunk = bytes(chunk)
                if self._hasher is not None:
                    self._hasher.update(chunk)
                self._pending = memoryview(chunk)
                self._offset = 0
        return True

    def prime(self) -> None:
        """Fetch the first chunk, so a failing source fails before use."""
        self._fill()

    def read_view(self, size: int) -> memoryview:
        """Up to ``size`` bytes of the current chunk, as a view of it (no
        copy); empty at the end of the stream."""
        if self.closed or not self._fill():
            return memoryview(b'')
        n = min(size, len(self._pending) - self._offset)
        view = self._pending[self._offset:self._offset + n]
        self._offset += n
        self.bytes_read += n
        return view

    def readinto(self, buf) -> int:
        """At most what is left of the current chunk (RawIOBase.read
        calls this): blocks are never joined across chunks. Joined 64 KiB
        blocks broke every snapshot upload to Glance under uwsgi
        ("unable to receive chunked part"), while the same bytes in the
        engine's own chunks upload fine."""
        view = self.read_view(len(buf))
        buf[:len(view)] = view
        return len(view)

    def drain(self) -> None:
        """Consume the rest (tar end blocks, gzip trailer) for the hash."""
        while self.read_view(1 << 30):
            pass

    def close(self) -> None:
        """Stop the stream: closing a generator releases its response."""
        close = getattr(self._chunks, 'close', None)
        if close is not None:
            close()
        self._pending = memoryview(b'')
        self._offset = 0
        super().close()


class BackgroundHasher:
    """A hashlib object that hashes in a thread of its own.

    hashlib lets go of the GIL on large blocks, so the digest of a Glance
    download is computed on another core while the stream goes on to
    Docker, instead of in turn with it. ``update`` queues a reference to
    the chunk (no copy; at most ``depth`` wait); :meth:`hexdigest` waits
    for the last one. :meth:`close` ends the thread (a stream given up).
    """

    def __init__(self, hasher, depth: int = 4):
        self.name = hasher.name
        self._hasher = hasher
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: typing.Optional[Exception] = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='nova-docker-hash')
        self._thread.start()

    def _run(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            if self._error is None:
                try:
                    self._hasher.update(chunk)
                except Exception as exc:   # raised by hexdigest
                    self._error = exc

    def update(self, chunk) -> None:
        if not self._thread.is_alive():
            raise ValueError('update() after close()')
        self._queue.put(chunk)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        if self._error is not None:
            raise self._error
        return self._hasher.hexdigest()


class _Cancelled(Exception):
    """The consumer went away: the writer stops."""


class _QueueWriter(io.RawIOBase):
    """Write side of a bounded pipe between two threads.

    Items ``put`` are bytes-like (bytes, or views of the blocks written)
    of at most ``chunk_size`` bytes; with a queue of ``depth`` items the
    pipe never holds more than (depth + 1) chunks. Whoever writes a view
    must not change the memory under it afterwards.
    """

    def __init__(self, put: typing.Callable[[typing.Any], None],
                 chunk_size: int):
        super().__init__()
        self._put = put
        self._buf = bytearray()
        self._chunk_size = chunk_size
        # Blocks at least this large are queued without being gathered.
        self._direct_size = max(chunk_size // 8, 4096)

    def writable(self):
        return True

    def write(self, data):
        """Small writes (headers) are gathered; a large block (member data,
        a view of a source chunk) is queued as it is, in pieces of at most
        ``chunk_size``, without a copy."""
        size = len(data)
        if size >= self._direct_size:
            self.flush_all()
            view = memoryview(data)
            for start in range(0, size, self._chunk_size):
                self._put(view[start:start + self._chunk_size])
            return size
        self._buf += data
        while len(self._buf) >= self._chunk_size:
            self._put(bytes(self._buf[:self._chunk_size]))
            del self._buf[:self._chunk_size]
        return size

    def flush_all(self):
        if self._buf:
            self._put(bytes(self._buf))
            self._buf = bytearray()


def _run_ahead(fill: typing.Callable[[typing.Callable[[typing.Any], None]],
                                     None],
               name: str, depth: int) -> typing.Iterator:
    """Run ``fill(put)`` in a thread; yield what it puts, in order.

    The queue holds ``depth`` items, so a slow consumer stops the producer
    instead of letting it buffer. Closing the generator early stops the
    thread (its next put raises, unseen). An exception of ``fill`` is
    raised from the generator once the items before it are consumed.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    cancelled = threading.Event()
    done = object()
    failure: typing.List[BaseException] = []

    def put(item) -> None:
        while True:
            if cancelled.is_set():
                raise _Cancelled()
            try:
                q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def produce():
        try:
            fill(put)
        except _Cancelled:
            return
        except BaseException as exc:  # surfaced to the consumer, not lost
            failure.append(exc)
        finally:
            while not cancelled.is_set():
                try:
                    q.put(done, timeout=0.5)
                    break
                except queue.Full:
                    continue

    producer = threading.Thread(target=produce, daemon=True, name=name)
    producer.start()
    try:
        while True:
            item = q.get()
            if item is done:
                break
            yield item
        if failure:
            raise failure[0]
    finally:
        cancelled.set()
        producer.join(timeout=30)


def pipe(write: typing.Callable[[io.RawIOBase], None], chunk_size: int,
         name: str, depth: int = 4) -> typing.Iterator[bytes]:
    """Run ``write(file)`` in a thread; yield what it writes, in chunks
    (bytes-like: large blocks come out as views, never copied), at most
    ``depth`` chunks ahead of the consumer (see :func:`_run_ahead`)."""
    def fill(put):
        writer = _QueueWriter(put, chunk_size)
        write(writer)
        writer.flush_all()
    return _run_ahead(fill, name, depth)


def prefetch(chunks: typing.Iterable[bytes], name: str,
             depth: int) -> typing.Iterator[bytes]:
    """Iterate ``chunks`` in a thread, up to ``depth`` chunks ahead of
    the consumer, and yield them unchanged (same sizes, no copy).

    A source that must be drained while the consumer sends (``docker
    save`` into a Glance upload) keeps producing instead of waiting for
    each send. The source is closed by the thread when it stops; an
    error of the source is raised after the chunks before it.
    """
    source = iter(chunks)

    def fill(put):
        try:
            for chunk in source:
                put(chunk)
        finally:
            close = getattr(source, 'close', None)
            if close is not None:
                close()
    return _run_ahead(fill, name, depth)
