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

"""The fault matrix: engine crashes, a full disk, Glance and OVSDB failing,
nova-compute killed, with instances running (real OVS ports) and spawns in
flight.

Each test runs on a dockerd of its own (PrivateDockerd), so killing,
restarting or filling it never disturbs other tests. For every case a test
checks what Nova would see (the exception, hence the instance state), that
the instances keep running with their network, and that the leak count
(containers, images, veths, OVS ports, qbr, netns) is zero. Recovery times
are measured on the monotonic clock and printed (in the test's details and
in fault-figures.log under the test log directory), never asserted.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from unittest import mock
import uuid

import fixtures
from nova.compute import power_state
from nova import exception
from nova.network import model as network_model
from testtools import content

from novadocker import conf
from novadocker.virt.docker import guest
from novadocker.virt.docker import images
from tests.fixtures import docker as docker_fixtures
from tests.fixtures import images as image_fixtures
from tests.fixtures import network as net_fixtures
from tests.functional import test_network

CONF = conf.CONF
NO_LEAKS = dict.fromkeys(net_fixtures.LEAK_KINDS, 0)
WAIT = 120      # seconds a recovery may take before the test gives up


def figures_path() -> str:
    return os.path.join(os.environ.get('NOVA_DOCKER_LOG_DIR') or '/tmp',
                        'fault-figures.log')


class FaultTestCase(test_network.NetworkTestCase):
    """Instances with OVS ports on a private engine (live-restore on, as
    README, devstack and the all-in-one configure dockerd)."""

    DOCKERD_ARGS = ('--live-restore',)

    def private_dockerd(self):
        return self.useFixture(
            docker_fixtures.PrivateDockerd(*self.DOCKERD_ARGS))

    # -- what the matrix records -------------------------------------------

    def leak_count(self, instance=None, network_info=None) -> dict:
        """All the test's leftovers, or those of one (failed) instance."""
        if instance is None:
            return net_fixtures.leak_counts(self.leaks, self.net_leaks)
        return net_fixtures.leak_counts(self.leaks, self.net_leaks,
                                        [instance], network_info or [])

    def figure(self, case: str, **values) -> None:
        """Print one row of figures: in the test's details (shown by
        ``stestr last``) and appended to fault-figures.log."""
        line = '%s | %s | %s' % (
            case, self.id().rsplit('.', 1)[-1],
            ', '.join('%s=%s' % (k, ('%.2fs' % v) if isinstance(v, float)
                                 else v) for k, v in values.items()))
        self.addDetail('figures: %s' % case, content.text_content(line))
        with open(figures_path(), 'a') as handle:
            handle.write(line + '\n')

    def wait_for(self, predicate, what: str) -> float:
        """Poll until predicate() is true; return the seconds it took."""
        started = time.monotonic()
        while True:
            if predicate():
                return time.monotonic() - started
            if time.monotonic() - started > WAIT:
                self.fail('not within %ds: %s' % (WAIT, what))
            time.sleep(0.2)

    # -- instances and their network ---------------------------------------

    def pids(self, *instances) -> dict:
        """(uuid, role) -> PID of the containers of ``instances``."""
        return {(i.uuid, role): self.inspect(i, role)['State']['Pid']
                for i in instances
                for role in (guest.ROLE_WORKLOAD, guest.ROLE_SANDBOX)}

    def ping_from_netns(self, instance, address: str) -> bool:
        """Ping from the instance's namespace without the engine (nsenter
        on the sandbox PID): the data path, whatever dockerd is doing."""
        pid = self.sandbox_pid
        return subprocess.run(
            ['nsenter', '--net=/proc/%d/ns/net' % pid[instance.uuid],
             docker_fixtures.BUSYBOX, 'ping', '-c', '1', '-W', '2', address],
            capture_output=True).returncode == 0

    def remember_sandbox_pids(self, *instances) -> None:
        self.sandbox_pid = {i.uuid: self.inspect(i, guest.ROLE_SANDBOX)[
            'State']['Pid'] for i in instances}

    def assertConnected(self, pairs) -> None:
        """Each (instance, its vif, peer vif) runs and reaches its peer
        over IPv4 and IPv6 with the port's MAC on eth0."""
        for instance, vif, peer_vif in pairs:
            self.assertEqual(power_state.RUNNING,
                             self.driver.get_info(instance).state)
            self.assertEqual(vif['address'],
                             self.links(instance)['eth0']['mac'])
            self.assertPings(instance, self.ip_of(peer_vif))
            self.assertPings(instance, self.ip_of(peer_vif, 6))

    def destroy_all(self, *pairs) -> None:
        for instance, network_info in pairs:
            self.driver.destroy(self.context, instance, network_info)

    def image_cache_pass(self, *instances) -> None:
        """nova-compute's image cache pass with no minimum age."""
        self.conf.config(remove_unused_original_minimum_age_seconds=0,
                         group='image_cache')
        self.driver.manage_image_cache(self.context, list(instances))

    @staticmethod
    def own_image() -> bytes:
        """A tarball of a Docker image of its own (no other test image
        shares its ID), so that the image cache sees it unused."""
        return image_fixtures.build_saved_image(
            changes=('CMD ["/bin/sleep", "2147483647"]',),
            extra_files={'id': uuid.uuid4().bytes})

    def engine_images(self) -> set:
        """Every image ID of the private engine (dangling ones too)."""
        return {image['Id'] for image in self.api.images(all=True)}

    def engine_layers(self) -> set:
        """overlay2 layer directories: a partial load leaves some."""
        path = os.path.join(self.dockerd.data_root, 'overlay2')
        return set(os.listdir(path)) - {'l'} if os.path.isdir(path) \
            else set()


class DockerdRestartTest(FaultTestCase):
    """Case 1: dockerd restarted (SIGTERM, then SIGKILL) with live-restore:
    the instances keep their processes and their network."""

    def test_restart_and_crash_keep_instances_and_network(self):
        port = self.ports.network(0)
        vif_a, vif_b = port(), port(hybrid=True)
        self.useFixture(net_fixtures.HybridFirewall(vif_b['devname']))
        a = self.spawn_on([vif_a])
        b = self.spawn_on([vif_b])
        pairs = [(a, vif_a, vif_b), (b, vif_b, vif_a)]
        self.assertConnected(pairs)
        pids = self.pids(a, b)
        self.remember_sandbox_pids(a, b)
        links = {i.uuid: self.links(i) for i in (a, b)}

        for how in ('restart (SIGTERM)', 'crash (SIGKILL)'):
            started = time.monotonic()
            if how.startswith('crash'):
                self.dockerd.kill(signal.SIGKILL)
            else:
                self.dockerd.stop()
            # The data path does not need the engine.
            self.assertTrue(self.ping_from_netns(a, self.ip_of(vif_b)))
            self.assertTrue(self.ping_from_netns(b, self.ip_of(vif_a)))
            self.dockerd.start()
            engine_back = time.monotonic() - started
            self.assertEqual(pids, self.pids(a, b))
            self.assertConnected(pairs)
            self.assertEqual(links, {i.uuid: self.links(i) for i in (a, b)})
            self.figure('1 dockerd %s, live-restore' % how,
                        nova='nothing (instances ACTIVE)',
                        instances='2/2 RUNNING, same PIDs',
                        network='veths, addresses, pings kept',
                        engine_back=engine_back,
                        recovery=time.monotonic() - started)

        self.destroy_all((a, [vif_a]), (b, [vif_b]))
        self.assertEqual(NO_LEAKS, self.leak_count())


class WithoutLiveRestoreTest(FaultTestCase):
    """Case 1, live-restore off: the driver warns at start-up; a dockerd
    restart stops every instance and nova-compute's start-up path brings
    them back; the reload the warning advises turns live-restore on
    without stopping anything."""

    DOCKERD_ARGS = ()

    def start_up_warnings(self) -> str:
        logs = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        self.driver = self.new_driver()     # nova-compute (re)starts
        return logs.output

    def test_warning_restart_recovery_and_reload(self):
        port = self.ports.network(0)
        vif_a, vif_b = port(), port(hybrid=True)
        self.useFixture(net_fixtures.HybridFirewall(vif_b['devname']))
        a = self.spawn_on([vif_a])
        b = self.spawn_on([vif_b])
        pairs = [(a, vif_a, vif_b), (b, vif_b, vif_a)]
        ports = {a.uuid: [vif_a], b.uuid: [vif_b]}
        self.assertIn('runs without live-restore', self.start_up_warnings())

        started = time.monotonic()
        self.dockerd.restart()
        engine_back = time.monotonic() - started
        # Every instance stopped: the power-state sync shows them SHUTOFF.
        for instance in (a, b):
            self.assertEqual(power_state.SHUTDOWN,
                             self.driver.get_info(instance).state)
        # nova-compute's start-up (or `server start`) brings them back.
        started = time.monotonic()
        for instance in (a, b):
            self.driver.plug_vifs(instance, ports[instance.uuid])
            self.driver.resume_state_on_host_boot(
                self.context, instance, ports[instance.uuid], None)
        resumed = time.monotonic() - started
        self.assertConnected(pairs)
        self.figure('1 dockerd restart, live-restore OFF',
                    nova='start-up warning; instances SHUTOFF',
                    instances='2/2 RUNNING after resume_state_on_host_boot',
                    network='re-plugged, pings', engine_back=engine_back,
                    resume=resumed)

        # The advice of the warning: daemon.json + reload (SIGHUP).
        pids = self.pids(a, b)
        self.dockerd.reload({'live-restore': True})
        self.wait_for(lambda: self.api.info()['LiveRestoreEnabled'],
                      'live-restore on after the reload')
        self.assertEqual(pids, self.pids(a, b))
        self.assertNotIn('live-restore', self.start_up_warnings())
        self.dockerd.kill(signal.SIGKILL)
        self.dockerd.start()
        self.assertEqual(pids, self.pids(a, b))
        self.assertConnected(pairs)
        self.destroy_all((a, [vif_a]), (b, [vif_b]))
        self.assertEqual(NO_LEAKS, self.leak_count())


class DockerdCrashMidSpawnTest(FaultTestCase):
    """Case 2: dockerd SIGKILLed mid-spawn (sandbox up, ports plugged, the
    workload not started), then started again."""

    def test_sigkill_mid_spawn(self):
        self.conf.config(reap_min_age=0, group='docker')
        logs = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        port = self.ports.network(0)
        vif_run, vif_new = port(), port(hybrid=True)
        running = self.spawn_on([vif_run])
        pids = self.pids(running)
        image = self.add_image(self.own_image())
        self.leaks.forbid_images(image.id)
        instance = self.make_instance(image)
        real_plug = self.driver._plug_and_wait

        def plug_then_crash(*args, **kwargs):
            real_plug(*args, **kwargs)
            self.dockerd.kill(signal.SIGKILL)

        with mock.patch.object(self.driver, '_plug_and_wait', autospec=True,
                               side_effect=plug_then_crash):
            error = self.assertRaises(exception.NovaException,
                                      self.driver.spawn, self.context,
                                      instance, image, [], None, {},
                                      network_info=[vif_new])
        # Any exception but BuildAbortException is rescheduled; without an
        # alternate host the build ends in ERROR, with no host any more.
        self.assertIsInstance(error, exception.HypervisorUnavailable)
        self.nova_forgets(instance)
        left_while_down = {k: v for k, v in self.net_leaks.counts(
            [vif_new['id']]).items() if v}

        started = time.monotonic()
        self.dockerd.start()
        engine_back = time.monotonic() - started
        # The event stream reconnects and triggers a reaper pass.
        self.wait_for(lambda: not self.leaks.counts([instance.uuid])[
            'container'], 'the reaper removed the failed spawn')
        recovery = time.monotonic() - started
        self.assertIn('removing container', logs.output)
        self.assertIn(instance.uuid, logs.output)
        left = self.leak_count(instance, [vif_new])
        # The image the spawn loaded is not a container's: the image cache
        # pass removes it (after remove_unused_original_minimum_age_seconds,
        # 0 here).
        self.assertEqual(dict(NO_LEAKS, image=left['image']), left)
        self.image_cache_pass(running)
        self.assertEqual(NO_LEAKS, self.leak_count(instance, [vif_new]))

        self.assertEqual(pids, self.pids(running))
        peer = port()
        other = self.spawn_on([peer])
        self.assertConnected([(running, vif_run, peer),
                              (other, peer, vif_run)])
        self.destroy_all((running, [vif_run]), (other, [peer]))
        self.assertEqual(NO_LEAKS, self.leak_count())
        self.figure('2 dockerd SIGKILL mid-spawn, live-restore',
                    nova='%s: rescheduled, or ERROR' % type(
                        error).__name__,
                    left_while_down=left_while_down or 'none on OVS',
                    left_after_restart='image %d (cache pass)'
                    % left['image'],
                    instances='running one kept its PIDs',
                    engine_back=engine_back, reaped_after=recovery)


class GlanceFailureTest(FaultTestCase):
    """Case 6: Glance drops the download half-way."""

    def test_glance_fails_mid_download(self):
        port = self.ports.network(0)
        vif_run, vif_peer, vif_new = port(), port(), port()
        running = self.spawn_on([vif_run])
        peer = self.spawn_on([vif_peer])
        pids = self.pids(running, peer)
        images_before = self.engine_images()
        layers_before = self.engine_layers()
        data = image_fixtures.build_saved_image(
            extra_files={'payload': os.urandom(1024 * 1024)})
        image = self.add_image(data)
        self.leaks.forbid_images(image.id)
        real_download = self.glance.download
        cut = len(data) // 2

        def broken_download(context, image_id, **kwargs):
            sent = 0
            for chunk in real_download(context, image_id, **kwargs):
                if sent + len(chunk) > cut:
                    raise ConnectionResetError(
                        104, 'Connection reset by peer (Glance)')
                sent += len(chunk)
                yield chunk

        instance = self.make_instance(image)
        started = time.monotonic()
        with mock.patch.object(self.glance, 'download', autospec=True,
                               side_effect=broken_download):
            error = self.assertRaises(
                images.ImageTransferFailed, self.driver.spawn, self.context,
                instance, image, [], None, {}, network_info=[vif_new])
        failed_after = time.monotonic() - started
        self.assertIn('Connection reset', str(error))
        self.assertIn(image.id, str(error))
        self.assertEqual(NO_LEAKS, self.leak_count(instance, [vif_new]))
        self.assertEqual(images_before, self.engine_images())
        self.assertEqual(layers_before, self.engine_layers())
        self.assertEqual(pids, self.pids(running, peer))
        self.assertConnected([(running, vif_run, vif_peer)])

        # Glance serving again: the boot works (the same bytes as another
        # Glance image, so that the failed one's tag still counts as a leak).
        started = time.monotonic()
        again = self.spawn_on([vif_new], image_meta=self.add_image(data))
        recovery = time.monotonic() - started
        self.assertConnected([(again, vif_new, vif_run)])
        self.destroy_all((running, [vif_run]), (peer, [vif_peer]),
                         (again, [vif_new]))
        self.assertEqual(NO_LEAKS, self.leak_count())
        self.figure('6 Glance fails mid-download',
                    nova='ImageTransferFailed: rescheduled, ERROR with '
                    'the fault when no host is left',
                    instances='others RUNNING, same PIDs',
                    network='unchanged', leaks=0,
                    failed_after=failed_after, next_boot=recovery)


class ComputeKilledMidSpawnTest(FaultTestCase):
    """Case 3: nova-compute SIGKILLed mid-spawn (a child process running
    the driver), then a fresh driver's init_host."""

    def spawn_in_child_and_kill(self, vif):
        """Start a spawn in a child process; SIGKILL it once the sandbox
        runs with its ports plugged. Returns (instance, image)."""
        data = self.own_image()
        image = self.add_image(data)
        self.leaks.forbid_images(image.id)
        instance = self.make_instance(image)
        work = self.useFixture(fixtures.TempDir()).path
        image_path = os.path.join(work, 'image.tar')
        with open(image_path, 'wb') as handle:
            handle.write(data)
        args = {'host': self.host, 'api_url': self.dockerd.url,
                'state_path': work, 'image_path': image_path,
                'image_id': image.id, 'instance_id': instance.id,
                'instance_uuid': instance.uuid,
                'hostname': instance.hostname,
                'network_info': network_model.NetworkInfo([vif]),
                'marker': os.path.join(work, 'plugged')}
        args_path = os.path.join(work, 'args.json')
        with open(args_path, 'w') as handle:
            json.dump(args, handle)
        log_path = os.path.join(work, 'child.log')
        with open(log_path, 'wb') as log:
            child = subprocess.Popen(
                [sys.executable, '-m', 'tests.functional.fault_spawn_child',
                 args_path], stdout=log, stderr=subprocess.STDOUT,
                cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                    os.path.abspath(__file__)))))
        self.addCleanup(lambda: child.poll() is None and child.kill())

        def plugged():
            if child.poll() is not None:
                with open(log_path) as handle:
                    self.fail('the child exited %s: %s' % (
                        child.returncode, handle.read()[-3000:]))
            return os.path.exists(args['marker'])

        self.wait_for(plugged, 'the child spawn plugged its ports')
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        # Killed mid-spawn: the sandbox runs, the port is on OVS; the
        # workload, made alongside the plug, may exist but never started.
        self.assertIsNotNone(self.driver._guests.find(instance,
                                                      guest.ROLE_SANDBOX))
        workload = self.driver._guests.find(instance)
        self.assertFalse(workload is not None and workload.running)
        ovs_port = net_fixtures.device_names(vif['id'])[3] if vif['details'][
            network_model.VIF_DETAILS_OVS_HYBRID_PLUG] else vif['devname']
        self.assertEqual(self.bridge, net_fixtures.port_bridge(ovs_port))
        return instance

    def test_instance_in_error_is_deleted_cleanly(self):
        # nova-compute's start-up sets a BUILDING instance to ERROR; it
        # keeps its host, so the user's delete reaches this driver.
        port = self.ports.network(0)
        vif_run, vif_new = port(), port()
        running = self.spawn_on([vif_run])
        instance = self.spawn_in_child_and_kill(vif_new)
        started = time.monotonic()
        driver = self.new_driver()
        self.assertIsNotNone(driver._guests.find(instance,
                                                 guest.ROLE_SANDBOX))
        driver.destroy(self.context, instance, [vif_new])
        recovery = time.monotonic() - started
        self.nova_forgets(instance)
        left = self.leak_count(instance, [vif_new])
        self.image_cache_pass(running)
        self.assertEqual(NO_LEAKS, self.leak_count(instance, [vif_new]))
        self.assertEqual(power_state.RUNNING, driver.get_info(running).state)
        self.figure('3 nova-compute SIGKILL mid-spawn, instance ERROR',
                    nova='ERROR at start-up; delete works',
                    left_after_delete='image %d (cache pass)'
                    % left['image'],
                    instances='running one RUNNING',
                    init_host_and_delete=recovery)

    def test_instance_nova_no_longer_has_is_reaped(self):
        port = self.ports.network(0)
        vif_run, vif_new = port(), port(hybrid=True)
        running = self.spawn_on([vif_run])
        pids = self.pids(running)
        instance = self.spawn_in_child_and_kill(vif_new)
        self.nova_forgets(instance)
        self.conf.config(reap_min_age=0, group='docker')
        logs = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        started = time.monotonic()
        driver = self.new_driver()     # init_host reaps
        recovery = time.monotonic() - started
        self.assertIn('removing container', logs.output)
        left = self.leak_count(instance, [vif_new])
        self.assertEqual(dict(NO_LEAKS, image=left['image']), left)
        self.image_cache_pass(running)
        self.assertEqual(NO_LEAKS, self.leak_count(instance, [vif_new]))
        self.assertEqual(pids, self.pids(running))
        self.assertEqual(power_state.RUNNING, driver.get_info(running).state)
        self.figure('3 nova-compute SIGKILL mid-spawn, instance gone',
                    nova='instance deleted meanwhile',
                    left_after_init_host='image %d (cache pass)'
                    % left['image'],
                    instances='running one kept its PIDs',
                    init_host=recovery)


class EngineDownDeleteTest(FaultTestCase):
    """Case 4: a delete while the engine is stopped; Nova forgets the
    instance; the engine comes back and the reaper finishes the job."""

    def foreign(self, labels: dict) -> str:
        created = self.api.create_container(
            self.sandbox_image, labels=labels,
            name='ndtest-foreign-%s' % uuid.uuid4().hex[:8],
            host_config=self.api.create_host_config(network_mode='none'))
        self.api.start(created['Id'])
        return created['Id']

    def test_delete_while_engine_down_is_finished_when_it_is_back(self):
        self.conf.config(reap_min_age=0, group='docker')
        port = self.ports.network(0)
        vif_keep, vif_gone = port(), port(hybrid=True)
        self.useFixture(net_fixtures.HybridFirewall(vif_gone['devname']))
        keep = self.spawn_on([vif_keep])
        gone = self.spawn_on([vif_gone])
        self.sandbox_image = self.inspect(keep, guest.ROLE_SANDBOX)['Image']
        plain = self.foreign({})
        other_host = self.foreign({
            guest.LABEL_INSTANCE: gone.uuid,
            guest.LABEL_HOST: 'ndtest-other-%s' % uuid.uuid4().hex[:8],
            guest.LABEL_ROLE: guest.ROLE_WORKLOAD})
        gone_ids = [c['Id'] for c in self.leaks.containers()
                    if c['Labels'][guest.LABEL_INSTANCE] == gone.uuid]
        self.assertEqual(2, len(gone_ids))
        pids = self.pids(keep)
        logs = self.useFixture(fixtures.FakeLogger(level=logging.INFO))

        self.dockerd.stop()
        error = self.assertRaises(exception.NovaException,
                                  self.driver.destroy, self.context, gone,
                                  [vif_gone])
        self.assertIsInstance(error, exception.HypervisorUnavailable)
        # Deleted anyway (a local delete, or the operator's force delete).
        self.nova_forgets(gone)

        started = time.monotonic()
        self.dockerd.start()
        self.wait_for(lambda: not self.leaks.counts([gone.uuid])[
            'container'], 'the reaper removed the deleted instance')
        recovery = time.monotonic() - started
        for container_id in gone_ids:
            self.assertEqual(1, len([
                line for line in logs.output.splitlines()
                if 'removing container' in line
                and container_id[:12] in line]), container_id)
        self.assertEqual(NO_LEAKS, self.leak_count(gone, [vif_gone]))
        for container_id in (plain, other_host):
            self.assertTrue(self.api.inspect_container(container_id)[
                'State']['Running'])
            self.api.remove_container(container_id, force=True)
        self.assertEqual(pids, self.pids(keep))
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(keep).state)
        self.figure('4 delete while dockerd is down',
                    nova='%s -> ERROR (then deleted)'
                    % type(error).__name__,
                    instances='other RUNNING, same PIDs; unlabelled and '
                    'foreign-host containers untouched',
                    reaped_after_engine_start=recovery)


class DataRootFullTest(FaultTestCase):
    """Case 7: Docker's data root (a 300 MB loop-mounted ext4) full."""

    def private_dockerd(self):
        self.disk = self.useFixture(
            docker_fixtures.LoopFilesystem(size_mb=300))
        return self.useFixture(docker_fixtures.PrivateDockerd(
            *self.DOCKERD_ARGS, data_root=self.disk.path))

    def test_full_data_root(self):
        port = self.ports.network(0)
        vif_a, vif_fill, vif_new = port(), port(), port()
        a = self.spawn_on([vif_a])
        filler = self.spawn_on([vif_fill])
        pids = self.pids(a, filler)

        # A tenant writes until the disk is full: the write fails.
        code, output = self.exec_result(filler, 'dd', 'if=/dev/zero',
                                        'of=/tmp/fill', 'bs=1M', check=False)
        self.assertNotEqual(0, code)
        self.assertIn('No space left on device', output)
        self.assertLess(self.disk.free_bytes(), 1024 * 1024)
        self.assertEqual(pids, self.pids(a, filler))
        self.assertConnected([(a, vif_a, vif_fill),
                              (filler, vif_fill, vif_a)])

        # A boot while it is full: its image cannot load.
        images_before = self.engine_images()
        data = image_fixtures.build_saved_image(
            extra_files={'payload': os.urandom(4 * 1024 * 1024)})
        image = self.add_image(data)
        self.leaks.forbid_images(image.id)
        instance = self.make_instance(image)
        # Not the image's fault: Nova reschedules ImageTransferFailed to
        # another host (ImageUnacceptable would abort the boot).
        error = self.assertRaises(images.ImageTransferFailed,
                                  self.driver.spawn, self.context, instance,
                                  image, [], None, {},
                                  network_info=[vif_new])
        self.assertIn('no space left on device', str(error))
        self.assertLess(len(str(error)), 200)
        self.nova_forgets(instance)
        self.assertEqual(NO_LEAKS, self.leak_count(instance, [vif_new]))
        self.assertEqual(images_before, self.engine_images())
        self.assertEqual(pids, self.pids(a, filler))

        # The tenant removes the file: the next boot works.
        started = time.monotonic()
        self.exec_in(filler, 'rm', '/tmp/fill')
        again = self.spawn_on([vif_new], image_meta=self.add_image(data))
        recovery = time.monotonic() - started
        self.assertConnected([(again, vif_new, vif_a),
                              (a, vif_a, vif_new)])
        self.destroy_all((a, [vif_a]), (filler, [vif_fill]),
                         (again, [vif_new]))
        self.assertEqual(NO_LEAKS, self.leak_count())
        self.figure('7 data root full',
                    nova='%s: rescheduled' % type(error).__name__,
                    fault=str(error)[:160],
                    instances='2/2 RUNNING, same PIDs, pings',
                    next_boot_after_rm=recovery)


class OVSDBDownDeleteTest(FaultTestCase):
    """Case 8: OVSDB unreachable while instances are deleted."""

    def test_ovsdb_down_during_delete(self):
        self.conf.config(reap_min_age=0, group='docker')
        port = self.ports.network(0)
        vif_a, vif_b, vif_keep, vif_peer = (port(), port(hybrid=True),
                                            port(), port())
        a = self.spawn_on([vif_a])
        b = self.spawn_on([vif_b])
        keep = self.spawn_on([vif_keep])
        peer = self.spawn_on([vif_peer])
        real = {'docker': CONF.docker.ovsdb_connection,
                'os_vif_ovs': CONF.os_vif_ovs.ovsdb_connection}
        dead = 'unix:/run/nd-dead-ovsdb-%s.sock' % uuid.uuid4().hex[:8]
        logs = self.useFixture(fixtures.FakeLogger(level=logging.INFO))
        self.conf.config(ovsdb_connection=dead, group='docker')
        self.conf.config(ovsdb_connection=dead, ovs_vsctl_timeout=5,
                         group='os_vif_ovs')

        started = time.monotonic()
        for instance, vif in ((a, vif_a), (b, vif_b)):
            self.driver.destroy(self.context, instance, [vif])
            self.nova_forgets(instance)
        delete_time = time.monotonic() - started
        self.assertIn('Unplugging the ports failed', logs.output)
        left = self.leak_count(a, [vif_a])
        left_b = self.leak_count(b, [vif_b])
        for kind, count in left_b.items():
            left[kind] += count
        # The containers went; what is left is on the host side only.
        self.assertEqual(0, left['container'])
        self.assertGreater(left['OVS port'], 0)

        # OVSDB is back: the next reaper pass (periodic, or the engine's
        # event stream reconnecting) retries the unplugs.
        self.conf.config(ovsdb_connection=real['docker'], group='docker')
        self.conf.config(ovsdb_connection=real['os_vif_ovs'],
                         group='os_vif_ovs')
        started = time.monotonic()
        self.driver.reap('periodic')
        self.wait_for(lambda: self.leak_count(a, [vif_a, vif_b]) ==
                      NO_LEAKS, 'the leftover ports removed')
        recovery = time.monotonic() - started
        self.assertEqual(NO_LEAKS, self.leak_count(b, [vif_b]))
        self.assertConnected([(keep, vif_keep, vif_peer),
                              (peer, vif_peer, vif_keep)])
        self.figure('8 OVSDB down during delete',
                    nova='delete succeeds (unplug failure logged)',
                    left_until_ovsdb_back=', '.join(
                        '%s %d' % (k, v) for k, v in left.items() if v),
                    instances='others RUNNING, pings',
                    delete_time=delete_time, cleaned_after=recovery)
