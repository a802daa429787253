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

"""The all-in-one's nova.conf as nova-scheduler reads it: Nova's default
filters plus the same_host/different_host hints, which the multi-node
scenario tests and Tempest's multi-node tests place servers with."""

import os
import sys

import fixtures
from nova.conf import scheduler as nova_scheduler_conf
from oslo_config import cfg
import testtools

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, 'tools'))
from tests import tools as tools_tests  # noqa: E402


class AioSchedulerFiltersTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        path = tools_tests.write_aio_nova_conf(
            self.useFixture(fixtures.TempDir()).path)
        self.conf = cfg.ConfigOpts()
        nova_scheduler_conf.register_opts(self.conf)
        self.conf(['--config-file', path], project='nova')

    def test_hint_filters_are_enabled(self):
        enabled = self.conf.filter_scheduler.enabled_filters
        self.assertIn('SameHostFilter', enabled)
        self.assertIn('DifferentHostFilter', enabled)

    def test_nova_default_filters_are_kept(self):
        defaults = cfg.ConfigOpts()
        nova_scheduler_conf.register_opts(defaults)
        defaults([], project='nova')
        enabled = self.conf.filter_scheduler.enabled_filters
        for name in defaults.filter_scheduler.enabled_filters:
            self.assertIn(name, enabled)

    def test_every_filter_exists_in_nova(self):
        from nova.scheduler import filters
        known = {cls.__name__ for cls in
                 filters.HostFilterHandler().get_all_classes()}
        for name in self.conf.filter_scheduler.enabled_filters:
            self.assertIn(name, known)
