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

"""devstack/plugin.sh run in bash the way devstack runs it.

``stack.sh`` sources ``devstack/settings`` and then ``plugin.sh MODE PHASE``
for each phase. Here the devstack functions the plugin calls come from
tests/devstack/devstack-stubs.sh: the ini functions edit real files, the
rest record their calls. The tests check the nova.conf and glance-api.conf
the plugin writes (and that Nova, os-vif and oslo.rootwrap read them as
intended) and the shape of the commands it runs.
"""

import configparser
import getpass
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid

import fixtures
from nova.conf import compute as nova_compute_conf
from oslo_config import cfg
from oslo_rootwrap import filters as rootwrap_filters
from oslo_rootwrap import wrapper as rootwrap_wrapper
from oslo_utils import importutils
import testtools
from vif_plug_ovs import ovs as os_vif_ovs

from novadocker import conf as nd_conf
from novadocker.virt.docker import guest
from novadocker.virt.docker import images
from tests.fixtures import docker as docker_fixtures

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
STUBS = os.path.join(REPO, 'tests', 'devstack', 'devstack-stubs.sh')
GLANCE_33_FORMATS = ['ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker',
                     'compressed']
ALL_PHASES = (('stack', 'pre-install'), ('stack', 'install'),
              ('stack', 'post-config'), ('stack', 'extra'),
              ('stack', 'test-config'), ('unstack',), ('clean',))


# The [DEFAULT] options the plugin sets for container-sized capacity.
CAPACITY_OPTIONS = ('cpu_allocation_ratio', 'ram_allocation_ratio',
                    'disk_allocation_ratio', 'reserved_host_memory_mb',
                    'reserved_host_disk_mb')


class PluginTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.out = os.path.join(self.tmp, 'out')
        self.bin = os.path.join(self.tmp, 'bin')
        for path in (self.out, self.bin, self.etc('nova'),
                     self.etc('glance')):
            os.makedirs(path, exist_ok=True)
        self.nova_conf = os.path.join(self.etc('nova'), 'nova.conf')
        self.glance_conf = os.path.join(self.etc('glance'), 'glance-api.conf')
        os.makedirs(self.etc('neutron'), exist_ok=True)
        self.neutron_conf = os.path.join(self.etc('neutron'), 'neutron.conf')
        self.write(self.neutron_conf, """
            [DEFAULT]
            core_plugin = ml2
            """)
        self.write(self.nova_conf, """
            [DEFAULT]
            debug = True
            [os_vif_ovs]
            ovsdb_interface = native
            """)
        self.write(self.glance_conf, """
            [DEFAULT]
            bind_port = 9292
            """)
        self.log = os.path.join(self.tmp, 'calls.log')
        self.daemon_json = os.path.join(self.tmp, 'etc', 'docker',
                                        'daemon.json')
        # What stackrc and lib/* define before the plugin runs. PATH leaves
        # out the sbin directories, so a test decides whether "dockerd" is
        # installed (see fake_dockerd). With STUB_REAL_DOCKER=1 the plugin
        # runs the docker command of the engine under test, and talks to
        # that engine (tools/run-tests --docker=26).
        cli_dir = os.path.dirname(docker_fixtures.docker_cli())
        self.env = {
            'PATH': ':'.join(dict.fromkeys(
                [self.bin, cli_dir, '/usr/bin', '/bin'])),
            'DOCKER_HOST': docker_fixtures.api_url(),
            'HOME': self.tmp,
            'LANG': 'C.UTF-8',
            'DEST': os.path.join(self.tmp, 'opt-stack'),
            'NOVA_DOCKER_DIR': REPO,
            'STACK_USER': getpass.getuser(),
            'DATA_DIR': os.path.join(self.tmp, 'opt-stack', 'data'),
            'TEMPEST_CONFIG': os.path.join(self.tmp, 'tempest.conf'),
            'NOVA_CONF_DIR': self.etc('nova'),
            'NOVA_CONF': self.nova_conf,
            'GLANCE_API_CONF': self.glance_conf,
            'NEUTRON_CONF': self.neutron_conf,
            'REGION_NAME': 'RegionOne',
            'VIRT_DRIVER': 'docker',
            'ENABLED_SERVICES': 'key,g-api,n-api,n-cpu,n-sch,tempest',
            'DEFAULT_IMAGE_NAME': 'cirros-0.6.3-x86_64-disk',
            'IMAGE_URLS': 'http://example.invalid/cirros.img',
            'STUB_LOG': self.log,
            'STUB_OUT': self.out,
            'STUB_PYTHON': sys.executable,
            # Never the host's real engine configuration.
            'NOVA_DOCKER_DAEMON_JSON': self.daemon_json,
            # The docker command as docker.io (bookworm) or docker-cli
            # installs it; a test removes it to be trixie.
            'NOVA_DOCKER_CLI': os.path.join(self.tmp, 'usr-bin-docker'),

            'NOVA_DOCKER_LXCFS_DROPIN': os.path.join(
                self.tmp, 'lxcfs.service.d', 'nova-docker.conf'),
        }
        self.write(self.env['NOVA_DOCKER_CLI'], '#!/bin/sh\nexit 0\n')
        os.chmod(self.env['NOVA_DOCKER_CLI'], 0o755)
        # devstack's global venv (GLOBAL_VENV, stackrc's default), where
        # pip_install put the package: its python3 is this test's, which
        # has novadocker installed, and records its calls.
        venv = os.path.join(self.tmp, 'devstack-venv')
        os.makedirs(os.path.join(venv, 'bin'))
        self.write(os.path.join(venv, 'bin', 'python3'), '''
            #!/bin/sh
            echo "devstack-venv/python3 $*" >> "$STUB_LOG"
            exec "%s" "$@"
            ''' % sys.executable)
        os.chmod(os.path.join(venv, 'bin', 'python3'), 0o755)
        self.env.update(GLOBAL_VENV='True', DEVSTACK_VENV=venv)

    def etc(self, service: str) -> str:
        return os.path.join(self.tmp, 'etc', service)

    @staticmethod
    def write(path: str, text: str) -> None:
        with open(path, 'w') as f:
            f.write(textwrap.dedent(text).lstrip())

    def fake_dockerd(self) -> None:
        path = os.path.join(self.bin, 'dockerd')
        self.write(path, '#!/bin/sh\nexit 0\n')
        os.chmod(path, 0o755)

    def run_plugin(self, *phases, check=True,
                   **env) -> subprocess.CompletedProcess:
        """Source settings, then plugin.sh once per phase, as stack.sh does.

        Prints the variables devstack reads back from settings.
        """
        lines = ['set -o errexit', 'source "%s"' % STUBS,
                 'source "%s/devstack/settings"' % REPO]
        for phase in phases:
            lines.append('source "%s/devstack/plugin.sh" %s'
                         % (REPO, ' '.join(phase)))
        lines.append('echo "DEFAULT_IMAGE_NAME=$DEFAULT_IMAGE_NAME"')
        lines.append('echo "IMAGE_URLS=$IMAGE_URLS"')
        run_env = dict(self.env, **env)
        result = subprocess.run(
            ['bash', '-c', '\n'.join(lines)], env=run_env, cwd=self.tmp,
            capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            self.fail('plugin.sh failed (%d)\nstdout:\n%s\nstderr:\n%s'
                      % (result.returncode, result.stdout[-4000:],
                         result.stderr[-4000:]))
        return result

    def calls(self) -> list:
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return f.read().splitlines()

    def args_file(self, name: str) -> list:
        with open(os.path.join(self.out, name), 'rb') as f:
            return f.read().decode().split('\0')[:-1]

    @staticmethod
    def ini(path: str) -> configparser.RawConfigParser:
        parser = configparser.RawConfigParser(strict=False)
        parser.optionxform = str
        parser.read(path)
        return parser


class TestSettings(PluginTestCase):

    def test_docker_driver_boots_the_busybox_image_only(self):
        result = self.run_plugin()
        self.assertIn('DEFAULT_IMAGE_NAME=busybox\n', result.stdout)
        self.assertIn('IMAGE_URLS=\n', result.stdout)

    def test_image_name_can_be_chosen(self):
        result = self.run_plugin(NOVA_DOCKER_IMAGE_NAME='bb')
        self.assertIn('DEFAULT_IMAGE_NAME=bb\n', result.stdout)

    def test_other_virt_driver_is_left_alone(self):
        with open(self.nova_conf) as f:
            nova_before = f.read()
        with open(self.glance_conf) as f:
            glance_before = f.read()
        result = self.run_plugin(*ALL_PHASES, VIRT_DRIVER='libvirt')
        self.assertIn('DEFAULT_IMAGE_NAME=cirros-0.6.3-x86_64-disk\n',
                      result.stdout)
        self.assertIn('IMAGE_URLS=http://example.invalid/cirros.img\n',
                      result.stdout)
        self.assertEqual([], self.calls())
        with open(self.nova_conf) as f:
            self.assertEqual(nova_before, f.read())
        with open(self.glance_conf) as f:
            self.assertEqual(glance_before, f.read())


class TestLocalConfSample(PluginTestCase):
    """devstack/local.conf.sample says what the plugin really does."""

    def localrc(self) -> list:
        with open(os.path.join(REPO, 'devstack', 'local.conf.sample')) as f:
            text = f.read()
        return text.split('[[local|localrc]]\n', 1)[1].splitlines()

    def test_enables_the_plugin_with_the_docker_driver(self):
        script = '\n'.join(
            ['function enable_plugin { echo "plugin $*"; }',
             'function disable_service { echo "disabled $*"; }']
            + self.localrc() + ['echo "VIRT_DRIVER=$VIRT_DRIVER"'])
        result = subprocess.run(['bash', '-c', script], env=self.env,
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertIn('VIRT_DRIVER=docker\n', result.stdout)
        self.assertRegex(result.stdout, r'(?m)^plugin nova-docker \S+$')

    def test_documented_defaults_are_the_defaults(self):
        documented = [line[1:].split('=', 1) for line in self.localrc()
                      if line.startswith('#NOVA_DOCKER_')]
        self.assertGreater(len(documented), 2)
        script = ['source "%s"' % STUBS,
                  'source "%s/devstack/settings"' % REPO]
        script += ['echo "%s=${%s}"' % (name, name) for name, _ in documented]
        result = subprocess.run(['bash', '-c', '\n'.join(script)],
                                env=self.env, capture_output=True, text=True,
                                timeout=60)
        self.assertEqual(0, result.returncode, result.stderr)
        for name, value in documented:
            self.assertIn('%s=%s\n' % (name, value), result.stdout)


class TestInstall(PluginTestCase):

    def test_installs_docker_busybox_and_the_package(self):
        self.run_plugin(('stack', 'install'))
        calls = self.calls()
        self.assertIn('install_package busybox-static docker.io', calls)
        self.assertIn('start_service docker', calls)
        self.assertIn('sudo docker version', calls)
        # Docker is up before anything uses it.
        self.assertLess(calls.index('start_service docker'),
                        calls.index('sudo docker version'))
        # The requirements into devstack's Python environment, except nova:
        # devstack's git nova (a .dev version on master) must stay.
        with open(os.path.join(self.out, 'pip-requirements.txt')) as f:
            wanted = f.read().splitlines()
        with open(os.path.join(REPO, 'requirements.txt')) as f:
            declared = f.read().splitlines()
        self.assertTrue([r for r in declared if r.startswith('nova>')])
        self.assertEqual([r for r in declared if not r.startswith('nova')],
                         wanted)
        self.assertIn('docker>=7.0.0', wanted)
        # Then this repository, a regular install; never editable (-e),
        # which pbr's nova/virt/docker spelling breaks.
        self.assertIn('pip_install --no-deps %s' % REPO, calls)
        self.assertFalse([c for c in calls if c.startswith('setup_develop')
                          or ' -e ' in c], calls)
        self.assertIn('add_user_to_group %s docker' % getpass.getuser(),
                      calls)

    def test_live_restore_turned_on_keeping_other_settings(self):
        os.makedirs(os.path.dirname(self.daemon_json))
        self.write(self.daemon_json, '{"log-level": "warn"}')
        self.fake_dockerd()
        self.run_plugin(('stack', 'install'))
        with open(self.daemon_json) as f:
            self.assertEqual({'log-level': 'warn', 'live-restore': True},
                             json.load(f))
        calls = self.calls()
        # A running engine gets it by a reload, never a restart.
        self.assertIn('systemctl reload docker', calls)
        self.assertLess(calls.index('start_service docker'),
                        calls.index('systemctl reload docker'))
        self.assertFalse([c for c in calls
                          if 'restart' in c and 'docker' in c], calls)

    def test_live_restore_on_a_fresh_engine(self):
        self.run_plugin(('stack', 'install'))
        with open(self.daemon_json) as f:
            self.assertEqual({'live-restore': True}, json.load(f))

    def test_live_restore_can_be_left_off(self):
        self.run_plugin(('stack', 'install'),
                        NOVA_DOCKER_LIVE_RESTORE='False')
        self.assertFalse(os.path.exists(self.daemon_json))
        self.assertNotIn('systemctl reload docker', self.calls())

    def test_lxcfs_installed_with_its_cpu_view(self):
        self.run_plugin(('stack', 'install'))
        calls = self.calls()
        self.assertIn('install_package lxcfs', calls)
        self.assertLess(calls.index('sudo systemctl daemon-reload'),
                        calls.index('restart_service lxcfs'))
        with open(self.env['NOVA_DOCKER_LXCFS_DROPIN']) as f:
            self.assertEqual(
                '[Service]\nExecStart=\nExecStart=/usr/bin/lxcfs '
                '--enable-cfs --enable-loadavg /var/lib/lxcfs\n', f.read())
        # Stacking again leaves a running lxcfs (and its mounts) alone.
        os.unlink(self.log)
        self.run_plugin(('stack', 'install'))
        calls = self.calls()
        self.assertIn('start_service lxcfs', calls)
        self.assertFalse([c for c in calls if 'restart_service' in c
                          or 'daemon-reload' in c], calls)

    def test_lxcfs_can_be_turned_off(self):
        self.run_plugin(('stack', 'install'), ('stack', 'post-config'),
                        NOVA_DOCKER_LXCFS='False')
        self.assertFalse([c for c in self.calls() if 'lxcfs' in c])
        self.assertEqual('', self.ini(self.nova_conf).get(
            'docker', 'lxcfs_path'))

    def test_existing_docker_engine_is_kept(self):
        self.fake_dockerd()
        self.run_plugin(('stack', 'install'))
        self.assertIn('install_package busybox-static', self.calls())

    def test_engine_install_can_be_turned_off(self):
        self.run_plugin(('stack', 'install'),
                        NOVA_DOCKER_INSTALL_ENGINE='False')
        self.assertIn('install_package busybox-static', self.calls())

    def test_docker_cli_installed_where_docker_io_lacks_it(self):
        # Debian trixie: docker.io 26 ships dockerd, docker-cli the
        # command; a docker elsewhere on PATH does not count.
        os.unlink(self.env['NOVA_DOCKER_CLI'])
        self.write(os.path.join(self.bin, 'docker'), '#!/bin/sh\nexit 0\n')
        os.chmod(os.path.join(self.bin, 'docker'), 0o755)
        self.run_plugin(('stack', 'install'))
        calls = self.calls()
        self.assertIn('install_package busybox-static docker.io', calls)
        self.assertIn('install_package docker-cli', calls)
        self.assertLess(calls.index('install_package docker-cli'),
                        calls.index('sudo docker version'))

    def test_docker_cli_installed_beside_an_existing_engine(self):
        self.fake_dockerd()
        os.unlink(self.env['NOVA_DOCKER_CLI'])
        self.run_plugin(('stack', 'install'))
        calls = self.calls()
        self.assertIn('install_package busybox-static', calls)
        self.assertIn('install_package docker-cli', calls)

    def test_no_docker_cli_package_where_docker_io_has_the_command(self):
        # Debian bookworm: docker.io 20.10 ships /usr/bin/docker itself.
        self.run_plugin(('stack', 'install'))
        self.assertNotIn('install_package docker-cli', self.calls())

    def test_rpm_distributions_are_refused(self):
        result = self.run_plugin(('stack', 'install'), check=False,
                                 STUB_DISTRO='rpm')
        self.assertNotEqual(0, result.returncode)
        calls = self.calls()
        self.assertEqual(1, len(calls), calls)
        self.assertTrue(calls[0].startswith('exit_distro_not_supported'))

    def test_glance_only_node_gets_docker_but_not_the_package(self):
        for services in ('key,g-api', 'tempest'):
            if os.path.exists(self.log):
                os.unlink(self.log)
            self.run_plugin(('stack', 'install'), ENABLED_SERVICES=services)
            calls = self.calls()
            self.assertIn('install_package busybox-static docker.io', calls)
            self.assertFalse([c for c in calls if c.startswith(
                ('pip_install', 'add_user_to_group'))], calls)

    def test_api_only_node_installs_nothing(self):
        self.run_plugin(('stack', 'install'), ENABLED_SERVICES='key,n-api')
        self.assertEqual([], self.calls())


class TestPostConfig(PluginTestCase):

    def test_nova_conf(self):
        self.run_plugin(('stack', 'post-config'))
        nova = self.ini(self.nova_conf)
        self.assertEqual('docker.DockerDriver',
                         nova.get('DEFAULT', 'compute_driver'))
        self.assertEqual('unix:/var/run/openvswitch/db.sock',
                         nova.get('docker', 'ovsdb_connection'))
        self.assertEqual('unix:/var/run/openvswitch/db.sock',
                         nova.get('os_vif_ovs', 'ovsdb_connection'))
        self.assertEqual('/bin/busybox', nova.get('docker', 'sandbox_binary'))
        self.assertFalse(nova.has_option('docker', 'api_url'))
        # What was there stays.
        self.assertEqual('True', nova.get('DEFAULT', 'debug'))
        self.assertEqual('native', nova.get('os_vif_ovs', 'ovsdb_interface'))

    def test_capacity_sized_for_containers(self):
        self.run_plugin(('stack', 'post-config'))
        nova = self.ini(self.nova_conf)
        self.assertEqual({'cpu_allocation_ratio': '64.0',
                          'ram_allocation_ratio': '1.0',
                          'disk_allocation_ratio': '2.0',
                          'reserved_host_memory_mb': '4096',
                          'reserved_host_disk_mb': '10240'},
                         {option: nova.get('DEFAULT', option)
                          for option in CAPACITY_OPTIONS})

    def test_capacity_can_be_chosen_or_left_to_nova(self):
        self.run_plugin(('stack', 'post-config'),
                        NOVA_DOCKER_CPU_ALLOCATION_RATIO='32.0',
                        NOVA_DOCKER_RESERVED_HOST_DISK_MB='')
        nova = self.ini(self.nova_conf)
        self.assertEqual('32.0', nova.get('DEFAULT', 'cpu_allocation_ratio'))
        self.assertFalse(nova.has_option('DEFAULT', 'reserved_host_disk_mb'))

    def test_nova_reads_it_as_intended(self):
        """The names written are real options of Nova, the driver, os-vif."""
        self.run_plugin(('stack', 'post-config'),
                        NOVA_DOCKER_API_URL='tcp://127.0.0.1:2376')
        conf = cfg.ConfigOpts()
        conf.register_opt(cfg.StrOpt('compute_driver'))
        conf.register_opt(cfg.BoolOpt('debug'))
        conf.register_opts([opt for opt in nova_compute_conf.ALL_OPTS
                            if opt.name in CAPACITY_OPTIONS])
        conf.register_opts(nd_conf.docker_opts, group='docker')
        conf.register_opts(os_vif_ovs.OvsPlugin.CONFIG_OPTS,
                           group='os_vif_ovs')
        conf(['--config-file', self.nova_conf], project='nova')
        written = self.ini(self.nova_conf)
        for section in ('docker', 'os_vif_ovs'):
            for option in (set(written.options(section)) -
                           set(written.defaults())):
                self.assertIn(option, conf[section],
                              '[%s]%s is no option' % (section, option))
        self.assertEqual('tcp://127.0.0.1:2376', conf.docker.api_url)
        self.assertEqual(64.0, conf.cpu_allocation_ratio)
        self.assertEqual(4096, conf.reserved_host_memory_mb)
        self.assertEqual(conf.docker.ovsdb_connection,
                         conf.os_vif_ovs.ovsdb_connection)
        # nova-compute loads "nova.virt." + compute_driver.
        driver_class = importutils.import_class(
            'nova.virt.' + conf.compute_driver)
        self.assertEqual('novadocker.virt.docker.driver',
                         driver_class.__module__)
        self.assertEqual('DockerDriver', driver_class.__name__)

    def test_ovsdb_follows_devstack_manager(self):
        # devstack (OVN) opens ptcp:6640 on OVSDB_SERVER_LOCAL_HOST and
        # points nova-cpu.conf's [os_vif_ovs] there: [docker] must agree.
        self.run_plugin(('stack', 'post-config'),
                        OVSDB_SERVER_LOCAL_HOST='127.0.0.1')
        nova = self.ini(self.nova_conf)
        self.assertEqual('tcp:127.0.0.1:6640',
                         nova.get('docker', 'ovsdb_connection'))
        self.assertEqual('tcp:127.0.0.1:6640',
                         nova.get('os_vif_ovs', 'ovsdb_connection'))

    def test_ovsdb_connection_can_be_chosen(self):
        self.run_plugin(('stack', 'post-config'),
                        OVSDB_SERVER_LOCAL_HOST='127.0.0.1',
                        NOVA_DOCKER_OVSDB_CONNECTION='unix:/run/ovs/db.sock')
        nova = self.ini(self.nova_conf)
        self.assertEqual('unix:/run/ovs/db.sock',
                         nova.get('docker', 'ovsdb_connection'))
        self.assertEqual('unix:/run/ovs/db.sock',
                         nova.get('os_vif_ovs', 'ovsdb_connection'))

    def test_glance_default_formats_plus_docker(self):
        self.run_plugin(('stack', 'post-config'))
        glance = self.ini(self.glance_conf)
        self.assertEqual(GLANCE_33_FORMATS, glance.get(
            'image_format', 'container_formats').split(','))
        self.assertFalse(glance.has_option('DEFAULT', 'container_formats'))
        self.assertEqual('9292', glance.get('DEFAULT', 'bind_port'))

    def test_glance_formats_set_by_the_operator_get_docker(self):
        self.write(self.glance_conf, """
            [image_format]
            container_formats = bare, ovf
            disk_formats = raw,qcow2
            """)
        self.run_plugin(('stack', 'post-config'), ('stack', 'post-config'))
        glance = self.ini(self.glance_conf)
        self.assertEqual('bare,ovf,docker',
                         glance.get('image_format', 'container_formats'))
        self.assertEqual('raw,qcow2',
                         glance.get('image_format', 'disk_formats'))

    def test_glance_deprecated_default_section_is_folded_in(self):
        # Glance 33 reads [image_format]; [DEFAULT]container_formats is
        # the deprecated name and would be ignored next to it.
        self.write(self.glance_conf, """
            [DEFAULT]
            container_formats = bare
            """)
        self.run_plugin(('stack', 'post-config'))
        glance = self.ini(self.glance_conf)
        self.assertEqual('bare,docker',
                         glance.get('image_format', 'container_formats'))
        self.assertFalse(glance.has_option('DEFAULT', 'container_formats'))

    def test_rootwrap_filters_installed_and_usable(self):
        self.run_plugin(('stack', 'post-config'))
        installed = os.path.join(self.etc('nova'), 'rootwrap.d',
                                 'docker.filters')
        with open(installed, 'rb') as f, open(os.path.join(
                REPO, 'etc', 'rootwrap.d', 'docker.filters'), 'rb') as g:
            self.assertEqual(g.read(), f.read())
        self.assertEqual(0o644, stat.S_IMODE(os.stat(installed).st_mode))
        if os.geteuid() == 0:
            self.assertEqual(0, os.stat(installed).st_uid)
        self.assertIn('sudo install -o root -g root -m 644 %s/etc/rootwrap.d/'
                      'docker.filters %s' % (REPO, installed), self.calls())
        # nova-rootwrap reads that directory: the os-vif line lets
        # nova-compute (one --config-file, as devstack starts it) start
        # os-vif's privsep helper. (oslo.rootwrap also appends a catch-all
        # "privsep-helper" CommandFilter of its own, which must not be the
        # one that matched.)
        loaded = rootwrap_wrapper.load_filters([os.path.dirname(installed)])
        exec_dirs = [os.path.dirname(sys.executable), '/usr/local/bin',
                     '/usr/bin']
        helper = ['privsep-helper', '--config-file',
                  '/etc/nova/nova-cpu.conf', '--privsep_context',
                  'vif_plug_ovs.privsep.vif_plug', '--privsep_sock_path',
                  '/tmp/tmpab12cd_3/privsep.sock']
        match = rootwrap_wrapper.match_filter(loaded, helper, exec_dirs)
        self.assertIsInstance(match, rootwrap_filters.RegExpFilter)
        self.assertEqual('privsep-rootwrap-os-vif-ovs', match.name)
        other = list(helper)
        other[4] = 'some.other.privsep.context'
        match = rootwrap_wrapper.match_filter(loaded, other, exec_dirs)
        self.assertNotIsInstance(match, rootwrap_filters.RegExpFilter)

    def test_neutron_server_sends_events_without_the_2s_sleep(self):
        for services in ('q-svc', 'neutron-api'):
            self.write(self.neutron_conf, '[DEFAULT]\ncore_plugin = ml2\n')
            self.run_plugin(('stack', 'post-config'),
                            ENABLED_SERVICES='key,%s,n-cpu' % services)
            neutron = self.ini(self.neutron_conf)
            self.assertEqual('1', neutron.get('DEFAULT',
                                              'send_events_interval'))
            self.assertEqual('ml2', neutron.get('DEFAULT', 'core_plugin'))
        # Neutron reads it as its option (an int of at least 1).
        conf = cfg.ConfigOpts()
        conf.register_opt(cfg.IntOpt('send_events_interval', min=1))
        conf(['--config-file', self.neutron_conf], project='neutron')
        self.assertEqual(1, conf.send_events_interval)

    def test_neutron_conf_left_without_the_server_or_the_setting(self):
        with open(self.neutron_conf) as f:
            before = f.read()
        self.run_plugin(('stack', 'post-config'), ENABLED_SERVICES='n-cpu')
        self.run_plugin(('stack', 'post-config'),
                        ENABLED_SERVICES='q-svc,n-cpu',
                        NOVA_DOCKER_NEUTRON_SEND_EVENTS_INTERVAL='')
        with open(self.neutron_conf) as f:
            self.assertEqual(before, f.read())

    def test_glance_only_node_leaves_nova_conf(self):
        with open(self.nova_conf) as f:
            before = f.read()
        self.run_plugin(('stack', 'post-config'), ENABLED_SERVICES='g-api')
        with open(self.nova_conf) as f:
            self.assertEqual(before, f.read())
        self.assertIn('docker', self.ini(self.glance_conf).get(
            'image_format', 'container_formats').split(','))

    def test_compute_only_node_leaves_glance_conf(self):
        with open(self.glance_conf) as f:
            before = f.read()
        self.run_plugin(('stack', 'post-config'), ENABLED_SERVICES='n-cpu')
        with open(self.glance_conf) as f:
            self.assertEqual(before, f.read())
        self.assertEqual('docker.DockerDriver', self.ini(
            self.nova_conf).get('DEFAULT', 'compute_driver'))


class TestExtra(PluginTestCase):

    def test_busybox_image_built_and_streamed_to_glance(self):
        self.run_plugin(('stack', 'extra'))
        calls = self.calls()
        tag = 'nova-docker/busybox:latest'
        # docker import of the one builder's busybox-static root
        # filesystem, run by the python the package was installed for.
        self.assertIn('devstack-venv/python3 -m novadocker.cmd.build_image '
                      '--busybox /bin/busybox', calls)
        args = self.args_file('docker-import.args')
        self.assertEqual(['import', '--change'], args[:2])
        self.assertEqual(['-', tag], args[3:])
        self.assertTrue(args[2].startswith('CMD '), args[2])
        cmd = json.loads(args[2][len('CMD '):])
        self.assertEqual(['/bin/sh', '-c'], cmd[:2])
        self.assertIn('trap "exit 0" TERM', cmd[2])
        with tarfile.open(os.path.join(self.out, 'docker-import.tar')) as tar:
            members = {m.name.lstrip('./'): m for m in tar.getmembers()}
            busybox = members['bin/busybox']
            self.assertTrue(busybox.isfile())
            self.assertEqual(os.path.getsize('/bin/busybox'), busybox.size)
            self.assertEqual((0, 0), (busybox.uid, busybox.gid))
            for applet in ('sh', 'sleep', 'ip', 'hostname'):
                link = members['bin/' + applet]
                self.assertTrue(link.issym(), applet)
                self.assertEqual('busybox', link.linkname)
            self.assertEqual(0o1777, members['tmp'].mode & 0o7777)
            passwd = tar.extractfile(members['etc/passwd']).read()
            self.assertTrue(passwd.startswith(b'root:x:0:0:'))
        # docker save piped into "openstack image create" as admin.
        self.assertEqual([
            '--os-cloud=devstack-admin', '--os-region-name=RegionOne',
            'image', 'create', 'busybox', '--public',
            '--container-format', 'docker', '--disk-format', 'raw'],
            self.args_file('image-create.args'))
        with open(os.path.join(self.out, 'image-upload.bin'), 'rb') as f:
            self.assertEqual(b'FAKE-DOCKER-SAVE %s\n' % tag.encode(),
                             f.read())
        self.assertIn('sudo docker save %s' % tag, calls)
        show = [c for c in calls if ' image show busybox' in c]
        self.assertEqual(1, len(show), calls)
        self.assertLess(calls.index(show[0]),
                        calls.index('sudo docker save %s' % tag))

    def test_existing_glance_image_is_kept(self):
        self.run_plugin(('stack', 'extra'), STUB_IMAGE_EXISTS='1')
        calls = self.calls()
        self.assertFalse([c for c in calls if 'docker' in c.split()[:2]],
                         calls)
        self.assertFalse([c for c in calls if ' image create ' in c], calls)

    def test_upload_can_be_turned_off(self):
        self.run_plugin(('stack', 'install'), ('stack', 'extra'),
                        NOVA_DOCKER_UPLOAD_IMAGE='False',
                        ENABLED_SERVICES='g-api')
        self.assertEqual([], self.calls())

    def test_no_upload_without_glance(self):
        self.run_plugin(('stack', 'extra'), ENABLED_SERVICES='n-cpu')
        self.assertEqual([], self.calls())

    def test_failed_import_stops_stack(self):
        # A docker import failure must not go on to upload anything.
        self.write(os.path.join(self.tmp, 'fail-import.sh'), """
            function docker {
                stub_record "docker $*"
                [[ "$1" != import ]]
            }
            """)
        script = ('source "%s"; source "%s/devstack/settings"; '
                  'source "%s/fail-import.sh"; '
                  'source "%s/devstack/plugin.sh" stack extra'
                  % (STUBS, REPO, self.tmp, REPO))
        result = subprocess.run(['bash', '-c', script], env=self.env,
                                capture_output=True, text=True, timeout=120)
        self.assertNotEqual(0, result.returncode)
        self.assertIn('docker import', result.stderr)
        self.assertFalse([c for c in self.calls() if ' image create ' in c])

    def test_failed_build_stops_stack(self):
        # The builder failing (no busybox there) is a failed import too.
        result = self.run_plugin(('stack', 'extra'), check=False,
                                 NOVA_DOCKER_BUSYBOX=os.path.join(
                                     self.tmp, 'no-busybox'))
        self.assertNotEqual(0, result.returncode)
        self.assertIn('docker import', result.stderr)
        self.assertFalse([c for c in self.calls() if ' image create ' in c])


class TestTempestConfig(PluginTestCase):

    def test_scenario_tests_upload_the_busybox_image(self):
        self.write(self.env['TEMPEST_CONFIG'], """
            [compute]
            image_ref = 1234
            """)
        self.run_plugin(('stack', 'test-config'))
        tempest = self.ini(self.env['TEMPEST_CONFIG'])
        tarball = tempest.get('scenario', 'img_file')
        self.assertEqual(os.path.join(self.env['DATA_DIR'], 'nova-docker',
                                      'busybox.tar'), tarball)
        with open(tarball, 'rb') as f:
            self.assertEqual(b'FAKE-DOCKER-SAVE nova-docker/busybox:latest\n',
                             f.read())
        self.assertEqual('docker',
                         tempest.get('scenario', 'img_container_format'))
        self.assertEqual('raw', tempest.get('scenario', 'img_disk_format'))
        self.assertEqual('1234', tempest.get('compute', 'image_ref'))
        # The image was there already (built at "stack extra").
        self.assertFalse(os.path.exists(os.path.join(
            self.out, 'docker-import.tar')))

    def test_image_built_when_this_node_has_none(self):
        self.run_plugin(('stack', 'test-config'), STUB_LOCAL_IMAGE='0')
        self.assertTrue(os.path.exists(os.path.join(
            self.out, 'docker-import.tar')))
        self.assertTrue(os.path.exists(os.path.join(
            self.env['DATA_DIR'], 'nova-docker', 'busybox.tar')))

    def test_no_tempest_no_change(self):
        self.run_plugin(('stack', 'test-config'), ENABLED_SERVICES='n-cpu')
        self.assertFalse(os.path.exists(self.env['TEMPEST_CONFIG']))
        self.assertEqual([], self.calls())


class TestClean(PluginTestCase):

    def test_removes_driver_containers_images_and_filters(self):
        self.run_plugin(('stack', 'post-config'))
        filters = os.path.join(self.etc('nova'), 'rootwrap.d',
                               'docker.filters')
        self.assertTrue(os.path.exists(filters))
        self.run_plugin(('unstack',), ('clean',), STUB_DOCKER_PS='c1 c2',
                        STUB_DOCKER_IMAGES='i1')
        calls = self.calls()
        # Only what carries the driver's role label or its image names.
        self.assertIn('sudo docker ps -aq --filter label=%s'
                      % guest.LABEL_ROLE, calls)
        self.assertIn('sudo docker rm -f c1 c2', calls)
        self.assertIn('sudo docker images -q --filter reference=nova-docker/*',
                      calls)
        self.assertTrue(images.GLANCE_REPOSITORY.startswith('nova-docker/'))
        self.assertTrue(nd_conf.CONF.docker.sandbox_image.startswith(
            'nova-docker/'))
        self.assertIn('sudo docker rmi -f i1', calls)
        self.assertFalse(os.path.exists(filters))

    def test_nothing_to_remove(self):
        self.run_plugin(('clean',))
        calls = self.calls()
        self.assertIn('sudo docker ps -aq --filter label=%s'
                      % guest.LABEL_ROLE, calls)
        self.assertFalse([c for c in calls if c.startswith(
            ('sudo docker rm', 'sudo docker rmi'))], calls)


class TestRealDocker(PluginTestCase):
    """The image the plugin builds, on the real engine."""

    def test_built_image_runs_and_stops_gracefully(self):
        docker_fixtures.require_functional(self)
        api = docker_fixtures.docker_api()
        tag = 'nova-docker-test/devstack-%s:latest' % uuid.uuid4().hex[:12]
        self.addCleanup(self._remove_image, api, tag)
        self.run_plugin(('stack', 'extra'), STUB_REAL_DOCKER='1',
                        NOVA_DOCKER_IMAGE_TAG=tag)
        # What reached "openstack image create" is a docker save tarball
        # of exactly that image.
        with open(os.path.join(self.out, 'image-upload.bin'), 'rb') as f:
            saved = f.read()
        with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
            manifest = json.load(tar.extractfile('manifest.json'))
        self.assertEqual(1, len(manifest))
        self.assertEqual([tag], manifest[0]['RepoTags'])

        container = api.create_container(
            tag, labels={docker_fixtures.TEST_LABEL: '1'},
            host_config=api.create_host_config(network_mode='none'))
        self.addCleanup(api.remove_container, container['Id'], force=True)
        api.start(container['Id'])
        logs = b''
        deadline = time.monotonic() + 60
        while b'nova-docker busybox up on' not in logs:
            if time.monotonic() > deadline:
                self.fail('no start-up line in the console log: %r' % logs)
            time.sleep(0.2)
            logs = api.logs(container['Id'])
        self.assertTrue(api.inspect_container(
            container['Id'])['State']['Running'])
        # SIGTERM ends it (exit 0), rather than Docker's SIGKILL (137).
        api.stop(container['Id'], timeout=60)
        state = api.inspect_container(container['Id'])['State']
        self.assertEqual(0, state['ExitCode'])

    @staticmethod
    def _remove_image(api, tag):
        try:
            api.remove_image(tag, force=True)
        except Exception:
            pass
