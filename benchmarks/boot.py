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

"""Boot and delete times through the API on the all-in-one (tools/aio up).

For each driver in turn (DockerDriver, then Nova's fake driver as the
floor: same API, scheduler, conductor, Neutron/OVN binding, only the
compute driver differs) it boots N servers one after another on the
demo network and times POST -> ACTIVE, then times DELETE -> gone. It
restarts nova-compute between the drivers (``tools/aio compute-driver``)
and restores the original driver at the end. The difference is what the
driver and the real network plugging cost.

``--pool N`` measures DockerDriver a second time with a warm sandbox pool
of N (``[docker] sandbox_pool_size``), removed again at the end.

    sudo /opt/nova-docker-aio/venv/bin/python benchmarks/boot.py [-n 10] \
        [--pool 2]
"""

import argparse
import datetime
import glob
import math
import os
import re
import subprocess
import sys
import time
import uuid

import openstack

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AIO_DIR = os.environ.get('AIO_DIR', '/opt/nova-docker-aio')
DOCKER = 'docker.DockerDriver'
FAKE = 'fake.FakeDriverWithoutFakeNodes'
POLL = 0.2


def percentile(values, pct):
    """Nearest-rank percentile (no interpolation: N is small)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def current_driver() -> str:
    with open(os.path.join(AIO_DIR, 'etc/nova/nova.conf')) as conf:
        for line in conf:
            if line.startswith('compute_driver'):
                return line.split('=', 1)[1].strip()
    raise RuntimeError('compute_driver not found in nova.conf')


def switch(driver: str) -> None:
    subprocess.run([os.path.join(TOP, 'tools/aio'), 'compute-driver',
                    driver], check=True)


def set_pool(size: int) -> None:
    """[docker] sandbox_pool_size in nova.conf (0: the line removed);
    nova-compute reads it when it is restarted."""
    path = os.path.join(AIO_DIR, 'etc/nova/nova.conf')
    with open(path) as conf:
        text = re.sub(r'(?m)^sandbox_pool_size = .*\n', '', conf.read())
    if size:
        text, found = re.subn(r'(?m)^\[docker\]\n', '[docker]\n'
                              'sandbox_pool_size = %d\n' % size, text,
                              count=1)
        if not found:
            raise RuntimeError('no [docker] section in %s' % path)
    with open(path, 'w') as conf:
        conf.write(text)


def wait(conn, server_id, until, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        server = conn.compute.find_server(server_id)
        if until(server):
            return server
        if server is not None and server.status == 'ERROR':
            raise RuntimeError('server %s ERROR: %s' % (
                server_id, (server.fault or {}).get('message')))
        time.sleep(POLL)
    raise RuntimeError('server %s: timeout' % server_id)


def stamp(text: str) -> float:
    return datetime.datetime.fromisoformat(text.rstrip('Z')).timestamp()


def phases(conn, server_id) -> tuple:
    """From the create action's events (the server's clock): seconds from
    the API's create to nova-compute starting the build (API, conductor,
    scheduler, placement, RPC), and the build (claim, Neutron port
    creation and binding, the driver's spawn)."""
    action = list(conn.compute.server_actions(server_id))[-1]
    detail = conn.compute.get_server_action(action.request_id, server_id)
    for event in detail.events or []:
        if event['event'] == 'compute__do_build_and_run_instance':
            return (stamp(event['start_time']) - stamp(action.start_time),
                    stamp(event['finish_time']) - stamp(event['start_time']))
    return (math.nan, math.nan)


def spawn_seconds(server_ids) -> list:
    """nova-compute's own "Took N seconds to spawn the instance on the
    hypervisor" of each server (its log), where found."""
    wanted = set(server_ids)
    found = {}
    pattern = re.compile(r'\[instance: ([0-9a-f-]{36})\] Took ([0-9.]+) '
                         r'seconds to spawn the instance')
    for path in glob.glob(os.path.join(AIO_DIR, 'logs', '*.log')):
        with open(path, errors='replace') as log:
            for line in log:
                match = pattern.search(line)
                if match and match.group(1) in wanted:
                    found[match.group(1)] = float(match.group(2))
    return [found[i] for i in server_ids if i in found]


def measure(conn, count, image, flavor, network, sg):
    boots, deletes, servers, split, made = [], [], [], [], []
    tag = uuid.uuid4().hex[:6]
    try:
        for i in range(count):
            start = time.time()
            server = conn.compute.create_server(
                name='bench-%s-%d' % (tag, i), image_id=image.id,
                flavor_id=flavor.id, networks=[{'uuid': network.id}],
                security_groups=[{'name': sg}])
            servers.append(server.id)
            wait(conn, server.id,
                 lambda s: s is not None and s.status == 'ACTIVE')
            boots.append(time.time() - start)
            made.append(server.id)
            split.append(phases(conn, server.id))
        for server_id in list(servers):
            start = time.time()
            conn.compute.delete_server(server_id)
            wait(conn, server_id, lambda s: s is None)
            deletes.append(time.time() - start)
            servers.remove(server_id)
    finally:
        for server_id in servers:
            conn.compute.delete_server(server_id, ignore_missing=True)
    return boots, deletes, split, spawn_seconds(made)


def report(name, values):
    return '%-6s p50 %6.2fs  p90 %6.2fs  (min %.2f, max %.2f)' % (
        name, percentile(values, 50), percentile(values, 90), min(values),
        max(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('-n', '--count', type=int, default=10)
    parser.add_argument('--pool', type=int, default=0,
                        help='also DockerDriver with a warm sandbox pool '
                        'of this size')
    args = parser.parse_args()
    os.environ.setdefault('OS_CLIENT_CONFIG_FILE',
                          os.path.join(AIO_DIR, 'clouds.yaml'))
    conn = openstack.connect(cloud='aio')
    image = conn.image.find_image('busybox', ignore_missing=False)
    flavor = conn.compute.find_flavor('m1.tiny', ignore_missing=False)
    network = conn.network.find_network('private', ignore_missing=False)
    sg = 'demo-ssh-icmp'

    original = current_driver()
    pooled = '%s, sandbox_pool_size %d' % (DOCKER, args.pool)
    variants = [(DOCKER, DOCKER, 0)]
    if args.pool:
        variants.append((pooled, DOCKER, args.pool))
    variants.append((FAKE, FAKE, 0))
    # Docker images name their hypervisor (hypervisor_type=docker, for
    # ImagePropertiesFilter beside a KVM node): the fake driver's is
    # 'fake', so the image says so while it runs.
    admin = openstack.connect(cloud='aio-admin')
    hv_type = image.hypervisor_type
    results = {}
    try:
        set_pool(0)
        for name, driver, pool in variants:
            if pool:
                set_pool(pool)
                switch(driver)
                time.sleep(5)   # the pool fills after init_host
            elif current_driver() != driver:
                switch(driver)
            if hv_type:
                admin.image.update_image(
                    image, hypervisor_type='fake' if driver == FAKE
                    else hv_type)
            print('measuring %s: %d servers...' % (name, args.count),
                  flush=True)
            results[name] = measure(conn, args.count, image, flavor,
                                    network, sg)
            if pool:
                set_pool(0)
    finally:
        if hv_type:
            admin.image.update_image(image, hypervisor_type=hv_type)
        set_pool(0)
        switch(original)

    print('\nboot = POST /servers -> ACTIVE (DockerDriver: ports plugged '
          'and bound, container running); delete = DELETE -> gone. '
          'N=%d each.' % args.count)
    for driver, (boots, deletes, split, spawns) in results.items():
        print(driver)
        print('  ' + report('boot', boots))
        print('  ' + report('delete', deletes))
        print('  p50 of: API create -> build start %.2fs; build %.2fs '
              '(claim, Neutron port, spawn); driver spawn %s' % (
                  percentile([p[0] for p in split], 50),
                  percentile([p[1] for p in split], 50),
                  '%.2fs' % percentile(spawns, 50) if spawns else 'n/a'))
    if FAKE in results:
        fb, fd = results[FAKE][:2]
        for variant in (DOCKER, pooled):
            if variant not in results:
                continue
            db, dd = results[variant][:2]
            for name, docker_values, fake_values in (('boot', db, fb),
                                                     ('delete', dd, fd)):
                for pct in (50, 90):
                    d = percentile(docker_values, pct)
                    f = percentile(fake_values, pct)
                    print('%s / fake driver, %s p%d: x%.2f (%+.2fs)'
                          % (variant, name, pct, d / f, d - f))


if __name__ == '__main__':
    sys.exit(main())
