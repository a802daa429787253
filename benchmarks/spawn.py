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

"""Driver spawn + destroy of a cached image vs the raw Docker floors.

Two floors, through the Docker SDK for the same image, measured in the same
run, interleaved with the driver runs so all see the same machine load:

- ``raw sandbox + workload``: the Docker operations the driver does, done
  raw and one after the other: a sandbox container (network none) created
  and started, the workload created and started in its network namespace
  (``network_mode=container:<sandbox>``), both removed (``rm -f``);
- ``raw docker run``: one container, ``docker run -d`` (network none) +
  ``docker rm -f``.

And the driver again with the warm sandbox pool (``--pool N``, default 2;
0 skips it): each measured spawn finds the pool full (boots spaced more
than a refill apart), claims a running sandbox and makes and starts only
the workload, so its floor is one ``docker run -d``. Spawn alone (to the
workload running) is printed next to the raw create + start, and
spawn+destroy next to the raw run + rm. No ports here: the raw plug of a
port is benchmarks/plug.py's floor, the same with or without the pool.

The driver does more on purpose (a cache check, labels, limits, the
command check); it also overlaps what does not depend on each other.

    python benchmarks/spawn.py [-n 10] [--profile]

``--profile`` adds where the driver's spawn+destroy time goes (Docker API
requests, waits, Python work; benchmarks/breakdown.py) next to the raw
floor.

Needs root and a running Docker engine; builds its test image locally
(no registry) and removes everything it created.
"""

import argparse
import os
import random
import statistics
import sys
import time
import uuid
import warnings

warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
warnings.simplefilter('ignore', DeprecationWarning)
os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

# First, as nova-compute does: nova's threading mode (tests/__init__.py
# applies monkey_patch before anything imports eventlet).
import tests  # noqa: E402,F401,I100  isort:skip

from benchmarks import breakdown  # noqa: E402
import fixtures  # noqa: E402
from nova import context as nova_context  # noqa: E402
from nova import objects  # noqa: E402
from nova.virt import fake as fake_virt  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402

import nova.conf  # noqa: E402,F401  (registers nova's options)
from novadocker import conf  # noqa: E402
from novadocker.virt.docker import driver as docker_driver  # noqa: E402
from novadocker.virt.docker import images  # noqa: E402
from novadocker.virt.docker import privsep as nd_privsep  # noqa: E402
from tests.fixtures import docker as docker_fixtures  # noqa: E402
from tests.fixtures import glance as glance_fixtures  # noqa: E402
from tests.fixtures import images as image_fixtures  # noqa: E402
from tests.fixtures import objects as obj_fixtures  # noqa: E402

CONF = conf.CONF


def percentile(values, fraction):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-n', type=int, default=10,
                        help='measured iterations of each (default 10)')
    parser.add_argument('--pool', type=int, default=2,
                        help='sandbox_pool_size of the pool variant '
                             '(default 2; 0: no pool variant)')
    parser.add_argument('--profile', action='store_true',
                        help='also print where the driver\'s time goes')
    args = parser.parse_args()
    objects.register_all()
    profile = breakdown.Breakdown()
    profile.enabled = False
    if args.profile:
        profile.patch_docker()
        profile.patch_waits()
        profile.name_thread('spawn+destroy (driver)')

    host = 'ndbench-%s' % uuid.uuid4().hex[:8]
    with fixtures.TempDir() as tmp, \
            config_fixture.Config(CONF) as cfg, \
            glance_fixtures.GlanceFixture() as glance_fixture:
        cfg.config(host=host, state_path=tmp.path, instances_path=tmp.path,
                   vif_plugging_timeout=0)
        cfg.config(sandbox_pool_size=args.pool, group='docker')
        # The pool's hostname and DNS through a real privsep daemon, as
        # nova-compute runs it (one socket round trip per call).
        cfg.config(helper_command='env PYTHONPATH=%s %s' % (
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            os.path.join(os.path.dirname(sys.executable), 'privsep-helper')),
            group=nd_privsep.identity.cfg_section)
        glance = glance_fixture.api
        api = docker_fixtures.docker_api()
        ctx = nova_context.get_admin_context()
        driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        driver.init_host(host)
        meta = obj_fixtures.image_meta(
            glance.add(image_fixtures.default_image_tarball()))

        def new_instance():
            return obj_fixtures.instance(
                vcpus=1, memory_mb=128, host=host, context=ctx,
                id=random.randint(2 ** 20, 2 ** 31 - 1), image_ref=meta.id,
                hostname='bench')

        def driver_once(pooled=False):
            """(spawn, spawn + destroy) seconds; pooled: from a full pool,
            else with the pool off (each spawn makes its sandbox)."""
            cfg.config(sandbox_pool_size=args.pool if pooled else 0,
                       group='docker')
            if pooled:
                wait_pool_full()
            instance = new_instance()
            profile.enabled = args.profile and not pooled
            start = time.perf_counter()
            driver.spawn(ctx, instance, meta, [], None, {}, network_info=[])
            spawned = time.perf_counter() - start
            driver.destroy(ctx, instance, [])
            elapsed = time.perf_counter() - start
            profile.enabled = False
            return spawned, elapsed

        def wait_pool_full():
            if not driver._pool.wait_full():
                raise RuntimeError('the sandbox pool did not refill')
            time.sleep(0.2)   # the refill's last requests have settled

        tag = images.glance_tag(meta.id)

        def raw_once(pair=False):
            """docker run -d (network none) [+ a second container in its
            namespace], then rm -f of each, newest first: (up, total)
            seconds."""
            start = time.perf_counter()
            ids = []
            for _ in range(2 if pair else 1):
                network = 'container:%s' % ids[0] if ids else 'none'
                ids.insert(0, api.create_container(
                    tag, detach=True, tty=True,
                    host_config=api.create_host_config(
                        network_mode=network))[
                    'Id'])
                api.start(ids[0])
            up = time.perf_counter() - start
            for container_id in ids:
                api.remove_container(container_id, force=True)
            return up, time.perf_counter() - start

        try:
            # Warm-up: loads the image into the cache (not measured).
            driver_once()
            if args.pool:
                driver_once(pooled=True)
            raw_once()
            raw_once(pair=True)
            profile.seconds.clear()
            profile.calls.clear()
            runs = {'driver': [], 'pool': [], 'pair': [], 'raw': []}
            for _ in range(args.n):
                runs['driver'].append(driver_once())
                if args.pool:
                    runs['pool'].append(driver_once(pooled=True))
                runs['pair'].append(raw_once(pair=True))
                runs['raw'].append(raw_once())
        finally:
            driver.cleanup_host(host)
            nd_privsep.identity.stop()
            for container in api.containers(all=True, filters={
                    'label': ['org.openstack.nova.host=%s' % host]}):
                api.remove_container(container['Id'], force=True)
            images.ImageStore(api).remove(tag, force=True)

    version = api.version()['Version']
    driver_times = [total for _up, total in runs['driver']]
    pair_times = [total for _up, total in runs['pair']]
    raw_times = [total for _up, total in runs['raw']]
    for phase, index, raw_name in (
            ('spawn+destroy', 1, 'docker run -d + rm -f'),
            ('spawn (to the workload running)', 0,
             'docker create + start')):
        print('%s of a cached image, n=%d (Docker %s)' % (
            phase, args.n, version))
        rows = [('driver (sandbox + workload)', runs['driver'])]
        if args.pool:
            rows.append(('driver, warm pool of %d' % args.pool,
                         runs['pool']))
        floors = [('raw sandbox + workload (SDK)', runs['pair']),
                  ('raw %s (SDK)' % raw_name, runs['raw'])]
        for name, times in rows:
            times = [t[index] for t in times]
            print('  %-36s p50 %7.1f ms  p90 %7.1f ms' % (
                name, percentile(times, .5) * 1000,
                percentile(times, .9) * 1000))
        for name, times in floors:
            times = [t[index] for t in times]
            r50, r90 = percentile(times, .5), percentile(times, .9)
            ratios = '  '.join(
                '%s/raw p50 x%.2f p90 x%.2f' % (
                    'pool' if 'pool' in row else 'driver',
                    percentile([t[index] for t in got], .5) / r50,
                    percentile([t[index] for t in got], .9) / r90)
                for row, got in rows)
            print('  %-36s p50 %7.1f ms  p90 %7.1f ms   %s' % (
                name, r50 * 1000, r90 * 1000, ratios))
    print('  mean spawn+destroy: driver %.1f ms, raw sandbox + workload '
          '%.1f ms, raw docker run %.1f ms' % (
              statistics.mean(driver_times) * 1000,
              statistics.mean(pair_times) * 1000,
              statistics.mean(raw_times) * 1000))
    if args.profile:
        profile.undo()
        profile.report('spawn+destroy', args.n,
                       {profile.role(): sum(driver_times)},
                       [('raw sandbox + workload (SDK), mean',
                         statistics.mean(pair_times)),
                        ('docker create + start + rm -f (SDK), mean',
                         statistics.mean(raw_times))])


if __name__ == '__main__':
    main()
