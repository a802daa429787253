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

"""bashate and shellcheck on the devstack plugin, through tools/lint-devstack.

bashate comes from test-requirements.txt, shellcheck from the Debian
package ``shellcheck`` (tools/run-tests installs it). Locally a missing
linter skips; in CI (CI=true) it fails, like require_functional.
"""

import glob
import os
import shutil
import subprocess
import sys

import fixtures
import testtools

from tests.fixtures import docker as docker_fixtures

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
LINT = os.path.join(REPO, 'tools', 'lint-devstack')


def lint_files() -> list:
    """What tools/lint-devstack checks by default, relative to REPO."""
    files = ['devstack/plugin.sh', 'devstack/settings',
             'tools/lint-devstack']
    for pattern in ('devstack/lib/*', 'tests/devstack/*.sh'):
        files += sorted(os.path.relpath(p, REPO)
                        for p in glob.glob(os.path.join(REPO, pattern)))
    return files


class LintTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.bashate = self._find('bashate', 'pip install bashate')
        self.shellcheck = self._find('shellcheck',
                                     'apt-get install shellcheck')
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def _find(self, name: str, how: str) -> str:
        # The venv's bin first: bashate lives next to this interpreter.
        path = shutil.which(name, path=os.pathsep.join(
            [os.path.dirname(sys.executable), os.environ.get('PATH', '')]))
        if not path:
            docker_fixtures.require_functional_missing(
                self, '%s not found (%s)' % (name, how))
        return path

    def lint(self, *files: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, BASHATE=self.bashate,
                   SHELLCHECK=self.shellcheck)
        return subprocess.run([LINT] + list(files), cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)

    def test_plugin_is_clean(self):
        result = self.lint()
        self.assertEqual(0, result.returncode,
                         'tools/lint-devstack found problems:\n%s\n%s'
                         % (result.stdout, result.stderr))
        self.assertIn('lint-devstack: %d files clean' % len(lint_files()),
                      result.stdout)

    def test_every_plugin_file_is_linted(self):
        for required in ('devstack/plugin.sh', 'devstack/settings',
                         'devstack/lib/nova-docker'):
            self.assertIn(required, lint_files())
        result = self.lint()
        for name in lint_files():
            self.assertIn('Running bashate on %s' % name, result.stdout)

    def _bad_script(self, text: str) -> str:
        path = os.path.join(self.tmp, 'bad.sh')
        with open(path, 'w') as f:
            f.write(text)
        return path

    def test_bashate_style_error_fails(self):
        # Indented by 2: bashate's E003, an error in our setup.
        bad = self._bad_script('#!/bin/bash\nif true; then\n  echo hi\nfi\n')
        result = self.lint(bad)
        self.assertNotEqual(0, result.returncode)
        self.assertIn('E003', result.stdout + result.stderr)

    def test_shellcheck_finding_fails(self):
        # bashate-clean style; the unquoted $1 is shellcheck's SC2086.
        bad = self._bad_script('#!/bin/bash\nfunction go {\n'
                               '    echo $1\n}\n')
        result = self.lint(bad)
        self.assertNotEqual(0, result.returncode)
        self.assertNotIn('bashate error', result.stdout + result.stderr)
        self.assertIn('SC2086', result.stdout + result.stderr)
