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

"""tools/aio's Debian packages: the docker command where it is separate.

install_debs from tools/aio.d/install.sh runs in bash with dpkg-query and
apt_install (apt-get update + install) replaced, so no package is touched.
"""

import os
import subprocess

import fixtures
import testtools

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
INSTALL_SH = os.path.join(REPO, 'tools', 'aio.d', 'install.sh')


class InstallDebsTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.log = os.path.join(self.tmp, 'calls')
        self.cli = os.path.join(self.tmp, 'usr-bin-docker')

    def install_debs(self, installed: str, cli: bool) -> list:
        """Run install_debs where the packages in ``installed`` (a space
        separated list, or 'all') are there; return what it installs."""
        if cli:
            with open(self.cli, 'w') as handle:
                handle.write('#!/bin/sh\n')
            os.chmod(self.cli, 0o755)
        script = '''
            set -u
            . "%(install)s"
            dpkg-query() {
                local p=${!#}
                case " $INSTALLED " in
                    *" all "*|*" $p "*) echo "install ok installed" ;;
                esac
            }
            apt_install() { echo "$*" >>"%(log)s"; }
            # Never the real thing, whatever install_debs calls.
            apt-get() { echo "apt-get $*" >&2; return 1; }
            dpkg() { echo "dpkg $*" >&2; return 1; }
            install_debs
        ''' % {'install': INSTALL_SH, 'log': self.log}
        env = dict(os.environ, INSTALLED=installed,
                   AIO_DOCKER_CLI=self.cli, PATH='/usr/bin:/bin')
        result = subprocess.run(['bash', '-c', script], env=env,
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(0, result.returncode, result.stderr)
        if not os.path.exists(self.log):
            return []
        with open(self.log) as handle:
            return handle.read().split()

    def test_trixie_docker_io_gets_docker_cli(self):
        # docker.io 26 is there, its command is not (a recommends).
        self.assertEqual(['docker-cli'], self.install_debs('all', cli=False))

    def test_bookworm_docker_io_has_the_command(self):
        self.assertEqual([], self.install_debs('all', cli=True))

    def test_fresh_trixie_host(self):
        installed = self.install_debs('', cli=False)
        self.assertIn('docker.io', installed)
        self.assertEqual('docker-cli', installed[-1])
