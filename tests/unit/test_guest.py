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

"""guest.py mapping logic against a specced Docker client."""

import io
import os
import tarfile
import threading
from unittest import mock

import docker.errors
import fixtures
from nova.compute import power_state
from nova import exception
from nova import objects
from nova.virt import fake as fake_virt
from oslo_config import fixture as config_fixture
import testtools

from novadocker import conf
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import guest
from tests.fixtures import fake_docker
from tests.fixtures import objects as obj_fixtures

CONF = conf.CONF


class PowerStateTest(testtools.TestCase):

    def test_each_docker_status(self):
        for state, statuses in (
                (power_state.RUNNING, ('running', 'restarting')),
                (power_state.SHUTDOWN, ('created', 'removing', 'exited')),
                (power_state.PAUSED, ('paused',)),
                (power_state.CRASHED, ('dead',))):
            for status in statuses:
                self.assertEqual(state, guest.power_state_of(
                    {'Status': status, 'OOMKilled': False}), status)

    def test_oom_killed_is_crashed(self):
        self.assertEqual(power_state.CRASHED, guest.power_state_of(
            {'Status': 'exited', 'OOMKilled': True}))

    def test_unknown_status_is_nostate(self):
        self.assertEqual(power_state.NOSTATE,
                         guest.power_state_of({'Status': 'bogus'}))
        self.assertEqual(power_state.NOSTATE, guest.power_state_of({}))


class CommandOverrideTest(testtools.TestCase):

    def _meta(self, **props):
        return objects.ImageMeta.from_dict(
            {'id': 'x', 'container_format': 'docker', 'properties': props})

    def test_os_command_line_is_split_like_a_shell(self):
        self.assertEqual(['/bin/sh', '-c', 'echo hi; sleep 9'],
                         guest.command_override(self._meta(
                             os_command_line='/bin/sh -c "echo hi; sleep 9"')))

    def test_absent_or_empty_keeps_image_cmd(self):
        self.assertIsNone(guest.command_override(self._meta()))
        self.assertIsNone(guest.command_override(
            self._meta(os_command_line='')))


class GuestsTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.cfg = self.useFixture(config_fixture.Config(CONF))
        self.engine = fake_docker.FakeEngine()
        self.api = self.engine.api
        self.engine.images['img:1'] = 'sha256:img'
        self.engine.images['sandbox:1'] = 'sha256:sandbox'
        self.guests = guest.Guests(self.api, 'host-a')

    def _spawned(self, **kwargs):
        return self._spawned_instance(obj_fixtures.instance(**kwargs))

    def _spawned_instance(self, instance):
        sandbox = self.guests.create_sandbox(instance, 'sandbox:1')
        self.guests.create_workload(instance, 'img:1', objects.ImageMeta(
            id='x', properties=objects.ImageMetaProps()), sandbox)
        self.guests.get(instance).start()
        return instance

    def test_workload_host_config_from_flavor(self):
        self.cfg.config(pids_limit=321, cpu_period_us=50000, group='docker')
        instance = obj_fixtures.instance(vcpus=3, memory_mb=512)
        config = self.guests.workload_host_config(instance, 'sbx')
        self.assertEqual(512 * 1024 * 1024, config['Memory'])
        self.assertEqual(config['Memory'], config['MemorySwap'])
        self.assertEqual(3 * 50000, config['CpuQuota'])
        self.assertEqual(50000, config['CpuPeriod'])
        self.assertEqual(3 * 1024, config['CpuShares'])
        self.assertEqual(321, config['PidsLimit'])
        self.assertEqual(['no-new-privileges'], config['SecurityOpt'])
        self.assertEqual(['MKNOD', 'SETFCAP'], config['CapDrop'])
        self.assertEqual(500, config['OomScoreAdj'])
        self.assertEqual({'Type': 'json-file',
                          'Config': {'max-size': '10m', 'max-file': '3'}},
                         config['LogConfig'])
        self.assertNotIn('Runtime', config)
        self.assertFalse(config.get('Privileged', False))
        self.assertEqual({'Name': 'no'}, config['RestartPolicy'])
        self.assertEqual('container:sbx', config['NetworkMode'])

    def test_cpu_shares_only_when_quota_disabled(self):
        self.cfg.config(cpu_quota=False, group='docker')
        config = self.guests.workload_host_config(
            obj_fixtures.instance(vcpus=2), 'sbx')
        self.assertNotIn('CpuQuota', config)
        self.assertNotIn('CpuPeriod', config)
        self.assertEqual(2048, config['CpuShares'])

    def test_sandbox_is_locked_down(self):
        instance = obj_fixtures.instance(hostname='web-1')
        sandbox_id = self.guests.create_sandbox(instance, 'sandbox:1',
                                                ['10.0.0.2'], ['example'])
        created = self.engine.containers[sandbox_id]
        config = created['host_config']
        self.assertEqual('none', config['NetworkMode'])
        self.assertEqual(['ALL'], config['CapDrop'])
        self.assertEqual(['no-new-privileges'], config['SecurityOpt'])
        self.assertEqual({'Name': 'no'}, config['RestartPolicy'])
        self.assertTrue(config['ReadonlyRootfs'])
        self.assertEqual(400, config['OomScoreAdj'])
        self.assertEqual('json-file', config['LogConfig']['Type'])
        self.assertEqual(['10.0.0.2'], config['Dns'])
        self.assertEqual('web-1', created['kwargs']['hostname'])
        self.assertEqual('nova-%s-sandbox' % instance.uuid, created['name'])
        self.assertTrue(created['running'])
        self.assertEqual({guest.LABEL_INSTANCE: instance.uuid,
                          guest.LABEL_HOST: 'host-a',
                          guest.LABEL_ROLE: guest.ROLE_SANDBOX,
                          guest.LABEL_NAME: instance.name},
                         created['labels'])

    def test_workload_named_labelled_and_command_override(self):
        instance = obj_fixtures.instance()
        meta = objects.ImageMeta.from_dict(
            {'id': 'x', 'properties': {'os_command_line': 'sleep 5'}})
        cid = self.guests.create_workload(instance, 'img:1', meta, 'sbx')
        created = self.engine.containers[cid]
        self.assertEqual('nova-' + instance.uuid, created['name'])
        self.assertEqual(['sleep', '5'], created['command'])
        self.assertEqual({guest.LABEL_INSTANCE: instance.uuid,
                          guest.LABEL_HOST: 'host-a',
                          guest.LABEL_ROLE: guest.ROLE_WORKLOAD,
                          guest.LABEL_NAME: instance.name},
                         created['labels'])
        self.assertFalse(created['running'])

    def test_listing_is_one_call_filtered_by_host(self):
        instances = [self._spawned() for _ in range(3)]
        # Someone else's containers on the same engine.
        self.engine.containers['other'] = dict(
            name='kolla_mariadb', labels={}, running=True, paused=False)
        self.engine.containers['other-host'] = dict(
            name='other-host-vm', running=True, paused=False,
            labels={guest.LABEL_INSTANCE: 'u', guest.LABEL_HOST: 'host-b',
                    guest.LABEL_ROLE: guest.ROLE_WORKLOAD})
        driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        driver._api = self.api
        driver._host = 'host-a'

        self.api.reset_mock()
        uuids = driver.list_instance_uuids()
        self.assertEqual(sorted(i.uuid for i in instances), uuids)
        self.assertEqual(1, len(self.api.method_calls))
        filters = self.api.containers.call_args.kwargs['filters']['label']
        self.assertIn('%s=host-a' % guest.LABEL_HOST, filters)
        self.assertTrue(self.api.containers.call_args.kwargs['all'])

        self.api.reset_mock()
        self.assertEqual(sorted(i.name for i in instances),
                         driver.list_instances())
        self.assertEqual(1, len(self.api.method_calls))

    def test_list_names_reads_the_label_else_the_old_name(self):
        new = self._spawned()
        # A workload made before the name label, named after the instance.
        self.engine.containers['old'] = dict(
            name='instance-0000002a', running=True, paused=False,
            labels={guest.LABEL_INSTANCE: 'u', guest.LABEL_HOST: 'host-a',
                    guest.LABEL_ROLE: guest.ROLE_WORKLOAD})
        self.assertEqual(sorted([new.name, 'instance-0000002a']),
                         self.guests.list_names())

    def test_same_instance_name_two_uuids_two_containers(self):
        first = self._spawned(display_name='x')
        second = obj_fixtures.instance()
        second.id = first.id
        self.assertEqual(first.name, second.name)
        self._spawned_instance(second)
        self.assertIsNotNone(self.guests.find(first))
        self.assertIsNotNone(self.guests.find(second))

    def test_stop_unfreezes_first_and_passes_timeout(self):
        instance = self._spawned()
        found = self.guests.get(instance)
        found.pause()
        found.stop(17)
        self.api.unpause.assert_called_once()
        self.api.stop.assert_called_once_with(mock.ANY, timeout=17)
        self.assertEqual(power_state.SHUTDOWN,
                         self.guests.get(instance).power_state)

    def test_stop_with_no_timeout_kills_without_asking(self):
        instance = self._spawned()
        self.guests.get(instance).stop(0)
        self.api.kill.assert_called_once_with(mock.ANY)
        self.api.stop.assert_not_called()
        self.assertEqual(power_state.SHUTDOWN,
                         self.guests.get(instance).power_state)

    def test_kill_of_a_workload_that_just_exited_is_fine(self):
        instance = self._spawned()
        found = self.guests.get(instance)
        # Exits on its own between the inspect and the kill: 409.
        self.api.kill.side_effect = fake_docker.api_error(
            docker.errors.APIError, 'Container x is not running', 409)
        found.stop(0)
        self.api.kill.side_effect = fake_docker.api_error(
            docker.errors.APIError, 'cgroup trouble', 500)
        self.assertRaises(docker_client.DockerOperationFailed, found.stop, 0)

    def test_stop_of_a_stopped_workload_does_not_kill(self):
        instance = self._spawned()
        found = self.guests.get(instance)
        found.stop(5)
        self.guests.get(instance).stop(0)
        self.api.kill.assert_not_called()

    def test_missing_container_is_instance_not_found(self):
        instance = obj_fixtures.instance()
        self.assertIsNone(self.guests.find(instance))
        self.assertRaises(exception.InstanceNotFound, self.guests.get,
                          instance)
        empty = self.guests.lookup(instance)
        for call in (empty.inspect, empty.start, empty.pause, empty.stats,
                     lambda: empty.stop(1), lambda: empty.console_log(2048),
                     lambda: empty.pid):
            self.assertRaises(exception.InstanceNotFound, call)

    def test_remove_is_idempotent_and_scoped(self):
        instance = self._spawned()
        other = self._spawned()
        self.guests.remove(instance)
        self.guests.remove(instance)
        self.assertIsNone(self.guests.find(instance))
        self.assertIsNone(self.guests.find(instance, guest.ROLE_SANDBOX))
        self.assertIsNotNone(self.guests.find(other))
        self.assertEqual(2, len(self.engine.containers))

    def test_console_log_widens_until_budget_is_full(self):
        instance = self._spawned()
        log = b''.join(b'%05d\n' % i for i in range(20000))   # 6 bytes/line

        def logs(container, stdout=True, stderr=True, tail='all', **kw):
            return b''.join(log.splitlines(True)[-tail:])
        self.api.logs.side_effect = logs
        out = self.guests.get(instance).console_log(4096)
        self.assertEqual(log[-4096:], out)
        # It started small and never asked for the whole log.
        tails = [c.kwargs['tail'] for c in self.api.logs.call_args_list]
        self.assertEqual(sorted(tails), tails)
        self.assertLess(tails[-1], 20000)

    def test_console_log_short_log_returned_whole(self):
        instance = self._spawned()
        self.api.logs.return_value = b'hello\nworld\n'
        self.assertEqual(b'hello\nworld\n',
                         self.guests.get(instance).console_log(4096))
        self.assertEqual(1, self.api.logs.call_count)


class HardeningOptionsTest(testtools.TestCase):
    """[docker] hardening options -> the host config Docker gets."""

    def setUp(self):
        super().setUp()
        self.cfg = self.useFixture(config_fixture.Config(CONF))
        self.engine = fake_docker.FakeEngine()
        self.api = self.engine.api
        self.guests = guest.Guests(self.api, 'host-a')

    def _config(self, runtime=None):
        return self.guests.workload_host_config(
            obj_fixtures.instance(), 'sbx', runtime)

    def test_log_rotation_options(self):
        self.cfg.config(log_max_size='512k', log_max_files=7,
                        group='docker')
        self.assertEqual({'Type': 'json-file',
                          'Config': {'max-size': '512k', 'max-file': '7'}},
                         self._config()['LogConfig'])

    def test_log_size_syntax_is_checked(self):
        for bad in ('10 m', '-1', '0', '10mb', 'lots'):
            self.assertRaises(ValueError, self.cfg.config,
                              log_max_size=bad, group='docker')

    def test_cap_drop_normalised(self):
        self.cfg.config(cap_drop=['mknod', 'Net_Raw', 'MKNOD'],
                        group='docker')
        self.assertEqual(['MKNOD', 'NET_RAW'], self._config()['CapDrop'])

    def test_cap_drop_unknown_name_refused(self):
        self.assertRaises(ValueError, self.cfg.config,
                          cap_drop=['MKNOD', 'NO_SUCH_CAP'], group='docker')

    def test_empty_cap_drop_keeps_docker_defaults(self):
        self.cfg.config(cap_drop=[], group='docker')
        self.assertNotIn('CapDrop', self._config())

    def test_oom_score_adj_options(self):
        self.cfg.config(oom_score_adj=900, sandbox_oom_score_adj=100,
                        group='docker')
        self.assertEqual(900, self._config()['OomScoreAdj'])
        self.engine.images['sandbox:1'] = 'sha256:sandbox'
        sandbox = self.guests.create_sandbox(obj_fixtures.instance(),
                                             'sandbox:1')
        self.assertEqual(
            100, self.engine.containers[sandbox]['host_config'][
                'OomScoreAdj'])

    def test_runtime_in_host_config(self):
        self.assertEqual('crun', self._config('crun')['Runtime'])


class RuntimeCheckTest(testtools.TestCase):
    """Which OCI runtime a workload gets, and when it is refused."""

    def setUp(self):
        super().setUp()
        self.cfg = self.useFixture(config_fixture.Config(CONF))
        self.engine = fake_docker.FakeEngine()
        self.api = self.engine.api
        self.api.info.return_value = {
            'Runtimes': {'runc': {}, 'crun': {}, 'io.containerd.runc.v2': {}},
            'DefaultRuntime': 'runc'}
        self.guests = guest.Guests(self.api, 'host-a')

    def _instance(self, spec=None, image_prop=None):
        instance = obj_fixtures.instance()
        if spec is not None:
            instance.flavor.extra_specs = {guest.EXTRA_SPEC_RUNTIME: spec}
        if image_prop is not None:
            instance.system_metadata = {'image_docker_runtime': image_prop}
        return instance

    def test_nothing_asked_no_engine_call(self):
        self.assertIsNone(self.guests.check_runtime(self._instance()))
        self.api.info.assert_not_called()

    def test_allowed_and_present(self):
        self.cfg.config(allowed_runtimes=['crun'], group='docker')
        self.assertEqual('crun',
                         self.guests.check_runtime(self._instance('crun')))

    def test_engine_default_needs_no_allow_list(self):
        self.assertIsNone(self.guests.check_runtime(self._instance('runc')))

    def test_not_allowed_refused_naming_what_is_available(self):
        exc = self.assertRaises(guest.RuntimeUnavailable,
                                self.guests.check_runtime,
                                self._instance('crun'))
        self.assertIn('crun', str(exc))
        self.assertIn('flavor', str(exc))
        self.assertIn('allowed_runtimes', str(exc))
        self.assertIn('Available: runc', str(exc))

    def test_allowed_but_absent_refused(self):
        self.cfg.config(allowed_runtimes=['crun', 'runsc'], group='docker')
        exc = self.assertRaises(guest.RuntimeUnavailable,
                                self.guests.check_runtime,
                                self._instance('runsc'))
        self.assertIn('runsc', str(exc))
        self.assertIn('no such runtime', str(exc))
        self.assertIn('Available: crun, runc', str(exc))

    def test_image_property_ignored_unless_enabled(self):
        self.cfg.config(allowed_runtimes=['crun'], group='docker')
        instance = self._instance(image_prop='crun')
        self.assertIsNone(self.guests.check_runtime(instance))
        self.cfg.config(image_runtime_property=True, group='docker')
        self.assertEqual('crun', self.guests.check_runtime(instance))

    def test_image_property_limited_by_allow_list(self):
        self.cfg.config(image_runtime_property=True, group='docker')
        exc = self.assertRaises(guest.RuntimeUnavailable,
                                self.guests.check_runtime,
                                self._instance(image_prop='crun'))
        self.assertIn('image', str(exc))

    def test_flavor_wins_over_image(self):
        self.cfg.config(image_runtime_property=True,
                        allowed_runtimes=['crun'], group='docker')
        self.assertIsNone(self.guests.check_runtime(
            self._instance(spec='runc', image_prop='crun')))

    def test_refusal_aborts_the_build_rather_than_rescheduling(self):
        # Nova's manager turns InvalidInput into BuildAbortException: the
        # fault keeps this message.
        self.assertTrue(issubclass(guest.RuntimeUnavailable,
                                   exception.InvalidInput))

    def test_traits_name_usable_runtimes(self):
        self.cfg.config(allowed_runtimes=['crun', 'runsc'], group='docker')
        info = self.api.info.return_value
        self.assertEqual(['crun', 'runc'], guest.usable_runtimes(info))
        self.assertEqual('CUSTOM_DOCKER_RUNTIME_IO_CONTAINERD_RUNC_V2',
                         guest.runtime_trait('io.containerd.runc.v2'))

    def test_spawn_refused_before_anything_is_created(self):
        driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        driver._api = self.api
        driver._host = 'host-a'
        instance = self._instance('runsc')
        meta = objects.ImageMeta.from_dict(
            {'id': instance.image_ref, 'container_format': 'docker',
             'disk_format': 'raw', 'properties': {}})
        self.assertRaises(guest.RuntimeUnavailable, driver.spawn,
                          None, instance, meta, [], None, {}, [])
        self.api.create_container.assert_not_called()
        self.api.load_image.assert_not_called()
        self.assertEqual({}, self.engine.containers)


class EphemeralDiskTest(testtools.TestCase):
    """A flavor's ephemeral disk is refused: a container has one disk."""

    def test_no_ephemeral_passes(self):
        guest.check_flavor(obj_fixtures.flavor(ephemeral_gb=0))

    def test_ephemeral_refused_naming_flavor_and_size(self):
        exc = self.assertRaises(guest.EphemeralDiskUnsupported,
                                guest.check_flavor,
                                obj_fixtures.flavor(name='m1.eph',
                                                    ephemeral_gb=2))
        self.assertIn('m1.eph', str(exc))
        self.assertIn('2 GB', str(exc))
        self.assertIn('ephemeral_gb = 0', str(exc))
        # Nova aborts the build with this fault rather than rescheduling.
        self.assertIsInstance(exc, exception.InvalidInput)


class InitAndLxcfsTest(testtools.TestCase):
    """Docker's init per option and image property; LXCFS binds."""

    def setUp(self):
        super().setUp()
        self.cfg = self.useFixture(config_fixture.Config(CONF))
        self.engine = fake_docker.FakeEngine()
        self.guests = guest.Guests(self.engine.api, 'host-a')
        self.lxcfs = self.useFixture(fixtures.TempDir()).path
        self.cfg.config(lxcfs_path=self.lxcfs, group='docker')

    def _config(self, image_init=None):
        instance = obj_fixtures.instance()
        if image_init is not None:
            instance.system_metadata = {'image_docker_init': image_init}
        return self.guests.workload_host_config(instance, 'sbx')

    def test_init_on_by_default(self):
        self.assertIs(True, self._config()['Init'])
        self.assertIs(True, self._config('yes')['Init'])

    def test_image_with_its_own_init_opts_out(self):
        for value in ('false', 'False', 'no', '0', 'off'):
            self.assertIs(False, self._config(value)['Init'], value)

    def test_option_off_wins(self):
        self.cfg.config(init=False, group='docker')
        self.assertIs(False, self._config()['Init'])
        self.assertIs(False, self._config('true')['Init'])

    def test_no_lxcfs_mount_no_binds_logged_once(self):
        logs = self.useFixture(fixtures.FakeLogger(name=guest.__name__))
        self.assertNotIn('Binds', self._config())
        self.assertNotIn('Binds', self._config())
        self.assertEqual(1, logs.output.count('LXCFS is not mounted'))
        self.assertIn(self.lxcfs, logs.output)

    def test_lxcfs_off_no_check(self):
        self.cfg.config(lxcfs_path='', group='docker')
        ismount = self.useFixture(fixtures.MockPatch(
            'os.path.ismount', autospec=True)).mock
        self.assertNotIn('Binds', self._config())
        ismount.assert_not_called()

    def test_lxcfs_mounted_files_bound_read_only(self):
        for name in ('proc/meminfo', 'proc/cpuinfo', 'proc/uptime',
                     'sys/devices/system/cpu/online'):
            path = os.path.join(self.lxcfs, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, 'w').close()
        ismount = self.useFixture(fixtures.MockPatch(
            'os.path.ismount', autospec=True, return_value=True)).mock
        self.assertEqual(
            ['%s/proc/cpuinfo:/proc/cpuinfo:ro' % self.lxcfs,
             '%s/proc/meminfo:/proc/meminfo:ro' % self.lxcfs,
             '%s/proc/uptime:/proc/uptime:ro' % self.lxcfs,
             '%s/sys/devices/system/cpu:/sys/devices/system/cpu:ro'
             % self.lxcfs],
            self._config()['Binds'])
        ismount.assert_called_with(self.lxcfs)


class KeyInjectionUnitTest(testtools.TestCase):
    """inject_keys against a specced client: what it sends, and that it
    never pulls a huge file out of a container."""

    def setUp(self):
        super().setUp()
        self.engine = fake_docker.FakeEngine()
        self.api = self.engine.api
        self.guests = guest.Guests(self.api, 'host-a')
        self.instance = obj_fixtures.instance(key_data='ssh-ed25519 K a')

    def _guest(self, instance) -> guest.Guest:
        return guest.Guest(self.guests, instance,
                           [(guest.ROLE_WORKLOAD, 'cid')])

    def _sent(self) -> dict:
        (cid, path, data), _ = self.api.put_archive.call_args
        self.assertEqual(('cid', '/'), (cid, path))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return {m.name: (oct(m.mode), m.uid, m.gid,
                             tar.extractfile(m).read() if m.isfile()
                             else None) for m in tar.getmembers()}

    def test_huge_existing_file_not_read(self):
        stream = mock.MagicMock()
        self.api.get_archive.return_value = (stream, {'size': 2 ** 30})
        self._guest(self.instance).inject_keys()
        stream.__iter__.assert_not_called()
        stream.close.assert_called_once_with()
        self.assertEqual(
            {'root/.ssh': ('0o700', 0, 0, None),
             'root/.ssh/authorized_keys': ('0o600', 0, 0,
                                           b'ssh-ed25519 K a\n')},
            self._sent())

    def test_absent_file_and_no_key(self):
        self.api.get_archive.side_effect = docker.errors.NotFound('gone')
        self._guest(self.instance).inject_keys()
        self.assertEqual(b'ssh-ed25519 K a\n',
                         self._sent()['root/.ssh/authorized_keys'][3])
        self.api.put_archive.reset_mock()
        self._guest(obj_fixtures.instance(key_data=None)).inject_keys()
        self._guest(obj_fixtures.instance()).inject_keys()
        self.api.put_archive.assert_not_called()


class GuestTest(testtools.TestCase):
    """The per-instance handle: one list call, typed state, reload."""

    def setUp(self):
        super().setUp()
        self.engine = fake_docker.FakeEngine()
        self.api = self.engine.api
        self.engine.images['img:1'] = 'sha256:img'
        self.engine.images['sandbox:1'] = 'sha256:sandbox'
        self.guests = guest.Guests(self.api, 'host-a')
        self.instance = obj_fixtures.instance()
        self.sandbox_id = self.guests.create_sandbox(self.instance,
                                                     'sandbox:1')
        self.workload_id = self.guests.create_workload(
            self.instance, 'img:1', objects.ImageMeta(
                id='x', properties=objects.ImageMetaProps()),
            self.sandbox_id)

    def test_find_is_one_list_call_for_both_containers(self):
        self.api.reset_mock()
        found = self.guests.find(self.instance)
        self.assertEqual(self.workload_id, found.workload_id)
        self.assertEqual(self.sandbox_id, found.sandbox_id)
        self.assertEqual(['containers'],
                         [c[0] for c in self.api.method_calls])
        filters = self.api.containers.call_args.kwargs['filters']['label']
        self.assertIn('%s=%s' % (guest.LABEL_INSTANCE, self.instance.uuid),
                      filters)
        self.assertIn('%s=host-a' % guest.LABEL_HOST, filters)

    def test_find_by_role(self):
        self.assertIsNone(self.guests.find(self.instance, 'rescue'))
        self.assertIsNotNone(self.guests.find(self.instance, None))
        exc = self.assertRaises(exception.InstanceNotFound,
                                self.guests.get, self.instance, 'rescue')
        self.assertIn('no rescue container', str(exc))

    def test_typed_properties_from_the_inspected_state(self):
        found = self.guests.get(self.instance)
        self.assertFalse(found.running)
        self.assertFalse(found.paused)
        self.assertEqual(power_state.SHUTDOWN, found.power_state)
        self.assertEqual(4242, found.pid)     # the running sandbox's
        found.start()
        self.assertTrue(found.running)
        self.assertEqual(power_state.RUNNING, found.power_state)
        found.pause()
        self.assertTrue(found.paused)
        self.assertEqual(power_state.PAUSED, found.power_state)

    def test_state_is_inspected_once_until_changed(self):
        found = self.guests.get(self.instance)
        self.assertFalse(found.running)
        self.assertFalse(found.paused)
        self.assertEqual(1, self.api.inspect_container.call_count)
        # Changed behind its back: the handle still says what it read...
        self.engine.containers[self.workload_id]['running'] = True
        self.assertFalse(found.running)
        # ...until reloaded.
        found.reload()
        self.assertTrue(found.running)
        self.assertEqual(2, self.api.inspect_container.call_count)

    def test_reload_sees_containers_come_and_go(self):
        found = self.guests.get(self.instance)
        self.guests.remove_container(self.sandbox_id, self.instance.uuid)
        self.assertTrue(found.has(guest.ROLE_SANDBOX))
        found.reload()
        self.assertFalse(found.has(guest.ROLE_SANDBOX))
        self.assertRaises(exception.InstanceNotFound, lambda: found.pid)

    def test_unpause_of_a_running_workload_is_a_no_op(self):
        found = self.guests.get(self.instance)
        found.start()
        found.unpause()
        self.api.unpause.assert_not_called()

    def test_remove_forgets_the_containers(self):
        found = self.guests.get(self.instance)
        found.remove()
        self.assertEqual([], found.containers)
        self.assertEqual({}, self.engine.containers)
        found.remove()    # idempotent

    def _remove_side_effect(self, side_effect):
        remove = self.engine.api.remove_container.side_effect
        self.engine.api.remove_container.side_effect = (
            lambda cid, **kwargs: side_effect(remove, cid, **kwargs))

    def test_sandbox_is_removed_alongside_the_workload(self):
        """The workload's removal waits for the sandbox's to begin: one
        after the other, the wait would go unanswered."""
        sandbox_removing = threading.Event()

        def remove(real, cid, **kwargs):
            if cid == self.sandbox_id:
                sandbox_removing.set()
            else:
                self.assertTrue(sandbox_removing.wait(30))
            return real(cid, **kwargs)
        self._remove_side_effect(remove)
        self.guests.get(self.instance).remove()
        self.assertEqual({}, self.engine.containers)

    def test_a_failed_removal_still_removes_the_other(self):
        def remove(real, cid, **kwargs):
            if cid == self.workload_id:
                raise fake_docker.api_error(docker.errors.APIError,
                                            'device busy', 500)
            return real(cid, **kwargs)
        self._remove_side_effect(remove)
        found = self.guests.get(self.instance)
        exc = self.assertRaises(exception.NovaException, found.remove)
        self.assertIn('device busy', str(exc))
        self.assertEqual([self.workload_id], list(self.engine.containers))


class StateCacheTest(testtools.TestCase):
    """get_info(use_cache=True)'s source: one listing for every instance,
    never stale after a change made through Guests or reported."""

    def setUp(self):
        super().setUp()
        self.useFixture(config_fixture.Config(CONF))
        self.engine = fake_docker.FakeEngine()
        self.api = self.engine.api
        self.engine.images['img:1'] = 'sha256:img'
        self.engine.images['sandbox:1'] = 'sha256:sandbox'
        self.now = 1000.0
        self.states = guest.StateCache(max_age=10,
                                       clock=lambda: self.now)
        self.guests = guest.Guests(self.api, 'host-a', states=self.states)
        self.roles = ('rescue', guest.ROLE_WORKLOAD)

    def _spawned(self):
        instance = obj_fixtures.instance()
        sandbox = self.guests.create_sandbox(instance, 'sandbox:1')
        self.guests.create_workload(instance, 'img:1', objects.ImageMeta(
            id=instance.image_ref, properties=objects.ImageMetaProps()),
            sandbox)
        self.guests.get(instance).start()
        return instance

    def _cached(self, instance):
        return self.guests.power_state(instance, self.roles, use_cache=True)

    def _calls(self):
        return self.api.containers.call_count, \
            self.api.inspect_container.call_count

    def _reset_calls(self):
        self.api.containers.reset_mock()
        self.api.inspect_container.reset_mock()

    def test_one_listing_answers_every_instance(self):
        instances = [self._spawned() for _ in range(3)]
        workloads = [self.guests.get(i).workload_id for i in instances]
        self.now += 11   # the spawns' changes are older than a listing
        self._reset_calls()
        self.assertEqual([(power_state.RUNNING, w) for w in workloads],
                         [self._cached(i) for i in instances])
        self.assertEqual((1, 0), self._calls())
        listing = self.api.containers.call_args_list[0]
        self.assertEqual({'all': True, 'filters': {'label': [
            '%s=host-a' % guest.LABEL_HOST]}}, listing.kwargs)

    def test_own_pause_and_stop_are_read_fresh(self):
        paused, stopped, untouched = (self._spawned() for _ in range(3))
        self.now += 11
        self._cached(untouched)   # the listing, before the changes
        self.guests.get(paused).pause()
        self.guests.get(stopped).stop(0)
        self._reset_calls()
        self.assertEqual(power_state.PAUSED, self._cached(paused)[0])
        self.assertEqual(power_state.SHUTDOWN, self._cached(stopped)[0])
        self.assertEqual(power_state.RUNNING, self._cached(untouched)[0])
        # The changed two by a list + inspect of their own; the untouched
        # one from the listing, which is still young.
        self.assertEqual((2, 2), self._calls())

    def test_changes_are_read_fresh_until_a_newer_listing(self):
        instance = self._spawned()
        self.now += 11
        self._cached(instance)
        self.guests.get(instance).pause()
        self.now += 11   # this listing began after the pause
        self._reset_calls()
        self.assertEqual(power_state.PAUSED, self._cached(instance)[0])
        self.assertEqual(power_state.PAUSED, self._cached(instance)[0])
        self.assertEqual((1, 0), self._calls())

    def test_change_during_the_listing_is_not_answered_from_it(self):
        """An event (or our own operation) that lands while the listing
        is on its way may or may not be in it: read that one fresh."""
        instance = self._spawned()
        self.now += 11
        listed = self.guests.list_all()

        def list_all():
            self.engine._set(self.guests.get(instance).workload_id,
                             paused=True)
            self.states.changed(instance.uuid)
            return listed   # as the engine answered before the pause
        self.assertIsNone(self.states.containers(instance.uuid, list_all))
        self.assertEqual(power_state.PAUSED, self._cached(instance)[0])

    def test_unreported_change_until_expiry_but_use_cache_false_is_fresh(
            self):
        instance = self._spawned()
        self.now += 11
        self._cached(instance)
        # Behind the driver's back, and no event thread in this test.
        self.engine._set(self.guests.get(instance).workload_id, paused=True)
        self.assertEqual(power_state.PAUSED, self.guests.power_state(
            instance, self.roles, use_cache=False)[0])
        self.assertEqual(power_state.RUNNING, self._cached(instance)[0])
        self.now += 11
        self.assertEqual(power_state.PAUSED, self._cached(instance)[0])

    def test_reported_change_is_read_fresh(self):
        instance = self._spawned()
        self.now += 11
        self._cached(instance)
        self.engine._set(self.guests.get(instance).workload_id, paused=True)
        self.states.changed(instance.uuid)   # as the events thread does
        self.assertEqual(power_state.PAUSED, self._cached(instance)[0])

    def test_no_marks_pile_up_while_nobody_asks(self):
        """With the sync off, changes need no marks once older than the
        replica lag: the next listing begins after them all."""
        spawned = []
        for _ in range(3):
            spawned.append(self._spawned())
            self.now += guest.REPLICA_LAG
        last = self._spawned()
        self.assertEqual([last.uuid], list(self.states._changed))
        self.now += guest.REPLICA_LAG
        instance = self._spawned()
        self.assertEqual([instance.uuid], list(self.states._changed))
        self.now += guest.REPLICA_LAG
        self._cached(instance)   # a listing: now marks count
        self.guests.get(instance).pause()
        self.assertEqual([instance.uuid], list(self.states._changed))
        self.assertEqual(power_state.PAUSED, self._cached(instance)[0])

    def test_listing_just_after_a_change_does_not_answer_for_it(self):
        """Docker 26 lists a container as running just after docker stop
        has returned: a listing begun within REPLICA_LAG of the change is
        not trusted for that instance, a later one is."""
        stopped, untouched = self._spawned(), self._spawned()
        self.now += 11
        self.guests.get(stopped).stop(0)
        listed = self.guests.list_all()
        workload = self.guests.get(stopped).workload_id
        for row in listed:   # what the lagging replica answers
            if row['Id'] == workload:
                row['State'] = 'running'
        self.now += guest.REPLICA_LAG / 2
        self.assertIsNone(self.states.containers(stopped.uuid,
                                                 lambda: listed))
        self.assertEqual(power_state.SHUTDOWN, self._cached(stopped)[0])
        self.assertEqual(power_state.RUNNING, self._cached(untouched)[0])
        # A listing begun after the lag answers for it again.
        self.now += 11
        self._reset_calls()
        self.assertEqual(power_state.SHUTDOWN, self._cached(stopped)[0])
        self.assertEqual((1, 1), self._calls())

    def test_listing_slower_than_max_age_still_answers(self):
        instance = self._spawned()
        self.now += guest.REPLICA_LAG   # the spawn is in any listing now
        real_list = self.guests.list_all

        def slow_list():
            self.now += 30
            return real_list()
        listed = self.states.containers(instance.uuid, slow_list)
        self.assertEqual([guest.ROLE_SANDBOX, guest.ROLE_WORKLOAD],
                         sorted(c.role for c in listed))
        # Already too old for the next caller: it lists again.
        self.guests.get(instance).pause()
        self.now += guest.REPLICA_LAG
        self._reset_calls()
        self.assertEqual(power_state.PAUSED, self._cached(instance)[0])
        self.assertEqual((1, 0), self._calls())

    def test_forget_lists_again(self):
        instance = self._spawned()
        self.now += 11
        self._cached(instance)
        self.engine._set(self.guests.get(instance).workload_id, paused=True)
        self.states.forget()
        self._reset_calls()
        self.assertEqual(power_state.PAUSED, self._cached(instance)[0])
        self.assertEqual((1, 0), self._calls())

    def test_exited_is_inspected_once_for_an_oom_kill(self):
        stopped, killed = self._spawned(), self._spawned()
        self.guests.get(stopped).stop(0)
        self.guests.get(killed).stop(0)
        self.engine._set(self.guests.get(killed).workload_id,
                         oom_killed=True)
        self.now += 11
        self._reset_calls()
        for _ in range(2):
            self.assertEqual(power_state.SHUTDOWN, self._cached(stopped)[0])
            self.assertEqual(power_state.CRASHED, self._cached(killed)[0])
        self.assertEqual((1, 2), self._calls())
        # Started again: forgotten, whatever it was.
        self.guests.get(killed).start()
        self.engine._set(self.guests.get(killed).workload_id,
                         oom_killed=False)
        self.now += 11
        self.assertEqual(power_state.RUNNING, self._cached(killed)[0])

    def test_instance_without_containers_is_not_found(self):
        self._spawned()
        self.now += 11
        missing = obj_fixtures.instance()
        self._reset_calls()
        self.assertRaises(exception.InstanceNotFound, self._cached, missing)
        self.assertRaises(exception.InstanceNotFound, self._cached, missing)
        self.assertEqual((1, 0), self._calls())

    def test_removed_instance_is_not_found_at_once(self):
        instance = self._spawned()
        self.now += 11
        self._cached(instance)
        self.guests.remove(instance)
        self.assertRaises(exception.InstanceNotFound, self._cached, instance)

    def test_rescue_container_answers_for_a_rescued_instance(self):
        instance = self._spawned()
        rescue_id = self.api.create_container(
            'img:1', name='nova-%s-rescue' % instance.uuid,
            labels=self.guests.labels(instance, 'rescue'))['Id']
        self.now += 11
        self.assertEqual((power_state.SHUTDOWN, rescue_id),
                         self._cached(instance))
        self.assertEqual((power_state.SHUTDOWN, rescue_id),
                         self.guests.power_state(instance, self.roles,
                                                 use_cache=False))

    def test_concurrent_callers_share_one_listing(self):
        instances = [self._spawned() for _ in range(4)]
        self.now += 11
        self._reset_calls()
        listing = threading.Event()
        release = threading.Event()
        real_list = self.guests.list_all

        def slow_list():
            listing.set()
            release.wait(5)
            return real_list()
        results = {}

        def ask(instance):
            results[instance.uuid] = self.states.containers(
                instance.uuid, slow_list)
        threads = [threading.Thread(target=ask, args=(i,))
                   for i in instances]
        threads[0].start()
        listing.wait(5)
        for thread in threads[1:]:
            thread.start()
        release.set()
        for thread in threads:
            thread.join(5)
        self.assertEqual(1, self.api.containers.call_count)
        self.assertEqual({i.uuid for i in instances}, set(results))
        for instance in instances:
            self.assertEqual([guest.ROLE_SANDBOX, guest.ROLE_WORKLOAD],
                             sorted(c.role for c in results[instance.uuid]))
