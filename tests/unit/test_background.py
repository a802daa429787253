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

"""background.Alongside: runs beside the block, always joined."""

import threading

import fixtures
import testtools

from novadocker.virt.docker import background


class AlongsideTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.logs = self.useFixture(fixtures.FakeLogger())

    def test_runs_while_the_block_runs(self):
        """The block waits for something only the step does: a step run
        before or after the block would leave the wait unanswered."""
        started = threading.Event()
        release = threading.Event()

        def step(value):
            started.set()
            self.assertTrue(release.wait(30))
            return value * 2

        with background.Alongside(step, 21) as running:
            self.assertTrue(started.wait(30))
            release.set()
        self.assertEqual(42, running.result())

    def test_step_failure_is_raised_when_the_block_ends(self):
        def step():
            raise ValueError('step broke')

        block_done = []
        exc = self.assertRaises(ValueError, self._run, step, block_done)
        self.assertEqual('step broke', str(exc))
        self.assertEqual([True], block_done)   # the block ran to its end

    def _run(self, step, block_done):
        with background.Alongside(step):
            block_done.append(True)

    def test_block_failure_wins_and_the_step_is_finished_first(self):
        finished = []
        release = threading.Event()

        def step():
            self.assertTrue(release.wait(30))
            finished.append(True)
            raise ValueError('step broke too')

        def block():
            with background.Alongside(step, name='the-step'):
                release.set()
                raise KeyError('block broke')

        self.assertRaises(KeyError, block)
        self.assertEqual([True], finished)   # joined before the raise
        self.assertIn('the-step failed too: step broke too',
                      self.logs.output)
