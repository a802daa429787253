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
"""tools/run-tests: the one test command.

As root on Debian 12 it installs what is missing (Docker, Open vSwitch,
busybox-static, LXCFS, QEMU, a venv with this package), starts dockerd, OVS and
lxcfs if they are not running, runs unit, functional (real Docker and OVS)
and Nova integration tests, and ends with "N passed, N failed, N skipped".

  tools/run-tests                 # everything
  tools/run-tests REGEX           # only tests whose id matches REGEX
  tools/run-tests --docker=26 [REGEX]
      the same against Docker 26.1 (Debian trixie's docker.io and
      docker-cli, unpacked once under /opt/nova-docker, never installed
      over the host's Docker), run as a private engine beside the host's
      for the run and removed after it. Without REGEX: the functional,
      integration and devstack tests (the unit tests never reach an
      engine: they drive tests/fixtures/fake_docker.py) but those that
      do not change with the engine's version (DOCKER26_NOT_ENGINE).

Tests named test_serial_* restart a shared daemon (the host's
ovs-vswitchd) and run alone, after the others (not in the Docker 26 run:
they test no engine). Tests that restart or kill dockerd use a private
engine (tests.fixtures.docker.PrivateDockerd) and run in parallel.
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import typing

from ndtools import host

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DOCKER26_RELEASE = 'trixie'
# Not run again on Docker 26: what does not change with the engine's
# version. The port plumbing (netlink, OVS, privsep, inside a sandbox's
# namespace found by its PID) runs once, on the host's engine, and so do
# the Nova integration tests but snapshot and migration (CI's time: they
# drive the driver calls whose every engine request the functional tests
# make on both); lifecycle, images, snapshot, events, the state listing,
# faults, resize and migration run on both.
DOCKER26_NOT_ENGINE = ('^tests\\.functional\\.test_network(_privsep)?\\.|'
                       '^tests\\.integration\\.(?!test_(snapshot|resize)\\.)')


class Failure(Exception):
    """A set-up step failed: the message goes to stderr, exit code 2."""


def say(message: str) -> None:
    print('== run-tests: %s' % message, flush=True)


def wanted_packages() -> typing.List[typing.Tuple[str, typing.Callable]]:
    """(Debian package, is it there?) for everything the tests use."""
    def busybox_has_sleep() -> bool:
        if not os.access('/bin/busybox', os.X_OK):
            return False
        listing = subprocess.run(['/bin/busybox', '--list'],
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
        return 'sleep' in listing.stdout.split()

    def python_venv() -> bool:
        return subprocess.run(['python3', '-c', 'import venv, ensurepip'],
                              stderr=subprocess.DEVNULL).returncode == 0

    def command(name):
        return lambda: host.command_present(name)

    return [
        ('docker.io', command('dockerd')),
        ('openvswitch-switch', command('ovs-vsctl')),
        ('busybox-static', busybox_has_sleep),
        ('iproute2', command('ip')),
        # Pings from the host and from namespaces the tests make.
        ('iputils-ping', command('ping')),
        ('iptables', command('iptables')),
        ('shellcheck', command('shellcheck')),
        # A second OCI runtime for the runtime-per-flavor tests.
        ('crun', command('crun')),
        # btrfs data roots for the root-disk quota tests.
        ('btrfs-progs', command('mkfs.btrfs')),
        # Workloads see their flavor's RAM, vCPUs and uptime in /proc.
        ('lxcfs', command('lxcfs')),
        ('python3-venv', python_venv),
        # The VM image's boot test (ndtools.vmimage): QEMU from Debian.
        ('qemu-system-x86', command('qemu-system-x86_64')),
        # The KVM node's test (ndtools.kvm_node): libvirtd and virsh.
        # libvirtd is libvirt-daemon's (it depends on the QEMU driver).
        ('libvirt-daemon', command('libvirtd')),
        ('libvirt-clients', command('virsh')),
    ]


#: Installed without their Recommends: qemu-system-x86's pull in a GTK
#: display (qemu-system-gui), firmware and block drivers the tests never
#: use (hundreds of MB).
WITHOUT_RECOMMENDS = ('qemu-system-x86', 'libvirt-daemon',
                      'libvirt-clients')


class TestRun:
    """One tools/run-tests invocation: its venv, log dir and totals."""

    def __init__(self, docker: str, regex: typing.Optional[str]):
        self.docker = docker
        self.regex = regex
        self.venv = os.environ.get('NOVA_DOCKER_VENV',
                                   os.path.join(TOP, '.venv'))
        self.log_dir = os.environ.get('NOVA_DOCKER_LOG_DIR',
                                      os.path.join(TOP, '.test-logs'))
        self.docker26_dir = os.environ.get('NOVA_DOCKER_26_DIR',
                                           '/opt/nova-docker/docker-26')
        self.engine = None
        self.passed = self.failed = self.skipped = 0

    def log(self, name: str, mode: str = 'a'):
        return open(os.path.join(self.log_dir, name), mode)

    # -- host ----------------------------------------------------------------

    def install_packages(self) -> None:
        missing = host.missing_packages(wanted_packages())
        if not missing:
            return
        say('installing %s' % ' '.join(missing))
        with self.log('apt.log', 'w') as log:
            for recommends in (True, False):
                batch = [package for package in missing if recommends
                         != (package in WITHOUT_RECOMMENDS)]
                if batch and not host.apt_install(batch, output=log,
                                                  recommends=recommends):
                    raise Failure('apt-get install failed: see %s/apt.log'
                                  % self.log_dir)

    def start_daemon(self, name: str, desc: str,
                     ok: typing.Callable[[], bool], argv: typing.List[str],
                     seconds: float) -> None:
        """``argv`` in the background unless ``ok`` says it runs; its
        output in LOG_DIR/NAME.log."""
        if ok():
            return
        say('starting %s' % desc)
        host.start_detached(argv, os.path.join(self.log_dir, name + '.log'))
        if not host.wait_for(ok, seconds):
            raise Failure('%s did not start: see %s/%s.log'
                          % (name, self.log_dir, name))

    def start_dockerd(self) -> None:
        self.start_daemon('dockerd', 'dockerd', host.docker_ok,
                          host.dockerd_argv(), 30)

    def start_ovs(self) -> None:
        if host.ovs_ok():
            return
        say('starting Open vSwitch (userspace datapath)')
        with self.log('ovs.log', 'w') as log:
            if not host.start_ovs(output=log):
                raise Failure('OVS did not start: see %s/ovs.log'
                              % self.log_dir)

    def start_lxcfs(self) -> None:
        if not host.lxcfs_ok():
            host.prepare_lxcfs_dir()
        self.start_daemon('lxcfs', 'lxcfs', host.lxcfs_ok, host.lxcfs_argv(),
                          10)

    def make_venv(self) -> None:
        pip = os.path.join(self.venv, 'bin/pip')
        if not os.access(os.path.join(self.venv, 'bin/python'), os.X_OK):
            say('creating venv %s' % self.venv)
            with self.log('pip.log', 'w') as log:
                host.create_venv('python3', self.venv, output=log)
        # Install only when the requirements changed since the last run.
        stamp = os.path.join(self.venv, '.requirements.sha')
        want = host.files_digest([os.path.join(TOP, 'requirements.txt'),
                                  os.path.join(TOP, 'test-requirements.txt')])
        with self.log('pip.log') as log:
            if not host.stamp_current(stamp, want):
                say('installing requirements into %s' % self.venv)
                if subprocess.run(
                        [pip, 'install', '-q', '-r', 'requirements.txt',
                         '-r', 'test-requirements.txt'], cwd=TOP, stdout=log,
                        stderr=subprocess.STDOUT).returncode:
                    raise Failure('pip install failed: see %s/pip.log'
                                  % self.log_dir)
                host.write_stamp(stamp, want)
            if not host.pip_install_checkout(self.venv, TOP, output=log):
                raise Failure('installing nova-docker failed: see '
                              '%s/pip.log' % self.log_dir)
        # Nova's functional fixtures look for api-paste.ini under
        # site-packages.
        purelib = subprocess.run(
            [os.path.join(self.venv, 'bin/python'), '-c',
             'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
            stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
        link = os.path.join(purelib, 'etc')
        if not os.path.lexists(link):
            os.symlink(os.path.join(self.venv, 'etc'), link)

    # -- Docker 26.1 beside the host's engine (--docker=26) ---------------

    def install_docker26(self) -> None:
        """Fetch trixie's docker.io and docker-cli with an apt of their own
        (own sources, lists and cache): the host's apt sources, pins and
        lists stay as they are, and nothing can upgrade the host's
        packages. dpkg -x only unpacks: containerd, runc and tini
        (docker-init) stay the host's."""
        root = self.docker26_dir
        stamp = os.path.join(root, '.nova-docker-installed')
        dockerd = os.path.join(root, 'usr/sbin/dockerd')
        if os.access(dockerd, os.X_OK) and os.path.isfile(stamp):
            return
        say("installing Docker 26.1 (%s's docker.io, docker-cli) into %s"
            % (DOCKER26_RELEASE, root))
        apt = root + '.apt'
        shutil.rmtree(apt, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        for sub in ('sources.list.d', 'preferences.d', 'lists/partial',
                    'cache/archives/partial', 'debs'):
            os.makedirs(os.path.join(apt, sub))
        with open(os.path.join(apt, 'sources.list.d', DOCKER26_RELEASE
                               + '.sources'), 'w') as sources:
            sources.write(
                'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n'
                'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
                '\n' % (host_mirror() or 'http://deb.debian.org/debian/',
                        DOCKER26_RELEASE))
        opts = ['-o', 'Dir::Etc::SourceList=/dev/null',
                '-o', 'Dir::Etc::SourceParts=%s/sources.list.d' % apt,
                '-o', 'Dir::Etc::Preferences=/dev/null',
                '-o', 'Dir::Etc::PreferencesParts=%s/preferences.d' % apt,
                '-o', 'Dir::State::Lists=%s/lists' % apt,
                '-o', 'Dir::Cache=%s/cache' % apt,
                '-o', 'APT::Sandbox::User=root']
        debs = os.path.join(apt, 'debs')
        with self.log('docker26-install.log', 'w') as log:
            ok = subprocess.run(['apt-get'] + opts + ['update', '-q'],
                                stdout=log, stderr=subprocess.STDOUT
                                ).returncode == 0 and subprocess.run(
                ['apt-get'] + opts + [
                    'download', 'docker.io/' + DOCKER26_RELEASE,
                    'docker-cli/' + DOCKER26_RELEASE], cwd=debs, stdout=log,
                stderr=subprocess.STDOUT).returncode == 0
        if not ok:
            raise Failure('fetching Docker 26.1 failed: see %s/'
                          'docker26-install.log' % self.log_dir)
        names = sorted(os.listdir(debs))
        for deb in sorted(glob.glob(os.path.join(debs, '*.deb'))):
            subprocess.run(['dpkg', '-x', deb, root], check=True)
        version = subprocess.run([dockerd, '--version'],
                                 stdout=subprocess.PIPE, text=True).stdout
        if ' 26.1.' not in version:
            raise Failure('%s is not Docker 26.1' % dockerd)
        with open(stamp, 'w') as f:
            f.write(''.join(name + '\n' for name in names))
        shutil.rmtree(apt)

    def start_docker26(self) -> None:
        """The engine runs from tests/fixtures/docker.py, i.e. the
        PrivateDockerd fixture the tests use: own socket, data root, exec
        root and containerd. docker-init is the host's tini (the .deb's
        link to it is relative)."""
        for dep in ('containerd', 'runc', '/usr/bin/tini-static'):
            if not host.command_present(dep):
                raise Failure("Docker 26.1 needs the host's %s (docker.io's "
                              "dependencies)" % dep)
        url_file = os.path.join(self.log_dir, 'docker26-%d.url' % os.getpid())
        if os.path.exists(url_file):
            os.unlink(url_file)
        say("starting Docker 26.1 beside the host's engine")
        dockerd = os.path.join(self.docker26_dir, 'usr/sbin/dockerd')
        with self.log('docker26-engine.log', 'w') as log:
            self.engine = subprocess.Popen(
                [os.path.join(self.venv, 'bin/python'), '-m',
                 'tests.fixtures.docker', '--dockerd', dockerd,
                 '--url-file', url_file, '--', '--init-path',
                 '/usr/bin/tini-static'], cwd=TOP, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(os.environ, NOVA_DOCKER_LOG_DIR=self.log_dir))

        def url_written() -> bool:
            return (os.path.exists(url_file) and os.path.getsize(url_file)
                    > 0) or self.engine.poll() is not None
        host.wait_for(url_written, 120)
        if not (os.path.exists(url_file) and os.path.getsize(url_file)):
            raise Failure('Docker 26.1 did not start: see %s/'
                          'docker26-engine.log' % self.log_dir)
        with open(url_file) as f:
            url = f.read().strip()
        cli = os.path.join(self.docker26_dir, 'usr/bin/docker')
        # Tests that need an engine of their own (PrivateDockerd) start
        # this version too.
        os.environ.update({
            'NOVA_DOCKER_TEST_DOCKERD': dockerd,
            'NOVA_DOCKER_TEST_DOCKERD_ARGS':
                '--init-path /usr/bin/tini-static',
            'NOVA_DOCKER_TEST_API_URL': url,
            'NOVA_DOCKER_TEST_DOCKER_CLI': cli,
        })
        version = subprocess.run(
            [cli, '-H', url, 'version', '--format',
             '{{.Server.Version}} API {{.Server.APIVersion}}'],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True).stdout.strip()
        say('engine under test: Docker %s at %s' % (version, url))
        if not re.match(r'^26\.1\..* API 1\.45$', version):
            raise Failure('expected Docker 26.1 (API 1.45), got: %s'
                          % version)

    def stop_docker26(self) -> None:
        if self.engine is None:
            return
        say('stopping Docker 26.1 (its containers, containerd and data root '
            'go too)')
        self.engine.terminate()
        self.engine.wait()
        self.engine = None

    # -- stestr --------------------------------------------------------------

    def run_phase(self, name: str, *args: str) -> None:
        """stestr run, its output shown and kept; its totals added up."""
        out = os.path.join(self.log_dir, 'stestr-%s-%d.log'
                           % (name, os.getpid()))
        say('phase %s: stestr run %s' % (name, ' '.join(args)))
        tee(['%s/bin/stestr' % self.venv, 'run', '--color'] + list(args),
            out, cwd=TOP)
        with open(out, 'rb') as f:
            counts = stestr_totals(f.read().decode('utf-8', 'replace'))
        if counts is None:
            # A phase that could not even load its tests counts as one
            # failure.
            self.failed += 1
            return
        self.passed += counts['Passed']
        self.failed += counts['Failed']
        self.skipped += counts['Skipped']

    def tests_exist(self, select: str = 'test_serial_') -> bool:
        listing = subprocess.run(
            ['%s/bin/stestr' % self.venv, 'list', select], cwd=TOP,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return bool(listing.stdout.strip())

    def main(self) -> int:
        os.makedirs(self.log_dir, exist_ok=True)
        self.install_packages()
        self.start_ovs()
        self.start_lxcfs()
        self.make_venv()
        if self.docker == '26':
            self.install_docker26()
            self.start_docker26()
            phase = 'docker26-'
            # Debian 12's crun (1.8) refuses the OCI spec version Docker 26
            # writes ("unknown version specified"): the runtime mechanism
            # is tested on the host's 20.10, and the refusal tests run on
            # both.
            exclude = ('test_serial_|^tests\\.(unit|tools)\\.|'
                       'test_flavor_runtime_runs_under_crun|'
                       + DOCKER26_NOT_ENGINE)
        else:
            self.start_dockerd()
            phase = ''
            exclude = 'test_serial_'
        # nova-compute 34 runs on threads.
        os.environ['OS_NOVA_DISABLE_EVENTLET_PATCHING'] = '1'
        os.environ.setdefault('PYTHONWARNINGS', 'ignore::DeprecationWarning')
        # A hung test (nova's fixtures under threads) fails after this
        # many seconds instead of holding the run until CI gives up (the
        # slowest test takes about a minute on a busy machine).
        os.environ.setdefault('OS_TEST_TIMEOUT', '600')
        if self.regex:
            rest, serial = split_selection(self.regex)
            selected = [(name, select) for name, select in (
                ('selected', [rest]),
                ('selected-serial', ['--serial', serial]))
                if self.tests_exist(select[-1])]
            for name, select in selected:
                self.run_phase(phase + name, *select)
            if not selected:   # a mistyped REGEX passes nothing
                say('no test id matches %r' % self.regex)
                self.failed += 1
        else:
            self.run_phase(phase + 'parallel', '--concurrency', os.environ.get(
                'NOVA_DOCKER_TEST_CONCURRENCY', '2'), '--exclude-regex',
                exclude)
            if self.docker != '26' and self.tests_exist():
                self.run_phase(phase + 'serial', '--serial', 'test_serial_')
        self.stop_docker26()
        print()
        print('%d passed, %d failed, %d skipped' % (
            self.passed, self.failed, self.skipped), flush=True)
        return 0 if self.failed == 0 and self.passed > 0 else 1


def host_mirror() -> typing.Optional[str]:
    """The host's Debian mirror: the one its own release comes from."""
    codename = None
    with open('/etc/os-release') as f:
        for line in f:
            if line.startswith('VERSION_CODENAME='):
                codename = line.split('=', 1)[1].strip().strip('"')
    targets = subprocess.run(
        ['apt-get', 'indextargets', '--format', '$(REPO_URI) $(RELEASE)'],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    for line in targets.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1] == codename:
            return fields[0]
    return None


def split_selection(regex: str) -> typing.Tuple[str, str]:
    """A REGEX run split as a full run is: (the rest, run in parallel;
    the test_serial_ tests, which restart the host's OVS, alone after).
    stestr searches each test id, so both are anchored look-aheads."""
    return ('^(?!.*test_serial_)(?=.*(?:%s))' % regex,
            '^(?=.*test_serial_)(?=.*(?:%s))' % regex)


def stestr_totals(output: str) -> typing.Optional[typing.Dict[str, int]]:
    """stestr's last " - Passed: N" etc.; None when it printed no totals
    at all (the tests could not even be loaded)."""
    counts = {}
    for label in ('Passed', 'Failed', 'Skipped'):
        found = re.findall(r'^ - %s: (\d+)' % label, output, re.MULTILINE)
        counts[label] = int(found[-1]) if found else None
    if counts['Passed'] is None and counts['Failed'] is None \
            and 'Totals' not in output:
        return None
    return {label: n or 0 for label, n in counts.items()}


def tee(argv: typing.Sequence[str], path: str,
        cwd: typing.Optional[str] = None) -> int:
    """Run ``argv``, its output (stdout and stderr) to our stdout and to
    ``path``; its exit code."""
    with open(path, 'wb') as log:
        proc = subprocess.Popen(list(argv), cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        for line in proc.stdout:
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
            log.write(line)
        return proc.wait()


def parse_args(argv: typing.Sequence[str]) -> typing.Tuple[str, str]:
    """(docker, regex) from the command line; SystemExit(2) on misuse."""
    docker, regex = 'host', None
    for arg in argv:
        if arg in ('--docker=host', '--docker=26'):
            docker = arg.split('=', 1)[1]
        elif arg.startswith('--docker='):
            print('--docker=26 (or host), not %s' % arg, file=sys.stderr)
            raise SystemExit(2)
        elif arg.startswith('-'):
            print('usage: tools/run-tests [--docker=26] [REGEX]',
                  file=sys.stderr)
            raise SystemExit(2)
        else:
            regex = arg
    return docker, regex


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    docker, regex = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print('run-tests must run as root (it installs and starts Docker '
              'and OVS)', file=sys.stderr)
        return 2
    os.chdir(TOP)
    run = TestRun(docker, regex)

    def interrupted(signum, frame):
        raise SystemExit(130)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    try:
        return run.main()
    except Failure as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        run.stop_docker26()


if __name__ == '__main__':
    sys.exit(main())
