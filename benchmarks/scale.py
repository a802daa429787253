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

"""Scale on one node: N instances booted one after another, then deleted.

Runs Nova's in-process stack of the integration tests (API, conductor,
scheduler, placement and one nova-compute with DockerDriver, in this
process) against the real Docker engine and a private Open vSwitch bridge,
and reports:

- boot time (POST /servers -> ACTIVE, polled every 50 ms) p50/p90 over the
  first 10 instances, the 20 around N/2 and the last 10 (for N=200: 1-10,
  91-110, 191-200), and the ratio of the last window's p50 to the first's;
- the Docker API requests (of the driver's client) made by one run of every
  periodic task of nova-compute, and of the driver's reaper, at N=1, N/2
  and N; next to the power-state sync, what answering its get_info calls
  uncached (use_cache=False, as the driver did before) would cost;
- the process's RSS at those points (the whole in-process stack; the test
  harness keeps the INFO log in memory, shown beside it);
- after deleting every instance: that no container of the compute host,
  no veth and no OVS port of the instances' ports is left.

    python benchmarks/scale.py [-n 200] [--ports 1] [--profile]

``--profile [cpu|wall]`` (needs ``pip install yappi``) profiles every
thread of the process (CPU time, or wall-clock time, which counts waits)
during the boots of the first and the last window and prints, per boot,
the functions whose time grew most from one to the other: where a boot at
N costs more than at 1, Nova's services or the driver (the profiler slows
every call: compare the two windows, not the absolute figures).

Needs root, a running Docker engine and Open vSwitch (as the integration
tests). The flavor is 1 vCPU, 64 MB RAM, 1 GB root disk; nova-compute gets
cpu_allocation_ratio 128 (200 one-vCPU instances on 2 cores; the README's
Capacity section suggests 16-64, which fits 32-128), ram_allocation_ratio
1.0 with 4096 MB reserved, disk_allocation_ratio 4, and no quota limits.
Speed is never asserted: a failure is a wrong state or a leftover.
"""

import os
import sys
import warnings

warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
warnings.simplefilter('ignore', DeprecationWarning)
os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

# Nova's functional base first: it applies nova's monkey_patch.
from tests.integration import base  # noqa: E402  isort:skip

import argparse  # noqa: E402
import collections  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import typing  # noqa: E402
import unittest  # noqa: E402

from nova import context as nova_context  # noqa: E402
from nova import objects  # noqa: E402

from novadocker.virt.docker import guest  # noqa: E402
from tests.fixtures import docker as docker_fixtures  # noqa: E402
from tests.fixtures import network as net_fixtures  # noqa: E402

POLL = 0.05
# Periodic tasks whose runs end before they return, except the power-state
# sync, which hands each instance to a thread pool (waited for).
SYNC_TASK = '_sync_power_states'
UNCACHED = 'get_info(use_cache=False) of each instance'
ARGS = argparse.Namespace(n=200, ports=1, profile=None)
# --profile: the functions shown, by growth of their time per boot.
PROFILE_TOP = 15


def percentile(values, pct):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def windows(count: int):
    """(label, first, last) 1-based, inclusive: the first 10, the 20 around
    the middle, the last 10."""
    middle = count // 2
    found = [(1, min(10, count)),
             (max(1, middle - 9), min(count, middle + 10)),
             (max(1, count - 9), count)]
    return [('%d-%d' % (a, b), a, b) for a, b in found]


def rss_mib() -> float:
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    return 0.0


def thread_census() -> str:
    """Live threads of the process by name (digits dropped), most first."""
    import re
    import threading
    names = collections.Counter(re.sub(r'[-_]?\d+', '', t.name)
                                for t in threading.enumerate())
    return '%d (%s)' % (sum(names.values()), ', '.join(
        '%s %d' % item for item in names.most_common(6)))


class BootProfiles:
    """yappi (CPU time, all threads) over the boots of two windows; what
    grew per boot from the first to the last."""

    def __init__(self, first: typing.Tuple[int, int],
                 last: typing.Tuple[int, int], clock: str):
        import yappi
        self.yappi = yappi
        self.clock = clock
        yappi.set_clock_type(clock)
        self.windows = {'first': first, 'last': last}
        self.stats: typing.Dict[str, typing.Dict[str, tuple]] = {}

    def _window(self, number: int) -> typing.Optional[str]:
        for name, (a, b) in self.windows.items():
            if a <= number <= b:
                return name
        return None

    def before_boot(self, number: int) -> None:
        name = self._window(number)
        if name and number == self.windows[name][0]:
            self.yappi.clear_stats()
            self.yappi.start(builtins=False, profile_threads=True)

    def after_boot(self, number: int) -> None:
        name = self._window(number)
        if name and number == self.windows[name][1]:
            self.yappi.stop()
            boots = number - self.windows[name][0] + 1
            self.stats[name] = {
                '%s:%s %s' % (stat.module, stat.lineno, stat.name):
                (stat.ttot / boots, stat.tsub / boots)
                for stat in self.yappi.get_func_stats()}

    def report(self) -> None:
        first, last = self.stats.get('first'), self.stats.get('last')
        if not first or not last:
            return
        total = (sum(t for _tt, t in first.values()),
                 sum(t for _tt, t in last.values()))
        print('\n%s time per boot, every thread of the process (yappi): '
              '%.3f s over %s, %.3f s over %s' % (
                  self.clock, total[0], '%d-%d' % self.windows['first'],
                  total[1],
                  '%d-%d' % self.windows['last']))

        def grown(index: int, only: typing.Callable[[str], bool]):
            rows = []
            for key in set(first) | set(last):
                if not only(key):
                    continue
                was = first.get(key, (0.0, 0.0))[index]
                now = last.get(key, (0.0, 0.0))[index]
                rows.append((now - was, was, now, key))
            rows.sort(reverse=True)
            return rows[:PROFILE_TOP]

        for title, index, only in (
                ('own time (tsub) of any function', 1, lambda k: True),
                ('inclusive time (ttot) of nova-compute\'s and the '
                 'driver\'s functions', 0,
                 lambda k: any(part in k for part in (
                     '/nova/compute/', '/nova/scheduler/client/',
                     '/nova/virt/', '/novadocker/')))):
            print('  grew most per boot, %s:' % title)
            for delta, was, now, key in grown(index, only):
                module, _sep, func = key.partition(' ')
                print('    %+7.1f ms  (%6.1f -> %6.1f)  %s  %s' % (
                    delta * 1000, was * 1000, now * 1000, func,
                    module.split('site-packages/')[-1]))


class ScaleBenchmark(base.IntegrationTestCase):
    """One "test" that is the whole benchmark (it needs the fixtures)."""

    def setUp(self):
        super().setUp()
        self.useFixture(net_fixtures.PrivsepInProcess())
        self.bridge = self.useFixture(net_fixtures.OVSBridge()).name
        self.port_ids = []
        self.network_leaks = self.useFixture(
            net_fixtures.NetworkLeakCheck(self.port_ids))
        # Room for N one-vCPU instances on this node (see the docstring).
        self.flags(cpu_allocation_ratio=128.0, ram_allocation_ratio=1.0,
                   disk_allocation_ratio=4.0, reserved_host_memory_mb=4096)
        self.flags(instances=-1, cores=-1, ram=-1, group='quota')
        self.context = nova_context.get_admin_context()
        self.compute.manager.update_available_resource(self.context)
        self.flavor_id = self._create_flavor(
            memory_mb=64, vcpu=1, disk=1, ephemeral=0)
        self.image_id = self.upload_image()
        # Periodic reaper passes would land in the counts: the reaper is
        # run (and counted) like the periodic tasks instead.
        self.driver._reaper_thread.stop()
        self.requests = self.useFixture(
            docker_fixtures.DockerRequests(self.driver.api))
        # How much of each boot is the driver's spawn (the rest is Nova).
        self.spawns = []
        self.docker_seconds = []   # in the driver's requests, per boot
        self.phases = []   # (to the build, the build) per boot
        self.per_boot = []   # lists of seconds per boot (timed)
        spawn = self.driver.spawn

        def timed_spawn(*args, **kwargs):
            start = time.perf_counter()
            try:
                return spawn(*args, **kwargs)
            finally:
                self.spawns.append(time.perf_counter() - start)
        self.driver.spawn = timed_spawn
        # Nova's resource tracker: the claim of each boot, and in it the
        # listing of every allocation on the node (one placement request
        # per instance of the node: _update_to_placement makes it on every
        # update, claims included).
        self.claims = self.timed(self.compute.manager.rt, 'instance_claim')
        self.alloc_listings = self.timed(
            self.compute.manager.rt.reportclient,
            'get_allocations_for_provider_tree')

    def timed(self, owner, name: str) -> typing.List[float]:
        """Wrap owner.name; the seconds of its calls, summed per boot (a
        new entry at every boot_one)."""
        durations = [0.0]
        self.per_boot.append(durations)
        method = getattr(owner, name)

        def timed_call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                durations[-1] += time.perf_counter() - start
        setattr(owner, name, timed_call)
        return durations

    # -- booting -------------------------------------------------------------

    def make_port(self, number: int) -> dict:
        """A Neutron port bound to the private bridge. Addresses repeat
        after 250: each instance has its own namespace and no traffic."""
        port = net_fixtures.bound_port(
            self.neutron, self.bridge, '192.168.1.%d' % (2 + number % 250),
            'fa:16:3e:%02x:%02x:%02x' % (
                number >> 16 & 255, number >> 8 & 255, number & 255))
        self.port_ids.append(port['id'])
        return port

    def boot_one(self, number: int) -> tuple:
        networks = ([{'port': self.make_port(number)['id']}]
                    if ARGS.ports else 'none')
        self.requests.reset()
        for durations in self.per_boot:
            durations.append(0.0)
        start = time.perf_counter()
        server = self.api.post_server({'server': {
            'name': 'scale-%d' % number, 'imageRef': self.image_id,
            'flavorRef': self.flavor_id, 'networks': networks}})
        deadline = time.time() + 300
        while True:
            found = self.api.get_server(server['id'])
            if found['status'] == 'ACTIVE':
                self.docker_seconds.append(self.requests.seconds())
                seconds = time.perf_counter() - start
                self.phases.append(self.boot_phases(server['id']))
                return server, seconds
            if found['status'] == 'ERROR' or time.time() > deadline:
                self.fail('server %d: %s %s' % (
                    number, found['status'], found.get('fault')))
            time.sleep(POLL)

    def boot_phases(self, server_id: str) -> typing.Tuple[float, float]:
        """From the create action's events (server clock): seconds from
        the API's create to nova-compute starting the build (API,
        conductor, scheduler, placement, RPC), and the build itself."""
        def at(stamp: str) -> float:
            return datetime.datetime.fromisoformat(stamp).timestamp()
        action = self.admin_api.get_instance_actions(server_id)[-1]
        details = self.admin_api.get_instance_action_details(
            server_id, action['request_id'])
        build = [event for event in details['events']
                 if event['event'] == 'compute__do_build_and_run_instance']
        if not build:
            return (math.nan, math.nan)
        return (at(build[0]['start_time']) - at(action['start_time']),
                at(build[0]['finish_time']) - at(build[0]['start_time']))

    # -- the engine's own floor ----------------------------------------------

    def raw_engine_pair(self, samples: int = 5) -> float:
        """p50 seconds of what a spawn asks of the engine, done raw: a
        sandbox created and started (network none), a second container
        created and started in its namespace, then both removed; on the
        engine as it is now (N instances' containers on it)."""
        image = self.driver._sandbox_image_id
        label = {'org.openstack.nova-docker.benchmark': 'scale-raw'}
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            made = []
            try:
                for network in ('none', 'container:%s'):
                    mode = network % made[0] if made else network
                    made.insert(0, self.docker.create_container(
                        image, labels=label, host_config=self.docker.
                        create_host_config(network_mode=mode))['Id'])
                    self.docker.start(made[0])
                times.append(time.perf_counter() - start)
            finally:
                for container in made:
                    self.docker.remove_container(container, force=True)
        return percentile(times, 50)

    # -- periodic tasks ------------------------------------------------------

    def periodic_tasks(self):
        """(name, callable) of every periodic task of nova-compute, and
        the driver's reaper."""
        manager = self.compute.manager
        tasks = [(name, (lambda task=task: task(manager, self.context)))
                 for name, task in manager._periodic_tasks]
        tasks.sort()
        tasks.append(('DockerDriver reaper (its own thread)',
                      lambda: self.driver.reap('benchmark')))
        return tasks

    def wait_for_syncs(self) -> None:
        manager = self.compute.manager
        while True:
            with manager.syncs_in_progress() as syncs:
                if not syncs:
                    return
            time.sleep(0.05)

    def count_tasks(self, instances: list) -> tuple:
        """Docker requests of one run of each task, by task name: their
        number, and what they were."""
        counts, made = {}, {}
        # The tasks' resource-tracker time is not the last boot's.
        boot_seconds = [durations[-1] for durations in self.per_boot]
        for name, run in self.periodic_tasks():
            if name.endswith(SYNC_TASK):
                # As every 10 minutes: its listing is older than its
                # max age, the last boot older than Docker's listing lag.
                self.driver._states.forget()
                time.sleep(guest.REPLICA_LAG)
            self.requests.reset()
            try:
                run()
                if name.endswith(SYNC_TASK):
                    self.wait_for_syncs()
                made[name] = self.requests.made()
                counts[name] = len(made[name])
            except Exception as exc:
                counts[name] = 'failed: %s' % exc
        self.requests.reset()
        for server in instances:
            self.driver.get_info(objects.Instance.get_by_uuid(
                self.context, server['id']), use_cache=False)
        counts[UNCACHED] = len(self.requests.made())
        for durations, seconds in zip(self.per_boot, boot_seconds):
            durations[-1] = seconds
        return counts, made

    # -- the run -------------------------------------------------------------

    def test_scale(self):
        count = ARGS.n
        points = sorted({1, count // 2 or 1, count})
        servers, boots, measured = [], [], collections.OrderedDict()
        raw = collections.OrderedDict()   # the engine's raw pair, by N
        spans = windows(count)
        profiles = (BootProfiles(spans[0][1:], spans[-1][1:], ARGS.profile)
                    if ARGS.profile else None)
        started = time.time()
        for number in range(1, count + 1):
            if profiles:
                profiles.before_boot(number)
            server, seconds = self.boot_one(number)
            if profiles:
                profiles.after_boot(number)
            servers.append(server)
            boots.append(seconds)
            if number in points:
                counts, made = self.count_tasks(servers)
                log = len(self.stdlog.logger.output) / 2.0 ** 20
                measured[number] = (counts, rss_mib(), log)
                raw[number] = self.raw_engine_pair()
                print('  N=%d booted (%.0f s so far), RSS %.0f MiB, '
                      'threads: %s' % (
                          number, time.time() - started, rss_mib(),
                          thread_census()), flush=True)
        boot_wall = time.time() - started

        started = time.time()
        for server in servers:
            self.api.delete_server(server['id'])
        for server in servers:
            self._wait_until_deleted(server)
        delete_wall = time.time() - started
        containers = self.leaks.containers()   # labelled with the host
        network_left = self.network_leaks.leftovers()
        bridge_left = net_fixtures.bridge_ports(self.bridge)
        rss_after = rss_mib()

        self.report(count, boots, boot_wall, delete_wall, measured, made,
                    containers, network_left, bridge_left, rss_after)
        print('\nthe engine\'s own floor: a sandbox + a container in its '
              'namespace created, started (and removed), raw, p50 of 5:')
        for number, seconds in raw.items():
            print('  N=%-4d %5.0f ms  (x%.2f of N=1)' % (
                number, seconds * 1000, seconds / raw[next(iter(raw))]))
        if profiles:
            profiles.report()
        self.assertEqual([], containers)
        self.assertEqual([], network_left)
        self.assertEqual([], bridge_left)

    def report(self, count, boots, boot_wall, delete_wall, measured, made,
               containers, network_left, bridge_left, rss_after):
        print('\nscale on one node: %d instances booted one after another '
              '(Docker %s, %d CPUs, %s port(s) each)' % (
                  count, self.docker.version()['Version'], os.cpu_count(),
                  ARGS.ports))
        print('boot = POST /servers -> ACTIVE (polled every %d ms), '
              'in %.0f s in all' % (POLL * 1000, boot_wall))
        first = first_without = None
        for label, a, b in windows(count):
            window = boots[a - 1:b]
            p50, p90 = percentile(window, 50), percentile(window, 90)
            first = first or p50
            spawns = self.spawns[a - 1:b]
            docker = self.docker_seconds[a - 1:b]
            print('  instances %-8s p50 %6.2f s  p90 %6.2f s   p50 x%.2f '
                  'of 1-10' % (label, p50, p90, p50 / first))
            print('    driver spawn p50 %.2f s p90 %.2f s; the driver\'s '
                  'Docker requests in the boot (all threads) p50 %.2f s '
                  'p90 %.2f s' % (
                      percentile(spawns, 50), percentile(spawns, 90),
                      percentile(docker, 50), percentile(docker, 90)))
            phases = self.phases[a - 1:b]
            to_build = [p[0] for p in phases]
            build = [p[1] for p in phases]
            rest = [boot - p[0] - p[1] for boot, p in zip(window, phases)]
            print('    p50 of: API create -> compute build start %.2f s '
                  '(API, conductor, scheduler, placement, RPC); build '
                  '%.2f s (of it the driver\'s spawn %.2f s); ACTIVE seen '
                  'by the client %.2f s later' % (
                      percentile(to_build, 50), percentile(build, 50),
                      percentile(spawns, 50), percentile(rest, 50)))
            claims = self.claims[a:b + 1]
            listings = self.alloc_listings[a:b + 1]
            print('    Nova\'s resource claim p50 %.2f s, of it listing '
                  'the node\'s allocations (a placement request per '
                  'instance) p50 %.2f s' % (percentile(claims, 50),
                                           percentile(listings, 50)))
            without = percentile([boot - listing for boot, listing in
                                  zip(window, listings)], 50)
            first_without = first_without or without
            print('    boot without that listing p50 %.2f s (x%.2f of '
                  '1-10\'s)' % (without, without / first_without))
        print('  load average at the end: %.1f' % os.getloadavg()[0])
        names = list(next(iter(measured.values()))[0])
        print('\nDocker API requests of one run of each periodic task '
              '(the driver\'s client), by instance count:')
        print('  %-46s %s' % ('task', '  '.join(
            'N=%-4d' % n for n in measured)))
        for name in names:
            print('  %-46s %s' % (name, '  '.join(
                '%-6s' % counts[name] for counts, _r, _l in
                measured.values())))
        print('  (%s: what the power-state sync made before: one list '
              'and one inspect per instance)' % UNCACHED)
        print('\nthe requests at N=%d:' % count)
        for name, requests in made.items():
            if requests:
                print('  %-46s %s' % (name, ', '.join(
                    '%s %s x%d' % (method, path, times) for (method, path),
                    times in collections.Counter(requests).items())))
        print('\nprocess RSS (API, conductor, scheduler, placement and '
              'compute in one process):')
        for number, (_counts, rss, log) in measured.items():
            print('  N=%-4d %7.0f MiB  (of which the harness\'s in-memory '
                  'log %.1f MiB)' % (number, rss, log))
        print('  after deleting all: %.0f MiB' % rss_after)
        print('\ndelete of all %d (DELETE each, then wait): %.0f s' % (
            count, delete_wall))
        print('left after the deletes: %d containers of the host, %d '
              'veth/netns, %d OVS ports on the bridge' % (
                  len(containers), len(network_left), len(bridge_left)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-n', type=int, default=200,
                        help='instances to boot (default 200)')
    parser.add_argument('--ports', type=int, choices=(0, 1), default=1,
                        help='Neutron ports per instance (default 1)')
    parser.add_argument('--profile', nargs='?', const='cpu',
                        choices=('cpu', 'wall'),
                        help='profile the first and last boots, CPU '
                        '(default) or wall-clock time (pip install yappi)')
    parser.parse_args(namespace=ARGS)
    if ARGS.profile and importlib.util.find_spec('yappi') is None:
        parser.error('--profile needs yappi: pip install yappi')
    result = unittest.TextTestResult(sys.stderr, True, 1)
    ScaleBenchmark('test_scale').run(result)
    for _case, trace in result.errors + result.failures:
        print(trace, file=sys.stderr)
    for _case, reason in result.skipped:
        print('skipped: %s' % reason, file=sys.stderr)
    return 0 if result.wasSuccessful() and not result.skipped else 1


if __name__ == '__main__':
    sys.exit(main())
