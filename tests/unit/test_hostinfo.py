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

"""hostinfo: docker info, statvfs, /proc -> what Nova wants."""

import os
import tempfile

import docker.errors
import fixtures
import nova.conf  # noqa: F401  (registers instances_path)
from nova.objects import fields
import os_resource_classes as orc
from oslo_config import fixture as config_fixture
from oslo_serialization import jsonutils
from oslo_utils import units
import testtools

from novadocker import conf
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import hostinfo
from tests.fixtures import fake_docker


class HostInfoTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.engine = fake_docker.FakeEngine()
        self.root = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, self.root)
        self.engine.api.info.return_value = {
            'NCPU': 6, 'MemTotal': 8 * units.Gi, 'Architecture': 'x86_64',
            'ServerVersion': '28.1.3', 'DockerRootDir': self.root}

    def test_read_host(self):
        host = hostinfo.read_host(self.engine.api)
        stat = os.statvfs(self.root)
        self.assertEqual(6, host.vcpus)
        self.assertEqual(8192, host.memory_mb)
        self.assertEqual(stat.f_blocks * stat.f_frsize // units.Gi,
                         host.disk_gb)
        self.assertEqual(28001003, host.hypervisor_version)
        self.assertEqual(1, self.engine.api.info.call_count)

    def test_data_root_not_visible_falls_back_to_instances_path(self):
        self.engine.api.info.return_value['DockerRootDir'] = os.path.join(
            self.root, 'not-mounted-here')
        cfg = self.useFixture(config_fixture.Config(conf.CONF))
        cfg.config(instances_path=self.root)
        logger = self.useFixture(fixtures.FakeLogger())
        host = hostinfo.read_host(self.engine.api)
        stat = os.statvfs(self.root)
        self.assertEqual(stat.f_blocks * stat.f_frsize // units.Gi,
                         host.disk_gb)
        self.assertIn('not-mounted-here', logger.output)

    def test_version_forms(self):
        for version, number in (('20.10.24+dfsg1', 20010024),
                                ('28.0', 28000000), ('dev', 0)):
            host = hostinfo.HostResources(1, 1, 0, 1, 0, 'x86_64', version,
                                          '/')
            self.assertEqual(number, host.hypervisor_version, version)

    def test_resource_dict(self):
        res = hostinfo.resource_dict(hostinfo.read_host(self.engine.api),
                                     'node-1')
        for key in ('vcpus', 'memory_mb', 'local_gb', 'cpu_info',
                    'vcpus_used', 'memory_mb_used', 'local_gb_used',
                    'numa_topology', 'hypervisor_hostname'):
            self.assertIn(key, res)
        self.assertEqual('docker', res['hypervisor_type'])
        self.assertEqual('node-1', res['hypervisor_hostname'])
        self.assertEqual([('x86_64', 'docker', fields.VMMode.EXE)],
                         res['supported_instances'])
        self.assertEqual(6, jsonutils.loads(
            res['cpu_info'])['topology']['cores'])

    def test_inventory(self):
        cfg = self.useFixture(config_fixture.Config(conf.CONF))
        cfg.config(reserved_host_cpus=1, reserved_host_memory_mb=512)
        host = hostinfo.read_host(self.engine.api)
        ratios = {orc.VCPU: 4.0, orc.MEMORY_MB: 1.5, orc.DISK_GB: 1.0}
        found = hostinfo.inventory(host, ratios, 3)
        self.assertEqual({'total': 6, 'min_unit': 1, 'max_unit': 6,
                          'step_size': 1, 'allocation_ratio': 4.0,
                          'reserved': 1}, found[orc.VCPU])
        self.assertEqual((8192, 1.5, 512), (
            found[orc.MEMORY_MB]['total'],
            found[orc.MEMORY_MB]['allocation_ratio'],
            found[orc.MEMORY_MB]['reserved']))
        self.assertEqual((host.disk_gb, host.disk_gb, 3), (
            found[orc.DISK_GB]['total'], found[orc.DISK_GB]['max_unit'],
            found[orc.DISK_GB]['reserved']))

    def test_uptime_from_proc(self):
        with open('/proc/uptime') as uptime:
            before = float(uptime.read().split()[0])
        seconds = int(hostinfo.uptime().split()[1])
        self.assertGreaterEqual(seconds, int(before))
        self.assertRegex(hostinfo.uptime(), r'^up \d+ seconds$')

    def test_engine_features(self):
        info = self.engine.api.info.return_value
        info.update({'Runtimes': {'runc': {}, 'crun': {}},
                     'SecurityOptions': ['name=seccomp', 'name=userns'],
                     'LiveRestoreEnabled': True})
        engine = hostinfo.read_engine(self.engine.api)
        self.assertEqual({'runc', 'crun'}, engine.runtimes)
        self.assertTrue(engine.userns_remap)
        self.assertTrue(engine.live_restore)
        del info['SecurityOptions'], info['LiveRestoreEnabled']
        engine = hostinfo.read_engine(self.engine.api)
        self.assertFalse(engine.userns_remap)
        self.assertFalse(engine.live_restore)

    def test_runtime_traits(self):
        cfg = self.useFixture(config_fixture.Config(conf.CONF))
        cfg.config(allowed_runtimes=['crun', 'runsc'], group='docker')
        self.engine.api.info.return_value.update(
            {'Runtimes': {'runc': {}, 'crun': {}}, 'DefaultRuntime': 'runc'})
        self.assertEqual({'CUSTOM_DOCKER_RUNTIME_CRUN',
                          'CUSTOM_DOCKER_RUNTIME_RUNC'},
                         hostinfo.runtime_traits(self.engine.api))


class EngineInfoTest(testtools.TestCase):
    """docker info once per resource-tracker pass."""

    def setUp(self):
        super().setUp()
        self.engine = fake_docker.FakeEngine()
        self.engine.api.info.return_value = {'NCPU': 2}
        self.now = 100.0
        self.info = hostinfo.EngineInfo(lambda: self.engine.api,
                                        max_age=60.0,
                                        clock=lambda: self.now)

    def test_reused_within_max_age_then_read_again(self):
        self.assertEqual({'NCPU': 2}, self.info.get())
        self.now += 59
        self.info.get()
        self.assertEqual(1, self.engine.api.info.call_count)
        self.now += 1
        self.info.get()
        self.assertEqual(2, self.engine.api.info.call_count)

    def test_fresh_and_forget_read_again(self):
        self.info.get()
        self.engine.api.info.return_value = {'NCPU': 4}
        self.assertEqual({'NCPU': 4}, self.info.get(fresh=True))
        self.engine.api.info.return_value = {'NCPU': 8}
        self.info.forget()
        self.assertEqual({'NCPU': 8}, self.info.get())
        self.assertEqual(3, self.engine.api.info.call_count)

    def test_engine_down_is_the_typed_error_and_nothing_kept(self):
        self.engine.api.info.side_effect = \
            docker.errors.APIError('down')
        self.assertRaises(docker_client.DockerOperationFailed,
                          self.info.get)
        self.engine.api.info.side_effect = None
        self.assertEqual({'NCPU': 2}, self.info.get())
