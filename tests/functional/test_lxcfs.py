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

"""The workload sees its flavor through LXCFS, on the real engine: the
RAM, the vCPUs and its own uptime, read by Debian's own tools."""

import functools
import os
import re
import subprocess
import time

import fixtures

from novadocker import conf
from novadocker.virt.docker import guest
from tests.fixtures import docker as docker_fixtures
from tests.fixtures import images as image_fixtures
from tests.functional import base
from tests.functional import test_lifecycle

CONF = conf.CONF
wait_for = test_lifecycle.wait_for
# Debian's tools (procps, coreutils, libc-bin), as a Debian image has them.
TOOLS = ('/usr/bin/free', '/usr/bin/nproc', '/usr/bin/getconf',
         '/usr/bin/uptime')


def _with_libraries(binary: str) -> list:
    """The binary and the shared objects ldd says it loads."""
    out = subprocess.run(['ldd', binary], check=True, capture_output=True,
                         text=True).stdout
    return [binary] + re.findall(r'(/\S+) \(0x', out)


@functools.lru_cache(maxsize=None)
def tools_image() -> bytes:
    files = {}
    for tool in TOOLS:
        for path in _with_libraries(tool):
            with open(os.path.realpath(path), 'rb') as f:
                files[path.lstrip('/')] = f.read()
    return image_fixtures.build_saved_image(
        changes=('CMD ["/bin/sleep", "2147483647"]',), extra_files=files)


def host_meminfo_kb() -> int:
    with open('/proc/meminfo') as f:
        return int(f.readline().split()[1])


class LxcfsTest(base.DriverTestCase):

    def setUp(self):
        super().setUp()
        path = CONF.docker.lxcfs_path
        if not (os.path.ismount(path) and
                os.path.exists(os.path.join(path, 'proc/meminfo'))):
            docker_fixtures.require_functional_missing(
                self, 'LXCFS is not mounted at %s (tools/run-tests starts '
                      'it: lxcfs --enable-cfs %s)' % (path, path))

    def read(self, instance, *cmd) -> str:
        """Output of a command inside; under load an exec's output came
        back empty once (Docker's exec attach race, or an lxcfs hiccup):
        read again rather than fail on an empty string."""
        out = []
        wait_for(lambda: out.append(self.exec_in(instance, *cmd)) or
                 out[-1].strip(), 'output of %s' % (cmd,))
        return out[-1]

    def view(self, instance) -> dict:
        """What the tools inside say."""
        run = functools.partial(self.read, instance)
        free = run('/usr/bin/free', '-k').splitlines()[1].split()
        return {
            'MemTotal': int(run('grep', 'MemTotal', '/proc/meminfo')
                            .split()[1]),
            'free': int(free[1]),
            'cpuinfo': run('grep', '-c', '^processor',
                           '/proc/cpuinfo').strip(),
            'stat_cpus': len(re.findall(r'^cpu\d+ ', run('cat', '/proc/stat'),
                                        re.M)),
            'online': run('cat', '/sys/devices/system/cpu/online').strip(),
            'getconf': run('/usr/bin/getconf',
                           '_NPROCESSORS_ONLN').strip(),
            'nproc': run('/usr/bin/nproc').strip(),
            'uptime': float(run('cat', '/proc/uptime').split()[0]),
            'swaps': run('cat', '/proc/swaps').strip().splitlines(),
        }

    def test_flavor_ram_vcpus_and_uptime(self):
        host_cpus = os.cpu_count()
        for vcpus, memory_mb in ((1, 192), (min(2, host_cpus), 96)):
            instance = self.spawn(self.add_image(tools_image()),
                                  vcpus=vcpus, memory_mb=memory_mb)
            view = self.view(instance)
            print('flavor %d vCPU %d MiB (host %d CPUs): %s'
                  % (vcpus, memory_mb, host_cpus, view))
            self.assertEqual(memory_mb * 1024, view['MemTotal'])
            self.assertEqual(memory_mb * 1024, view['free'])
            self.assertEqual(str(vcpus), view['cpuinfo'])
            self.assertEqual(vcpus, view['stat_cpus'])
            self.assertEqual('0' if vcpus == 1 else '0-%d' % (vcpus - 1),
                             view['online'])
            self.assertEqual(str(vcpus), view['getconf'])
            # No swap beyond the flavor's RAM: an empty table.
            self.assertEqual(1, len(view['swaps']))
            with open('/proc/uptime') as f:
                self.assertLess(view['uptime'], float(f.read().split()[0]))
            self.assertIn('load average',
                          self.exec_in(instance, '/usr/bin/uptime'))

    def test_uptime_restarts_at_hard_reboot(self):
        instance = self.spawn(self.add_image(tools_image()))
        uptime = lambda: float(self.read(   # noqa: E731
            instance, 'cat', '/proc/uptime').split()[0])
        wait_for(lambda: uptime() >= 2, 'an uptime of 2 s')
        before, read_at = uptime(), time.monotonic()
        self.driver.reboot(self.context, instance, [], 'HARD')
        after = uptime()
        elapsed = time.monotonic() - read_at
        print('uptime %.2f before, %.2f after a hard reboot %.2f s later'
              % (before, after, elapsed))
        # Without a restart it would read before + elapsed.
        self.assertLess(after, before + elapsed - 1)

    def test_option_off_the_host_shows(self):
        self.conf.config(lxcfs_path='', group='docker')
        instance = self.spawn(self.add_image(tools_image()), memory_mb=64)
        self.assertNotIn('Binds', {
            k: v for k, v in self.inspect(instance)['HostConfig'].items()
            if v})
        view = self.view(instance)
        self.assertEqual(host_meminfo_kb(), view['MemTotal'])
        self.assertEqual(str(os.cpu_count()), view['cpuinfo'])

    def test_cpu_shares_only_the_host_cpus_show(self):
        """LXCFS counts CPUs from the CFS quota (--enable-cfs) or the
        cpuset; shares alone ([docker]cpu_quota=False) are a weight."""
        self.conf.config(cpu_quota=False, group='docker')
        instance = self.spawn(self.add_image(tools_image()), vcpus=1)
        self.assertEqual(str(os.cpu_count()), self.view(instance)['cpuinfo'])

    def test_lxcfs_missing_boots_and_logs_once(self):
        self.conf.config(lxcfs_path=self.useFixture(fixtures.TempDir()).path,
                         group='docker')
        logs = self.useFixture(fixtures.FakeLogger(name=guest.__name__))
        first, second = self.spawn(memory_mb=64), self.spawn(memory_mb=64)
        for instance in (first, second):
            self.assertFalse(self.inspect(instance)['HostConfig']['Binds'])
            self.assertEqual(host_meminfo_kb(), int(self.exec_in(
                instance, 'grep', 'MemTotal', '/proc/meminfo').split()[1]))
        self.assertEqual(1, logs.output.count('LXCFS is not mounted'))
