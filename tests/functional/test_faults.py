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
import os
import signal
import subprocess
import sys
import time
import uuid
from unittest import mock

import fixtures
from nova.compute import power_state
from nova import exception
from nova.network import model as network_model
from nova.virt import fake as fake_virt
from testtools import content

from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import guest
from novadocker.virt.docker import images
from novadocker.virt.docker import vifs
from tests.functional import test_network
from tests import fixtures as nd_fixtures
from tests import net_fixtures as nf

NO_LEAKS = dict.fromkeys(nf.LEAK_KINDS, 0)
WAIT = 120      # seconds a recovery may take before the test gives up


def figures_path() -> str:
    return os.path.join(os.environ.get('NOVA_DOCKER_LOG_DIR') or '/tmp',
                        'fault-figures.log')


class FaultTestCase(test_network.NetworkTestCase):
    """Instances with OVS ports on a private engine (live-restore on, as
    README, devstack and the all-in-one configure dockerd)."""

    DOCKERD_ARGS = ('--live-restore',)

    def private_dockerd(self):
        return self.useFixture(nd_fixtures.PrivateDockerd(*self.DOCKERD_ARGS))

    # -- what the matrix records -------------------------------------------

    def leak_count(self, instance=None, network_info=None) -> dict:
        """All the test's leftovers, or those of one (failed) instance."""
        if instance is None:
            return nf.leak_counts(self.leaks, self.net_leaks)
        return nf.leak_counts(self.leaks, self.net_leaks, [instance],
                              network_info or [])

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
             nd_fixtures.BUSYBOX, 'ping', '-c', '1', '-W', '2', address],
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
        self.useFixture(nf.HybridFirewall(vif_b['devname']))
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


class DockerdCrashMidSpawnTest(FaultTestCase):
    """Case 2: dockerd SIGKILLed mid-spawn (ports plugged, workload not yet
    created), then started again."""

    def test_sigkill_mid_spawn(self):
        port = self.ports.network(0)
        vif_run, vif_new = port(), port(hybrid=True)
        running = self.spawn_on([vif_run])
        pids = self.pids(running)
        image = self.add_image()
        self.leaks.forbid_images(image.id)
        instance = self.make_instance(image)
        real_create = guest.Guests.create_workload

        def crash_then_create(guests, *args, **kwargs):
            self.dockerd.kill(signal.SIGKILL)
            return real_create(guests, *args, **kwargs)

        with mock.patch.object(guest.Guests, 'create_workload',
                               autospec=True,
                               side_effect=crash_then_create):
            error = self.assertRaises(exception.NovaException,
                                      self.driver.spawn, self.context,
                                      instance, image, [], None, {},
                                      network_info=[vif_new])
        # The compute manager reschedules any exception but
        # BuildAbortException; without alternates the instance is ERROR.
        self.assertIsInstance(error, exception.HypervisorUnavailable)
        left_while_down = self.net_leaks.counts()

        started = time.monotonic()
        self.dockerd.start()
        engine_back = time.monotonic() - started
        recovery = self.wait_for(
            lambda: self.leak_count() == dict(
                NO_LEAKS, **{}) or self._only_running_left(running),
            'the failed spawn cleaned up')
        self.assertEqual(pids, self.pids(running))
        peer = port()
        other = self.spawn_on([peer])
        self.assertConnected([(running, vif_run, peer),
                              (other, peer, vif_run)])
        self.destroy_all((running, [vif_run]), (other, [peer]))
        self.assertEqual(NO_LEAKS, self.leak_count())
        self.figure('2 dockerd SIGKILL mid-spawn',
                    nova='%s -> ERROR' % type(error).__name__,
                    left_while_down=left_while_down,
                    instances='running one kept its PIDs',
                    engine_back=engine_back,
                    recovery=engine_back + recovery)

    def _only_running_left(self, running) -> bool:
        return False


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
        data = nd_fixtures.build_saved_image(
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
                    nova='ImageTransferFailed fault -> ERROR',
                    instances='others RUNNING, same PIDs',
                    network='unchanged', leaks=0,
                    failed_after=failed_after, next_boot=recovery)
