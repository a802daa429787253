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

"""The all-in-one's own engine: everything under AIO_DIR, nothing of the
host's engine (its socket, data root, bridge, iptables rules) used.
The engine itself runs for real in `tools/aio up` (scenario tests)."""

import testtools

from ndtools import aio_state
from ndtools import engine


class EngineTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.settings = aio_state.Settings({'AIO_DIR': '/srv/aio',
                                            'AIO_DOCKER_GB': '7'})
        self.engine = engine.Engine(aio_state.State(self.settings))

    def test_paths_under_aio_dir(self):
        s = self.settings
        self.assertEqual(7, s.engine_gb)
        self.assertEqual('unix:///srv/aio/run/docker.sock', s.docker_host)
        for path in (s.engine_file, s.engine_root, s.docker_socket,
                     self.engine.containerd_socket):
            self.assertTrue(path.startswith('/srv/aio/'), path)

    def test_dockerd_is_private_and_on_btrfs(self):
        argv = self.engine.argv()
        joined = ' '.join(argv)
        self.assertNotIn('/var/run/docker.sock', joined)
        self.assertNotIn('/var/lib/docker', joined)

        def value(flag):
            return argv[argv.index(flag) + 1]
        self.assertEqual('btrfs', value('--storage-driver'))
        self.assertEqual('none', value('--bridge'))
        self.assertEqual(self.settings.docker_host, value('--host'))
        self.assertEqual('/srv/aio/docker', value('--data-root'))
        self.assertEqual(self.engine.containerd_socket, value('--containerd'))
        self.assertIn('--iptables=false', argv)
        self.assertIn('--live-restore', argv)

    def test_containerd_keeps_its_state_beside_the_engine(self):
        config = self.engine.containerd_config()
        self.assertIn('root = "/srv/aio/docker/containerd"', config)
        self.assertIn('address = "/srv/aio/run/containerd.sock"', config)
