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
"""The all-in-one's settings, steps and record of what it started.

Everything the all-in-one writes lives under AIO_DIR (venv, configs,
databases' file store, logs, PID files); packages go to the system. Every
process ``up`` starts has a PID file in RUN and a line in RUN/started, so
that ``down`` and ``clean`` undo exactly that and nothing else (dockerd,
OVS, MariaDB... may have been running already: then they are used, never
stopped). Standard library only.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import typing
import urllib.error
import urllib.request

from ndtools import host

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
T0 = time.time()

# Services in start order; `down` stops them in reverse.
SERVICES = ('keystone', 'placement', 'glance', 'neutron-api',
            'neutron-ovn-maint', 'neutron-periodic', 'nova-api',
            'nova-api-metadata', 'neutron-ovn-metadata-agent',
            'nova-serialproxy', 'nova-conductor', 'nova-scheduler',
            'nova-compute', 'horizon')


class StepFailed(Exception):
    """A step could not do what it says; the message goes to its log."""


class Settings:
    """The environment variables of tools/aio and the paths they give."""

    def __init__(self, env: typing.Mapping[str, str] = os.environ):
        self.aio_dir = env.get('AIO_DIR', '/opt/nova-docker-aio')
        self.venv = os.path.join(self.aio_dir, 'venv')
        self.bin = os.path.join(self.venv, 'bin')
        self.etc = os.path.join(self.aio_dir, 'etc')
        self.data = os.path.join(self.aio_dir, 'data')
        self.run = os.path.join(self.aio_dir, 'run')
        self.logs = os.path.join(self.aio_dir, 'logs')
        # Debian's interpreter (what a fresh Debian 12 has), not whatever
        # is first in PATH: uwsgi is compiled against its headers
        # (python3-dev).
        self.python = env.get('AIO_PYTHON', '/usr/bin/python3')
        # docker.DockerDriver (default) or e.g.
        # fake.FakeDriverWithoutFakeNodes.
        self.compute_driver = env.get('AIO_COMPUTE_DRIVER') or env.get(
            'COMPUTE_DRIVER') or 'docker.DockerDriver'
        self.password = env.get('AIO_PASSWORD', 'secret')
        self.db_url = 'mysql+pymysql://openstack:%s@127.0.0.1' % self.password
        self.rabbit = 'rabbit://guest:guest@127.0.0.1:5672/'
        # The external ("public") network: a flat provider network on an
        # OVS bridge of its own, with the host's address on it. No uplink
        # and no NAT: floating IPs are reachable from this host only.
        self.ext_bridge = env.get('AIO_EXT_BRIDGE', 'br-aio-ex')
        self.ext_cidr = env.get('AIO_EXT_CIDR', '172.24.4.0/24')
        self.ext_host_ip = env.get('AIO_EXT_HOST_IP', '172.24.4.1')
        self.ext_pool_start = env.get('AIO_EXT_POOL_START', '172.24.4.10')
        self.ext_pool_end = env.get('AIO_EXT_POOL_END', '172.24.4.250')
        self.private_cidr = env.get('AIO_PRIVATE_CIDR', '10.20.0.0/24')
        self.skip_demo_server = env.get('AIO_SKIP_DEMO_SERVER', '0') == '1'
        # Where the packages put the docker command: docker.io up to
        # bookworm, docker-cli from trixie on (docker.io 26 only recommends
        # it, and recommends are not installed here). Another docker on
        # PATH does not count.
        self.docker_cli = env.get('AIO_DOCKER_CLI', '/usr/bin/docker')
        # The all-in-one's own engine (ndtools.engine): a btrfs loop file
        # as its data root, so flavors' root_gb is a real limit.
        self.engine_gb = int(env.get('AIO_DOCKER_GB', '20'))
        self.engine_file = os.path.join(self.aio_dir, 'docker.btrfs')
        self.engine_root = os.path.join(self.aio_dir, 'docker')
        self.docker_socket = os.path.join(self.run, 'docker.sock')
        self.docker_host = 'unix://' + self.docker_socket
        self.scenario_concurrency = env.get('AIO_SCENARIO_CONCURRENCY', '2')
        # 3 workers on 2 cores: Tempest mostly waits (servers building,
        # SSH, pings), and since its classes share one network
        # (tempest_conf) Neutron no longer saturates the cores: the
        # selection took 19 min with 3 (quiet machine), 37 with 2 (other
        # work running), 45 with 2 before (README, Tempest).
        self.tempest_concurrency = env.get('AIO_TEMPEST_CONCURRENCY', '3')
        self.tempest_venv = os.path.join(self.aio_dir, 'tempest-venv')
        self.tempest_ws = os.path.join(self.aio_dir, 'tempest')
        self.clouds_yaml = os.path.join(self.aio_dir, 'clouds.yaml')
        # The dashboard (ndtools.aio_horizon): a venv of its own, its
        # collected and compressed static files kept in it.
        self.horizon_venv = os.path.join(self.aio_dir, 'horizon-venv')
        self.horizon_port = int(env.get('AIO_HORIZON_PORT', '8090'))

    def exe(self, name: str) -> str:
        """A command of the services' venv."""
        return os.path.join(self.bin, name)


def elapsed() -> str:
    return '%6.1f' % (time.time() - T0)


def say(message: str) -> None:
    print('[%ss] %s' % (elapsed(), message), flush=True)


def warn(message: str) -> None:
    print('[%ss] WARNING: %s' % (elapsed(), message), file=sys.stderr,
          flush=True)


def die(message: str) -> typing.NoReturn:
    print('tools/aio: %s' % message, file=sys.stderr, flush=True)
    sys.exit(1)


def sh(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    """A command that must succeed (its output goes where ours goes)."""
    result = subprocess.run(list(argv), **kwargs)
    if result.returncode != 0:
        raise StepFailed('%s exited %d' % (' '.join(argv), result.returncode))
    return result


def output(*argv: str) -> str:
    """A command's stdout ('' when it fails)."""
    return subprocess.run(list(argv), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True).stdout


def http_ok(url: str) -> bool:
    """Something answers HTTP at ``url`` (any status)."""
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def port_open(address: str, port: int) -> bool:
    """Something accepts TCP connections at address:port."""
    try:
        socket.create_connection((address, port), timeout=2).close()
    except OSError:
        return False
    return True


class State:
    """RUN/started, the PID files and the steps of one tools/aio run."""

    def __init__(self, settings: Settings):
        self.s = settings
        self.started_file = os.path.join(settings.run, 'started')

    # -- steps ---------------------------------------------------------------

    def run_step(self, name: str, desc: str, func: typing.Callable,
                 *args) -> None:
        """A progress line, the step's output in LOGS/aio-NAME.log, and on
        failure a message naming the step and its log (exit 1)."""
        log_path = os.path.join(self.s.logs, 'aio-%s.log' % name)
        say('%s: %s' % (name, desc))
        ok = self._redirected(log_path, func, *args)
        if ok:
            return
        print(file=sys.stderr)
        print("tools/aio: step '%s' (%s) FAILED after %ss."
              % (name, desc, elapsed()), file=sys.stderr)
        print('tools/aio: its log is %s; last lines:' % log_path,
              file=sys.stderr)
        with open(log_path, errors='replace') as log:
            for line in log.read().splitlines()[-25:]:
                print('    ' + line, file=sys.stderr)
        print("tools/aio: service logs are in %s/. 'tools/aio down' stops "
              "what was started." % self.s.logs, file=sys.stderr, flush=True)
        sys.exit(1)

    @staticmethod
    def _redirected(log_path: str, func: typing.Callable, *args) -> bool:
        """func(*args) with fds 0/1/2 on /dev/null and the log, so that
        its commands write there too; False when it failed."""
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(fd) for fd in (0, 1, 2)]
        streams = sys.stdout, sys.stderr
        with open(log_path, 'w', buffering=1) as log, \
                open(os.devnull) as null:
            os.dup2(null.fileno(), 0)
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            sys.stdout = sys.stderr = log
            try:
                ok = func(*args) is not False
            except (StepFailed, subprocess.CalledProcessError) as exc:
                print(exc)
                ok = False
            except Exception:
                traceback.print_exc(file=log)
                ok = False
            finally:
                log.flush()
                sys.stdout, sys.stderr = streams
                for fd, copy in enumerate(saved):
                    os.dup2(copy, fd)
                    os.close(copy)
        return ok

    # -- what up started -----------------------------------------------------

    def mark(self, what: str) -> None:
        os.makedirs(self.s.run, exist_ok=True)
        if not self.marked(what):
            with open(self.started_file, 'a') as f:
                f.write(what + '\n')

    def marks(self) -> typing.List[str]:
        try:
            with open(self.started_file) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def marked(self, what: str) -> bool:
        return what in self.marks()

    def unmark(self, what: str) -> None:
        if self.marked(what):
            keep = [m for m in self.marks() if m != what]
            with open(self.started_file, 'w') as f:
                f.write(''.join(m + '\n' for m in keep))

    def unmark_processes(self) -> None:
        """Forget the processes (they are stopped); keep what clean undoes."""
        keep = [m for m in self.marks() if m not in (
            'ovn-controller', 'ovn-central', 'rabbitmq', 'mariadb', 'ovs')
            and not m.startswith('svc:')]
        with open(self.started_file, 'w') as f:
            f.write(''.join(m + '\n' for m in keep))

    def pid(self, name: str) -> typing.Optional[int]:
        """The PID this tool started as ``name``; None when that process
        is gone, even if the PID now names another process (a run that
        was killed leaves its PID files behind)."""
        try:
            with open(os.path.join(self.s.run, name + '.pid')) as f:
                fields = f.read().split()
            pid = int(fields[0])
        except (OSError, ValueError, IndexError):
            return None
        if len(fields) > 1 and host.process_identity(pid) != fields[1]:
            return None
        return pid

    def write_pid(self, name: str, pid: int) -> None:
        os.makedirs(self.s.run, exist_ok=True)
        with open(os.path.join(self.s.run, name + '.pid'), 'w') as f:
            f.write('%d %s\n' % (pid, host.process_identity(pid) or '-'))

    def any_running(self) -> bool:
        return any(host.pid_alive(self.pid(s)) for s in SERVICES)

    # -- processes -----------------------------------------------------------

    def start_svc(self, name: str, *argv: str) -> int:
        """A background service in its own session, PID in RUN/NAME.pid."""
        pid = host.start_detached(argv, self.output_path(name))
        self.write_pid(name, pid)
        self.mark('svc:' + name)
        return pid

    def wait_ready(self, name: str, check: typing.Callable[[], bool],
                   seconds: float) -> None:
        """Wait until service ``name`` answers (``check``). Fails at once
        when it exits, and with the last lines of its output either way:
        CI keeps only the tail of what is printed."""
        pid = self.pid(name)
        deadline = time.monotonic() + seconds
        while True:
            try:
                if check():
                    return
            except OSError:
                pass
            if not host.pid_alive(pid):
                problem = 'exited'
            elif time.monotonic() >= deadline:
                problem = 'did not answer within %d s' % seconds
            else:
                time.sleep(0.5)
                continue
            raise StepFailed('%s %s; the end of %s:\n%s' % (
                name, problem, self.output_path(name),
                self.output_tail(name)))

    def output_path(self, name: str) -> str:
        return os.path.join(self.s.logs, name + '.out')

    def output_tail(self, name: str, lines: int = 8) -> str:
        try:
            with open(self.output_path(name), 'rb') as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                text = f.read().decode('utf-8', 'replace')
        except OSError:
            return '    (no output)'
        return '\n'.join('    ' + line
                         for line in text.splitlines()[-lines:])

    def uwsgi_svc(self, name: str, port: int, module: str,
                  *envs: str, venv: typing.Optional[str] = None,
                  options: typing.Sequence[str] = ()) -> None:
        """A WSGI API under uwsgi, in the services' venv unless ``venv``
        (the same interpreter). "Connection: close": without it clients
        see resets on reused sockets."""
        argv = [self.s.exe('uwsgi'), '--http-socket', '127.0.0.1:%d' % port,
                '--module', module, '--master', '--processes', '1',
                '--threads', '4', '--enable-threads', '--lazy-apps',
                '--die-on-term', '--need-app', '--hook-master-start',
                'unix_signal:15 gracefully_kill_them_all',
                '--virtualenv', venv or self.s.venv, '--buffer-size', '65535',
                '--add-header', 'Connection: close',
                '--env', 'PATH=%s:/usr/sbin:/usr/bin:/sbin:/bin' % self.s.bin]
        for env in envs:
            argv += ['--env', env]
        self.start_svc(name, *argv, *options)

    def stop_pid(self, name: str) -> None:
        """TERM the process group, then KILL after 20 s."""
        pid = self.pid(name)
        if pid is not None and host.pid_alive(pid):
            signal_group_or_pid(pid, signal.SIGTERM)

            def gone() -> bool:
                # pid first: it reaps a child of ours, whose zombie would
                # keep the group alive.
                return not (host.pid_alive(pid) or group_alive(pid))
            if not host.wait_for(gone, 20):
                print('%s: still running after 20 s, SIGKILL' % name,
                      flush=True)
                signal_group_or_pid(pid, signal.SIGKILL)
            print('stopped %s (pid %d)' % (name, pid), flush=True)
        try:
            os.unlink(os.path.join(self.s.run, name + '.pid'))
        except FileNotFoundError:
            pass


def signal_group_or_pid(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def chassis_hostname() -> str:
    """The OVN chassis name (Nova's host must be it, or OVN does not bind
    the ports)."""
    name = output('ovs-vsctl', 'get', 'open_vswitch', '.',
                  'external_ids:hostname').strip().strip('"')
    return name or output('hostname').strip()
