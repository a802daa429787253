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

    sudo /opt/nova-docker-aio/venv/bin/python benchmarks/boot.py [-n 10]
"""

import argparse
import math
import os
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


def measure(conn, count, image, flavor, network, sg):
    boots, deletes, servers = [], [], []
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
        for server_id in list(servers):
            start = time.time()
            conn.compute.delete_server(server_id)
            wait(conn, server_id, lambda s: s is None)
            deletes.append(time.time() - start)
            servers.remove(server_id)
    finally:
        for server_id in servers:
            conn.compute.delete_server(server_id, ignore_missing=True)
    return boots, deletes


def report(name, values):
    return '%-6s p50 %6.2fs  p90 %6.2fs  (min %.2f, max %.2f)' % (
        name, percentile(values, 50), percentile(values, 90), min(values),
        max(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('-n', '--count', type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault('OS_CLIENT_CONFIG_FILE',
                          os.path.join(AIO_DIR, 'clouds.yaml'))
    conn = openstack.connect(cloud='aio')
    image = conn.image.find_image('busybox', ignore_missing=False)
    flavor = conn.compute.find_flavor('m1.tiny', ignore_missing=False)
    network = conn.network.find_network('private', ignore_missing=False)
    sg = 'demo-ssh-icmp'

    original = current_driver()
    results = {}
    try:
        for driver in (DOCKER, FAKE):
            if current_driver() != driver:
                switch(driver)
            print('measuring %s: %d servers...' % (driver, args.count),
                  flush=True)
            results[driver] = measure(conn, args.count, image, flavor,
                                      network, sg)
    finally:
        if current_driver() != original:
            switch(original)

    print('\nboot = POST /servers -> ACTIVE (DockerDriver: ports plugged '
          'and bound, container running); delete = DELETE -> gone. '
          'N=%d each.' % args.count)
    for driver, (boots, deletes) in results.items():
        print(driver)
        print('  ' + report('boot', boots))
        print('  ' + report('delete', deletes))
    if len(results) == 2:
        (db, dd), (fb, fd) = results[DOCKER], results[FAKE]
        for name, docker_values, fake_values in (('boot', db, fb),
                                                 ('delete', dd, fd)):
            for pct in (50, 90):
                d = percentile(docker_values, pct)
                f = percentile(fake_values, pct)
                print('DockerDriver / fake driver, %s p%d: x%.2f (%+.2fs)'
                      % (name, pct, d / f, d - f))


if __name__ == '__main__':
    sys.exit(main())
