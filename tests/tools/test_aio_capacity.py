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

"""The all-in-one's nova.conf sizes the node for containers: forty
m1.tiny instances fit a 2-core host (issue 13: the 33rd boot found "No
valid host" with cpu_allocation_ratio = 16)."""

import ast
import os
import sys

import fixtures
from nova.conf import compute as nova_compute_conf
from oslo_config import cfg
import testtools

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, 'tools'))
from tests import tools as tools_tests  # noqa: E402

CAPACITY_OPTIONS = ('cpu_allocation_ratio', 'ram_allocation_ratio',
                    'disk_allocation_ratio', 'reserved_host_memory_mb',
                    'reserved_host_disk_mb')


def _aio_flavors() -> dict:
    """cloud.FLAVORS, read without importing openstacksdk."""
    with open(os.path.join(REPO, 'tools/ndtools/cloud.py')) as source:
        tree = ast.parse(source.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and \
                getattr(node.targets[0], 'id', None) == 'FLAVORS':
            return {name: {'ram': ram, 'vcpus': vcpus, 'disk': disk}
                    for _id, name, ram, vcpus, disk in
                    ast.literal_eval(node.value)}
    raise AssertionError('no FLAVORS in cloud.py')


class AioCapacityTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        path = tools_tests.write_aio_nova_conf(
            self.useFixture(fixtures.TempDir()).path)
        self.conf = cfg.ConfigOpts()
        self.conf.register_opts([opt for opt in nova_compute_conf.ALL_OPTS
                                 if opt.name in CAPACITY_OPTIONS])
        self.conf(['--config-file', path], project='nova')

    def capacity(self, resource: str, total: float) -> float:
        """What placement lets the node hold, as hostinfo.inventory
        reports it with these options."""
        ratio, reserved = {
            'vcpus': (self.conf.cpu_allocation_ratio, 0),
            'ram': (self.conf.ram_allocation_ratio,
                    self.conf.reserved_host_memory_mb),
            'disk': (self.conf.disk_allocation_ratio,
                     self.conf.reserved_host_disk_mb / 1024)}[resource]
        return (total - reserved) * ratio

    def test_forty_tiny_instances_fit_a_small_host(self):
        tiny = _aio_flavors()['m1.tiny']
        # 2 cores, 16 GiB, and the smallest Docker data root the
        # all-in-one makes (its engine's 20 GB btrfs file).
        host = {'vcpus': 2, 'ram': 16 * 1024, 'disk': 20}
        for resource, total in host.items():
            self.assertGreaterEqual(
                self.capacity(resource, total), 40 * tiny[resource],
                resource)

    def test_ram_is_not_overcommitted(self):
        # The flavor's RAM is a hard limit: the node never promises more
        # than it has.
        self.assertEqual(1.0, self.conf.ram_allocation_ratio)
        self.assertGreater(self.conf.reserved_host_memory_mb, 512)
