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

"""The integration harness's own parts (no Docker needed)."""

import threading

import testtools

from tests.integration import base

WAIT = 10.0   # seconds; a deadlock shows as a thread still blocked


class ReaderPreferringLockTest(testtools.TestCase):
    """The lock cycle nova's fixtures can close under native threads,
    replayed with the lock CellDatabases gets in the harness."""

    def setUp(self):
        super().setUp()
        self.lock = base.ReaderPreferringLock()
        self.events = []

    def thread(self, target) -> threading.Thread:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread

    def test_reader_gets_in_while_a_writer_waits_then_the_writer(self):
        first_reader_in = threading.Event()
        release_first_reader = threading.Event()

        def first_reader():
            with self.lock.read_lock():
                first_reader_in.set()
                release_first_reader.wait(WAIT)
            self.events.append('first reader out')

        def writer():
            with self.lock.write_lock():
                self.events.append('writer in')

        def second_reader():
            with self.lock.read_lock():
                self.events.append('second reader in')
            # What the deadlock needed: the first reader could leave only
            # after this one was done.
            release_first_reader.set()

        readers = [self.thread(first_reader)]
        self.assertTrue(first_reader_in.wait(WAIT))
        waiting_writer = self.thread(writer)
        for _ in range(100):   # until the writer is queued
            if self.lock.has_pending_writers:
                break
            threading.Event().wait(0.01)
        self.assertTrue(self.lock.has_pending_writers)
        readers.append(self.thread(second_reader))
        for thread in readers + [waiting_writer]:
            thread.join(WAIT)
            self.assertFalse(thread.is_alive(), self.events)
        self.assertEqual(['second reader in', 'first reader out',
                          'writer in'], self.events)

    def test_writer_excludes_readers(self):
        writer_in = threading.Event()
        release_writer = threading.Event()

        def writer():
            with self.lock.write_lock():
                writer_in.set()
                release_writer.wait(WAIT)
                self.events.append('writer out')

        def reader():
            with self.lock.read_lock():
                self.events.append('reader in')

        writer_thread = self.thread(writer)
        self.assertTrue(writer_in.wait(WAIT))
        reader_thread = self.thread(reader)
        reader_thread.join(0.2)
        self.assertTrue(reader_thread.is_alive())
        release_writer.set()
        for thread in (writer_thread, reader_thread):
            thread.join(WAIT)
            self.assertFalse(thread.is_alive())
        self.assertEqual(['writer out', 'reader in'], self.events)
