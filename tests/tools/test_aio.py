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

"""``tools/aio scenario`` runs the tests that take a node down alone,
after the others; ``node-kill``/``node-restart`` accept only a node up
made."""

import io
import os
import re

import fixtures
import testtools

from ndtools import aio
from ndtools import aio_state


class AioCommandsTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        for name in ('DOCKER_HOST', 'NOVA_DOCKER_TEST_API_URL', 'AIO_NODES',
                     'NOVA_DOCKER_AIO_SCENARIO'):
            self.useFixture(fixtures.EnvironmentVariable(name))
        tmp = self.useFixture(fixtures.TempDir()).path
        self.aio = aio.AllInOne(aio_state.Settings({'AIO_DIR': tmp}))
        with open(self.aio.s.clouds_yaml, 'w') as f:
            f.write('clouds: {}\n')
        self.aio.state.mark('node:2')
        self.run_suite = self.useFixture(fixtures.MockPatchObject(
            aio.AllInOne, 'run_suite', autospec=True,
            return_value=aio.SuiteResult(3, 0))).mock
        # What scenario prints (its totals) is read, not shown: a totals
        # line in the test log would pass for the run's own.
        self.out = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', self.out))

    def test_all_scenarios_evacuate_alone_last(self):
        self.assertEqual(0, self.aio.scenario([]))
        first, second = self.run_suite.call_args_list
        self.assertEqual(['--exclude-regex', aio.NOT_BY_DEFAULT],
                         first[0][-1])
        self.assertEqual(self.aio.s.scenario_concurrency, first[0][-2])
        self.assertEqual([aio.SOLO_SCENARIOS], second[0][-1])
        self.assertEqual('1', second[0][-2])
        self.assertEqual('scenario-alone', second[1]['log'])
        for call in (first, second):
            self.assertEqual('2', call[1]['AIO_NODES'])
        self.assertTrue(re.search(
            aio.SOLO_SCENARIOS, 'tests.scenario.test_evacuate.'
            'EvacuateScenarioTest.test_evacuate_failed_node_then_node_'
            'cleans_up'))
        self.assertFalse(re.search(
            aio.SOLO_SCENARIOS, 'tests.scenario.test_migration.'
            'MigrationScenarioTest.test_migrate_to_node_and_revert'))

    def test_a_failure_in_either_part_fails(self):
        ok, bad = aio.SuiteResult(3, 0), aio.SuiteResult(2, 1)
        self.run_suite.side_effect = [ok, bad]
        self.assertEqual(1, self.aio.scenario([]))
        self.run_suite.side_effect = [bad, ok]
        self.assertEqual(1, self.aio.scenario([]))

    def test_the_last_line_counts_both_parts(self):
        # .ci/run counts the last "N passed, N failed" line of the output.
        self.run_suite.side_effect = [aio.SuiteResult(20, 0),
                                      aio.SuiteResult(1, 0)]
        self.assertEqual(0, self.aio.scenario([]))
        self.assertEqual('21 passed, 0 failed',
                         self.out.getvalue().splitlines()[-1])

    def test_one_node_runs_no_node_down_tests(self):
        # On a single-node cloud they would only skip, and a run of
        # nothing but skips is no pass.
        self.aio.state.unmark('node:2')
        self.assertEqual(0, self.aio.scenario([]))
        (call,) = self.run_suite.call_args_list
        self.assertEqual(['--exclude-regex', aio.NOT_BY_DEFAULT], call[0][-1])
        self.assertEqual('1', call[1]['AIO_NODES'])

    def test_multinode_runs_the_cross_node_modules_node_down_last(self):
        self.assertEqual(0, self.aio.scenario(['--multinode']))
        first, second = self.run_suite.call_args_list
        self.assertEqual([aio.MULTINODE_SCENARIOS, '--exclude-regex',
                          aio.NOT_BY_DEFAULT], first[0][-1])
        self.assertEqual([aio.SOLO_SCENARIOS], second[0][-1])
        for name in ('test_multinode.MultinodeScenarioTest.test_x',
                     'test_migration.MigrationScenarioTest.test_x',
                     'test_evacuate.EvacuateScenarioTest.test_x'):
            self.assertTrue(re.search(aio.MULTINODE_SCENARIOS,
                                      'tests.scenario.' + name))
        self.assertFalse(re.search(aio.MULTINODE_SCENARIOS,
                                   'tests.scenario.test_ssh.SshTest.test_x'))

    def test_a_regex_runs_once(self):
        self.assertEqual(0, self.aio.scenario(['test_migration']))
        self.assertEqual(1, self.run_suite.call_count)
        self.assertEqual(['test_migration'],
                         self.run_suite.call_args[0][-1])

    def test_node_number_is_a_node_up_made(self):
        self.assertEqual(2, self.aio.node_number_arg(['2']))
        for bad in ([], ['3'], ['x'], ['2', '3'], ['1']):
            self.assertRaises(SystemExit, self.aio.node_number_arg, bad)
        self.assertTrue(os.path.exists(self.aio.s.clouds_yaml))
