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

"""The oslo.config.opts entry point and the generated sample config.

Operators learn the options from ``tox -e genconfig``
(oslo-config-generator over the ``nova_docker`` namespace), so every
``[docker]`` option the code registers must be listed there.
"""

import configparser
import importlib
import importlib.metadata
import os
import pkgutil
import re
import subprocess
import sys

import fixtures
from oslo_config import cfg
import testtools

import novadocker
from novadocker import conf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
GENERATOR_CONF = os.path.join(REPO, 'etc',
                              'nova-docker-config-generator.conf')


def entry_point():
    found = [ep for ep in importlib.metadata.entry_points(
        group='oslo.config.opts') if ep.name == 'nova_docker']
    return found


def import_whole_package() -> None:
    """Import every novadocker module, so each registers its options."""
    for module in pkgutil.walk_packages(novadocker.__path__, 'novadocker.'):
        importlib.import_module(module.name)


class TestOptsEntryPoint(testtools.TestCase):

    def listed(self) -> dict:
        found = entry_point()
        self.assertEqual(1, len(found), 'nova_docker entry point: %s' % found)
        self.assertEqual('novadocker.conf:list_opts', found[0].value)
        groups = {}
        for group, opts in found[0].load()():
            name = group.name if isinstance(group, cfg.OptGroup) else group
            groups.setdefault(name, []).extend(opts)
        return groups

    def test_lists_every_registered_docker_option(self):
        import_whole_package()
        listed = {opt.name for opt in self.listed()['docker']}
        registered = set(cfg.CONF.docker)
        self.assertEqual(registered, listed,
                         'registered but not listed: %s; listed but not '
                         'registered: %s' % (sorted(registered - listed),
                                             sorted(listed - registered)))

    def test_only_the_docker_group(self):
        self.assertEqual(['docker'], sorted(self.listed()))

    def test_every_option_says_what_it_does(self):
        for opt in self.listed()['docker']:
            self.assertGreater(len(opt.help or ''), 20, opt.name)


class TestGenerator(testtools.TestCase):

    def generate(self) -> str:
        generator = os.path.join(os.path.dirname(sys.executable),
                                 'oslo-config-generator')
        self.assertTrue(os.path.exists(generator),
                        '%s missing (oslo.config)' % generator)
        out = os.path.join(self.useFixture(fixtures.TempDir()).path,
                           'nova-docker.conf.sample')
        # The tree's novadocker, not a possibly stale installed copy.
        env = dict(os.environ, PYTHONPATH=REPO)
        result = subprocess.run(
            [generator, '--config-file', GENERATOR_CONF,
             '--output-file', out],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(0, result.returncode, result.stderr)
        with open(out) as f:
            return f.read()

    def test_generator_config_names_the_namespace(self):
        parser = configparser.ConfigParser()
        parser.read(GENERATOR_CONF)
        self.assertEqual('nova_docker', parser.get('DEFAULT', 'namespace'))
        self.assertEqual('etc/nova-docker.conf.sample',
                         parser.get('DEFAULT', 'output_file'))

    def test_sample_has_every_option_with_its_default(self):
        sample = self.generate()
        self.assertIn('\n[docker]\n', sample)
        # Uncomment every "#name = value" line: oslo.config must read the
        # sample back to exactly the defaults the code has.
        names = {opt.name for opt in conf.docker_opts}
        seen = set()
        lines = []
        for line in sample.splitlines():
            match = re.match(r'^#(\w+) =(?: (.*))?$', line)
            if match and match.group(1) in names:
                seen.add(match.group(1))
                if match.group(2) != '<None>':
                    line = line[1:]
            lines.append(line)
        self.assertEqual(names, seen)
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'uncommented.conf')
        with open(path, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        reread = cfg.ConfigOpts()
        reread.register_opts(conf.docker_opts, group='docker')
        reread(['--config-file', path], project='nova-docker')
        for opt in conf.docker_opts:
            self.assertEqual(opt.default, reread.docker[opt.name], opt.name)
        self.assertEqual('unix:///var/run/docker.sock',
                         reread.docker.api_url)

    def test_tox_genconfig_uses_this_generator_config(self):
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(os.path.join(REPO, 'tox.ini'))
        commands = parser.get('testenv:genconfig', 'commands')
        self.assertIn('oslo-config-generator --config-file '
                      'etc/nova-docker-config-generator.conf', commands)
