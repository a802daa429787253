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

"""ndtools.failures: why each failed test failed, from stestr's log."""

import os
import subprocess
import sys
import tempfile

import testtools

from ndtools import failures   # tests/tools/__init__ puts tools/ on the path
from tests import tools as tools_tests

LOG = '''\
{0} tests.unit.test_a.ATest.test_ok [0.1s] ... ok
{1} tests.functional.test_b.BTest.test_stops [2.3s] ... FAILED

Captured traceback:
~~~~~~~~~~~~~~~~~~~
    Traceback (most recent call last):

      File "/x/tests/functional/test_b.py", line 12, in test_stops
    self.check(instance)

      File "/x/tests/functional/base.py", line 40, in check
    self.assertEqual(0, code)

    testtools.matchers._impl.MismatchError: 0 != 143


Captured traceback-1:
~~~~~~~~~~~~~~~~~~~~~
    Traceback (most recent call last):
      File "/x/fixtures.py", line 1, in cleanUp
    AssertionError: test left behind: device tap1

{0} tests.unit.test_a.ATest.test_later [0.1s] ... ok
FAIL: tempest.api.compute.test_x.XTest.test_y
{1} tests.unit.test_c.CTest.test_no_traceback ... FAILED
{0} tests.unit.test_a.ATest.test_last [0.1s] ... ok
'''


class SummariseTest(testtools.TestCase):

    def test_the_tests_line_the_last_frame_and_the_first_error(self):
        found = failures.summarise(LOG.splitlines())
        self.assertEqual([
            ('tests.functional.test_b.BTest.test_stops',
             ['/x/tests/functional/test_b.py:12 in test_stops',
              '/x/tests/functional/base.py:40 in check'],
             'testtools.matchers._impl.MismatchError: 0 != 143'),
            ('tests.unit.test_c.CTest.test_no_traceback', [], ''),
        ], found)

    def test_command_prints_each_test_once_across_logs(self):
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for name in ('ci-a.log', 'ci-b.log'):
                paths.append(os.path.join(tmp, name))
                with open(paths[-1], 'w') as log:
                    log.write(LOG)
            tools = os.path.join(tools_tests.REPO, 'tools')
            out = subprocess.run(
                [sys.executable, '-m', 'ndtools.failures',
                 *paths, os.path.join(tmp, 'missing.log')],
                cwd=tools, capture_output=True, text=True, check=True).stdout
        self.assertEqual(1, out.count('test_b.BTest.test_stops\n'))
        self.assertIn('      0 != 143', out.replace(
            'testtools.matchers._impl.MismatchError: ', ''))
        self.assertIn('      at /x/tests/functional/test_b.py:12', out)
