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

"""Test helpers shared by the functional and integration tests.

Everything here uses the real Docker engine: images are built locally from
busybox-static (there is no registry) and ``docker save``d.
"""

import fcntl
import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import unittest
import uuid

import docker
import fixtures

from novadocker import rootfs

BUSYBOX = rootfs.BUSYBOX
TEST_LABEL = 'org.openstack.nova-docker.test'
HOST_API_URL = 'unix:///var/run/docker.sock'
HOST_DOCKERD_PIDFILE = '/var/run/docker.pid'
_BUILD_LOCK = '/tmp/nova-docker-test-image-build.lock'


def in_ci() -> bool:
    return os.environ.get('CI', '').lower() in ('1', 'true', 'yes')


def require_functional(test: unittest.TestCase, *, ovs: bool = False,
                       root: bool = True) -> None:
    """Make sure the real environment is there.

    Locally a missing Docker engine or Open vSwitch skips the test; in CI
    (CI=true) it fails it, because a skipped test proves nothing.
    """
    problems = []
    if root and os.geteuid() != 0:
        problems.append('not running as root')
    try:
        docker.APIClient(base_url=api_url(), version='auto',
                         timeout=10).ping()
    except Exception as exc:
        problems.append('Docker engine unreachable: %s' % exc)
    if not os.path.exists(BUSYBOX):
        problems.append('%s missing (apt-get install busybox-static)'
                        % BUSYBOX)
    if ovs and not os.path.exists('/var/run/openvswitch/db.sock'):
        problems.append('Open vSwitch is not running')
    if problems:
        require_functional_missing(test, '; '.join(problems))


def require_functional_missing(test: unittest.TestCase, message: str):
    """The one place a test may skip: locally only; in CI it fails."""
    if in_ci():
        test.fail('functional environment missing: ' + message)
    test.skipTest(message)


def api_url() -> str:
    """The engine under test.

    ``NOVA_DOCKER_TEST_API_URL`` when set (``tools/run-tests --docker=26``
    sets it to the private engine it started), else the host's dockerd.
    Every test that talks to Docker goes through this (and the driver's
    ``[docker]api_url`` is set to it), so one run tests one engine.
    """
    return os.environ.get('NOVA_DOCKER_TEST_API_URL') or HOST_API_URL


def docker_cli() -> str:
    """The ``docker`` command of the engine under test
    (``NOVA_DOCKER_TEST_DOCKER_CLI``); the host's is Debian's, never
    whatever else is first on PATH."""
    return os.environ.get('NOVA_DOCKER_TEST_DOCKER_CLI') or '/usr/bin/docker'


def dockerd_pidfile() -> str:
    """The pidfile of the dockerd behind :func:`api_url`: the host's, or
    the one a :class:`PrivateDockerd` keeps beside its socket."""
    url = api_url()
    if url == HOST_API_URL:
        return HOST_DOCKERD_PIDFILE
    if not url.startswith('unix://'):
        raise RuntimeError('no dockerd pidfile known for %s' % url)
    return os.path.join(os.path.dirname(url[len('unix://'):]),
                        PrivateDockerd.PIDFILE)


def docker_api() -> docker.APIClient:
    return docker.APIClient(base_url=api_url(), version='auto', timeout=120)


def busybox_rootfs(extra_files: dict = None) -> bytes:
    """A root filesystem tarball: busybox-static and its applet links."""
    return rootfs.busybox_rootfs(BUSYBOX, extra_files=extra_files)


def build_saved_image(changes=('CMD ["/bin/sh"]',), repo_tag=None,
                      extra_files=None) -> bytes:
    """``docker import`` a busybox rootfs, ``docker save`` it, remove it.

    Returns the saved tarball (Docker layout, as this engine writes it).
    ``repo_tag`` is the name inside the tarball, which the driver must
    ignore; it defaults to a throwaway unique name.
    """
    api = docker_api()
    repo_tag = repo_tag or 'nova-docker-test/build-%s:latest' % (
        uuid.uuid4().hex[:12])
    repository, tag = repo_tag.rsplit(':', 1)
    # A fixed repo_tag is one name on a shared engine: parallel test
    # processes must not remove it under each other's docker save.
    with open(_BUILD_LOCK, 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        api.import_image_from_data(busybox_rootfs(extra_files),
                                   repository=repository, tag=tag,
                                   changes=list(changes))
        try:
            return b''.join(api.get_image(repo_tag))
        finally:
            api.remove_image(repo_tag, force=True)


@functools.lru_cache(maxsize=None)
def default_image_tarball() -> bytes:
    """The everyday test image: busybox whose CMD sleeps forever.

    It is tagged 'busybox:latest' inside the tarball on purpose: the driver
    must not take names from tarballs.
    """
    return build_saved_image(
        changes=('CMD ["/bin/sleep", "2147483647"]',
                 'ENV NOVA_DOCKER_TEST=1', 'WORKDIR /tmp'),
        repo_tag='nova-docker-test/busybox:latest')


def to_oci_layout(docker_tarball: bytes) -> bytes:
    """Rewrite a legacy ``docker save`` tarball into the layout Docker 25+
    writes: OCI ``index.json`` + ``blobs/sha256`` and the compatibility
    ``manifest.json`` pointing into the blobs."""
    src = tarfile.open(fileobj=io.BytesIO(docker_tarball))
    manifest = json.load(src.extractfile('manifest.json'))[0]
    blobs = {}

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    config = src.extractfile(manifest['Config']).read()
    config_digest = blob(config)
    layers = [src.extractfile(layer).read() for layer in manifest['Layers']]
    layer_digests = [blob(layer) for layer in layers]
    oci_manifest = json.dumps({
        'schemaVersion': 2,
        'mediaType': 'application/vnd.oci.image.manifest.v1+json',
        'config': {'mediaType': 'application/vnd.oci.image.config.v1+json',
                   'digest': 'sha256:' + config_digest,
                   'size': len(config)},
        'layers': [{'mediaType': 'application/vnd.oci.image.layer.v1.tar',
                    'digest': 'sha256:' + d, 'size': len(blobs[d])}
                   for d in layer_digests]}).encode()
    manifest_digest = blob(oci_manifest)
    index = json.dumps({
        'schemaVersion': 2,
        'mediaType': 'application/vnd.oci.image.index.v1+json',
        'manifests': [{
            'mediaType': 'application/vnd.oci.image.manifest.v1+json',
            'digest': 'sha256:' + manifest_digest,
            'size': len(oci_manifest),
            'annotations': {
                'io.containerd.image.name': 'docker.io/library/oci:latest',
                'org.opencontainers.image.ref.name': 'latest'}}]}).encode()
    compat = json.dumps([{
        'Config': 'blobs/sha256/' + config_digest,
        'RepoTags': ['oci:latest'],
        'Layers': ['blobs/sha256/' + d for d in layer_digests]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w') as tar:
        def add(name, data=None):
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        add('blobs')
        add('blobs/sha256')
        for digest, data in blobs.items():
            add('blobs/sha256/' + digest, data)
        add('index.json', index)
        add('manifest.json', compat)
        add('oci-layout', b'{"imageLayoutVersion": "1.0.0"}')
    return out.getvalue()


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1)


class FakeGlanceAPI:
    """Stands in for nova.image.glance.API: it stores and serves real bytes.

    download() returns a chunk iterator, as the real API does when given
    neither data nor dest_path; update() reads file-like data as glanceclient
    does (``.read(n)``), so snapshot code is exercised for real.
    """

    CHUNK = 64 * 1024

    def __init__(self):
        self.images = {}
        self.data = {}
        self.download_count = {}

    def add(self, data: bytes, container_format='docker', disk_format='raw',
            name=None, properties=None, corrupt_hash=False) -> dict:
        image_id = str(uuid.uuid4())
        digest = hashlib.sha512(data).hexdigest()
        if corrupt_hash:
            digest = hashlib.sha512(b'something else').hexdigest()
        meta = {'id': image_id, 'name': name or 'image-' + image_id[:8],
                'container_format': container_format,
                'disk_format': disk_format, 'status': 'active',
                'size': len(data), 'os_hash_algo': 'sha512',
                'os_hash_value': digest,
                'checksum': hashlib.md5(data).hexdigest(),
                'min_ram': 0, 'min_disk': 0,
                'properties': dict(properties or {})}
        self.images[image_id] = meta
        self.data[image_id] = data
        return meta

    def get(self, context, image_id, include_locations=False,
            show_deleted=True):
        return dict(self.images[image_id])

    def download(self, context, image_id, data=None, dest_path=None,
                 trusted_certs=None):
        self.download_count[image_id] = self.download_count.get(
            image_id, 0) + 1
        blob = self.data[image_id]
        return iter([blob[i:i + self.CHUNK]
                     for i in range(0, len(blob), self.CHUNK)])

    def create(self, context, image_meta, data=None):
        meta = dict(image_meta)
        meta.setdefault('id', str(uuid.uuid4()))
        meta.setdefault('properties', {})
        meta.setdefault('status', 'queued')
        self.images[meta['id']] = meta
        return dict(meta)

    def update(self, context, image_id, image_meta, data=None,
               purge_props=True):
        meta = self.images[image_id]
        meta.update({k: v for k, v in image_meta.items()
                     if k != 'properties'})
        meta.setdefault('properties', {}).update(
            image_meta.get('properties', {}))
        if data is not None:
            hasher = hashlib.sha512()
            out = io.BytesIO()
            while True:
                chunk = data.read(self.CHUNK)
                if not chunk:
                    break
                hasher.update(chunk)
                out.write(chunk)
            self.data[image_id] = out.getvalue()
            meta.update(size=out.tell(), status='active',
                        os_hash_algo='sha512',
                        os_hash_value=hasher.hexdigest())
        return dict(meta)

    def delete(self, context, image_id):
        self.images.pop(image_id, None)
        self.data.pop(image_id, None)


class FakeGlanceFixture(fixtures.Fixture):
    """Patch the driver's Glance API with a FakeGlanceAPI."""

    def _setUp(self):
        self.api = FakeGlanceAPI()
        self.useFixture(fixtures.MonkeyPatch(
            'novadocker.virt.docker.images.IMAGE_API', self.api))


class DockerLeakCheck(fixtures.Fixture):
    """Fail the test if it leaves containers (or forbidden images) behind.

    Containers are scoped by the compute host name the test uses, so tests
    running in parallel on one engine do not see each other's. A loaded
    Glance image staying in the cache after a good boot is by design; a test
    of a failure calls ``forbid_images()`` so that any image the failed
    spawn loaded counts as a leak.
    """

    def __init__(self, host: str, image_ids_getter, api=None):
        super().__init__()
        self.host = host
        self.image_ids_getter = image_ids_getter
        self.images_forbidden = False
        self.forbidden_ids = None
        self.given_api = api

    def _setUp(self):
        # A PrivateDockerd's client, or the shared engine's.
        self.api = self.given_api or docker_api()
        self.addCleanup(self._check)

    def forbid_images(self, *image_ids: str):
        """Count loaded images as leaks: those of ``image_ids`` (Glance
        IDs of failed spawns), or all the test's when none are given."""
        self.images_forbidden = True
        if image_ids:
            self.forbidden_ids = set(self.forbidden_ids or ()) | set(
                image_ids)

    def containers(self) -> list:
        return self.api.containers(
            all=True,
            filters={'label': ['org.openstack.nova.host=%s' % self.host]})

    def loaded_images(self) -> list:
        return ['nova-docker/glance:%s' % image_id
                for image_id in self.image_ids_getter()
                if self.api.images(name='nova-docker/glance:%s' % image_id)]

    def host_images(self) -> list:
        """Images carrying the host label: commits of this host's
        containers (a resize's nova-docker/resize:<uuid>) never removed."""
        return self.api.images(
            filters={'label': 'org.openstack.nova.host=%s' % self.host})

    def leftovers(self) -> list:
        found = ['container %s' % c['Names'][0] for c in self.containers()]
        found += ['image %s' % (i.get('RepoTags') or [i['Id']])[0]
                  for i in self.host_images()]
        if self.images_forbidden:
            found += ['image %s' % name for name in self.loaded_images()
                      if self.forbidden_ids is None or
                      name.rsplit(':', 1)[1] in self.forbidden_ids]
        return found

    def counts(self, instance_uuids=None) -> dict:
        """Leftovers by kind, for the fault matrix's leak count; with
        ``instance_uuids``, only the containers of those instances."""
        containers = self.containers()
        if instance_uuids is not None:
            containers = [
                c for c in containers
                if c['Labels'].get('org.openstack.nova.instance-uuid')
                in instance_uuids]
        images = [f for f in self.leftovers() if f.startswith('image ')]
        return {'container': len(containers), 'image': len(images)}

    def _check(self):
        leftovers = self.leftovers()
        # Remove everything so one failure does not cascade into others.
        for container in self.containers():
            self.api.remove_container(container['Id'], force=True)
        for image in self.host_images():
            try:
                self.api.remove_image(image['Id'], force=True)
            except docker.errors.APIError:
                pass
        for name in self.loaded_images():
            try:
                self.api.remove_image(name, force=True)
            except docker.errors.NotFound:
                pass
        if leftovers:
            raise AssertionError('test left behind: %s' % ', '.join(leftovers))


def process_alive(pid: int) -> bool:
    """Running, not a zombie (its parent may not have reaped it yet)."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def which(binary: str) -> str:
    path = shutil.which(binary)
    if not path:
        raise RuntimeError('%s not found' % binary)
    return path


class PrivateDockerd(fixtures.Fixture):
    """A dockerd of the test's own, beside the shared one.

    Tests that restart, kill, fill up or reconfigure the engine
    (live-restore, userns-remap, another runtime, a small data root,
    another Docker version) use this, so tests running in parallel on the
    shared engine never notice. It has its own socket, data root, exec root
    and pidfile, no bridge and no iptables rules: it moves no host state.
    containerd runs as a process of its own beside it, as distributions run
    it (a containerd that dockerd starts itself dies with dockerd, and takes
    live-restore with it). Clean-up removes its containers, stops dockerd,
    containerd and the shims, unmounts and deletes its directories.

    :param args: extra dockerd arguments (``--live-restore``, ...)
    :param dockerd: the dockerd binary (another Docker version)
    :param data_root: an existing directory (e.g. a small loop mount) to
        use as the data root; by default a fresh one under /var/lib
    """

    START_TIMEOUT = 60
    PIDFILE = 'docker.pid'   # beside the socket (see dockerd_pidfile)

    def __init__(self, *args: str, dockerd: str = None,
                 data_root: str = None):
        super().__init__()
        if dockerd is None:
            # The Docker version under test (tools/run-tests --docker=26
            # names its dockerd and the arguments it needs), else the
            # host's.
            dockerd = os.environ.get('NOVA_DOCKER_TEST_DOCKERD') or 'dockerd'
            args = tuple(os.environ.get('NOVA_DOCKER_TEST_DOCKERD_ARGS',
                                        '').split()) + args
        self.extra_args = list(args)
        self.dockerd = dockerd
        self.given_data_root = data_root
        self.process = None

    def _setUp(self):
        tag = uuid.uuid4().hex[:8]
        # Short: unix socket paths (containerd's is under the exec root)
        # are limited to 108 bytes.
        self.run_dir = '/run/ndd-%s' % tag
        os.makedirs(self.run_dir)
        self.addCleanup(self._remove_dirs)
        self.data_root = self.given_data_root or '/var/lib/ndd-%s' % tag
        os.makedirs(self.data_root, exist_ok=True)
        self.socket = os.path.join(self.run_dir, 'docker.sock')
        self.url = 'unix://' + self.socket
        self.exec_root = os.path.join(self.run_dir, 'exec')
        self.pidfile = os.path.join(self.run_dir, self.PIDFILE)
        log_dir = os.environ.get('NOVA_DOCKER_LOG_DIR') or '/tmp'
        self.log_path = os.path.join(log_dir, 'private-dockerd-%s.log' % tag)
        self.containerd_socket = os.path.join(self.run_dir, 'ctd.sock')
        # A daemon.json of its own: the host's /etc/docker/daemon.json
        # (devstack's, with live-restore) must not apply, nor clash with
        # the test's flags.
        self.config_file = os.path.join(self.run_dir, 'daemon.json')
        with open(self.config_file, 'w') as handle:
            handle.write('{}\n')
        self.containerd_process = None
        self.addCleanup(self._stop_everything)
        self.start_containerd()
        self.start()

    def start_containerd(self) -> None:
        """containerd of this engine, with its own root, state and socket."""
        import subprocess
        import time
        config = os.path.join(self.run_dir, 'containerd.toml')
        with open(config, 'w') as handle:
            handle.write(
                'version = 2\n'
                'root = "%s"\n'
                'state = "%s"\n'
                'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                '[grpc]\n  address = "%s"\n' % (
                    os.path.join(self.data_root, 'containerd'),
                    os.path.join(self.run_dir, 'ctd'),
                    self.containerd_socket))
        log = open(self.log_path + '.containerd', 'ab')
        self.containerd_process = subprocess.Popen(
            ['containerd', '--config', config], stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.START_TIMEOUT
        while not os.path.exists(self.containerd_socket):
            if self.containerd_process.poll() is not None or \
                    time.monotonic() > deadline:
                raise RuntimeError('private containerd did not start: see '
                                   '%s.containerd' % self.log_path)
            time.sleep(0.1)

    @property
    def command(self) -> list:
        return [self.dockerd, '--host', self.url,
                '--data-root', self.data_root,
                '--exec-root', self.exec_root,
                '--pidfile', self.pidfile,
                '--config-file', self.config_file,
                '--containerd', self.containerd_socket,
                '--bridge', 'none', '--iptables=false',
                '--ip-masq=false', '--userland-proxy=false'] + \
            self.extra_args

    def api(self, timeout: int = 120) -> docker.APIClient:
        return docker.APIClient(base_url=self.url, version='auto',
                                timeout=timeout)

    def ping(self) -> bool:
        try:
            return bool(docker.APIClient(base_url=self.url, version='auto',
                                         timeout=3).ping())
        except Exception:
            return False

    def start(self) -> None:
        """Start dockerd and wait until it answers."""
        import subprocess
        import time
        log = open(self.log_path, 'ab')
        self.process = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.ping():
                return
            time.sleep(0.2)
        with open(self.log_path, 'rb') as handle:
            tail = handle.read()[-2000:].decode(errors='replace')
        self.kill()
        raise RuntimeError('private dockerd did not start (%s): %s'
                           % (' '.join(self.command), tail))

    def kill(self, sig: int = 9) -> None:
        """Send ``sig`` (SIGKILL by default) and wait until dockerd exits.

        Its containerd, the shims and (with live-restore) the containers
        survive a SIGKILL, as they would a crash.
        """
        import signal
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=60)
        except Exception:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), as ``systemctl stop docker``."""
        import signal
        self.kill(signal.SIGTERM)

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self, config: dict) -> None:
        """Write daemon.json and SIGHUP dockerd, as ``systemctl reload
        docker`` does: reloadable settings (live-restore, ...) apply
        without stopping anything."""
        import signal
        with open(self.config_file, 'w') as handle:
            json.dump(config, handle)
        self.process.send_signal(signal.SIGHUP)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _stop_everything(self) -> None:
        import signal
        import time
        if not self.running and not self.ping():
            try:
                self.start()
            except RuntimeError:
                pass
        if self.ping():
            api = self.api(timeout=60)
            for container in api.containers(all=True):
                try:
                    api.remove_container(container['Id'], force=True,
                                         v=True)
                except docker.errors.APIError:
                    pass
        self.stop()
        self._stop_restarted()
        # containerd and the shims outlive dockerd.
        if self.containerd_process is not None:
            self.containerd_process.terminate()
            try:
                self.containerd_process.wait(timeout=30)
            except Exception:
                self.containerd_process.kill()
        for pid in self._processes_under(self.run_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
        self._unmount_under(self.run_dir)
        # dockerd bind-mounts its data root onto itself: undo that too,
        # but keep a mount the test gave (a small loop filesystem).
        self._unmount_under(self.data_root,
                            keep_own=self.given_data_root is not None)

    def _stop_restarted(self) -> None:
        """SIGTERM a dockerd of this engine that is not ``self.process``:
        one a test restarted from its pidfile (see ``dockerd_pidfile``)."""
        import signal
        import time
        try:
            with open(self.pidfile) as handle:
                pid = int(handle.read().strip())
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                if self.run_dir.encode() not in handle.read():
                    return
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + 60
        while process_alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.2)

    @staticmethod
    def _processes_under(path: str) -> list:
        """PIDs whose command line names ``path`` (containerd, shims)."""
        found = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                    cmdline = handle.read().decode(errors='replace')
            except OSError:
                continue
            if path in cmdline:
                found.append(int(entry))
        return found

    @staticmethod
    def _unmount_under(path: str, keep_own: bool = False) -> None:
        """Unmount everything below ``path`` and the mounts on it (all of
        them, or all but the first with ``keep_own``)."""
        import subprocess
        with open('/proc/self/mountinfo') as handle:
            points = [line.split()[4] for line in handle]
        below = [p for p in points if p.startswith(path + '/')]
        on_it = [p for p in points if p == path][1 if keep_own else 0:]
        for point in sorted(below, key=len, reverse=True) + on_it:
            subprocess.run(['umount', '-l', point], check=False,
                           stderr=subprocess.DEVNULL)

    def _remove_dirs(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.given_data_root is None:
            shutil.rmtree(self.data_root, ignore_errors=True)


class LoopFilesystem(fixtures.Fixture):
    """A small ext4 filesystem in a file, loop-mounted, for tests that fill
    a disk (a PrivateDockerd data root). Clean-up unmounts it and deletes
    the file and the mount point."""

    def __init__(self, size_mb: int = 300):
        super().__init__()
        self.size_mb = size_mb

    def _setUp(self):
        import subprocess
        tag = uuid.uuid4().hex[:8]
        self.image = '/var/lib/ndfs-%s.img' % tag
        self.path = '/var/lib/ndfs-%s' % tag
        with open(self.image, 'wb') as handle:
            handle.truncate(self.size_mb * 1024 * 1024)
        self.addCleanup(os.unlink, self.image)
        subprocess.run(['mkfs.ext4', '-q', '-F', self.image], check=True,
                       capture_output=True)
        os.makedirs(self.path)
        self.addCleanup(os.rmdir, self.path)
        subprocess.run(['mount', '-o', 'loop', self.image, self.path],
                       check=True, capture_output=True)
        self.addCleanup(self._unmount)

    def _unmount(self):
        import subprocess
        import time
        for _attempt in range(20):
            if subprocess.run(['umount', self.path],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.5)
        # Busy (a straggling shim): detach it lazily, the loop device goes
        # with the last user.
        subprocess.run(['umount', '-l', self.path], check=True)

    def free_bytes(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize
