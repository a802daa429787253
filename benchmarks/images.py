#!/usr/bin/env python3
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

"""Image import and snapshot throughput and memory, against the raw floor.

Builds an image locally (a busybox rootfs plus one big random file, 512 MiB
by default), then measures in the same run:

- import: the driver's ImageStore streaming a Glance download (served from
  a file in 1 MiB chunks, as glanceclient does) into ``docker load``,
  tag rewrite and sha512 check included, vs. ``docker load < file`` and
  vs. the same with sha512 of the bytes in the same pass (``tee`` into
  ``sha512sum``: the raw steps of an import that checks what it loads);
- snapshot: the driver's snapshot path (``docker commit``, ``docker save``
  streamed through the file-like reader into a Glance upload that writes a
  file, read in glanceclient's 1 MiB chunks) vs. ``docker save > file``
  and ``docker commit`` + ``docker save > file``.

Each measured step runs in its own process, so its peak RSS (``wait4``) is
its own; "idle" is the RSS of a process that only imports the driver. The
Docker daemon does the heavy lifting in both cases, so the client RSS shows
what the driver adds. Everything it creates (images, containers, files) is
removed at the end.

``--profile`` adds where the driver's time goes (benchmarks/breakdown.py):
Docker API requests, the Glance stream, hashing, the waits of the pipe
between the tar rewrite and Docker's request body, and the Python work
left, per thread, next to the raw floor of the same steps (``docker load``,
``docker commit``, ``docker save``, reading and hashing the file).

Usage (as root, with dockerd running)::

    OS_NOVA_DISABLE_EVENTLET_PATCHING=1 python benchmarks/images.py \
        [--size-mib 512] [--repeat 1] [--workdir /var/tmp] [--profile]
"""

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import types
import typing
import uuid

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)
os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
# Threading mode first, as nova-compute does: tests/__init__.py applies
# nova's monkey_patch before anything imports eventlet through futurist.
import tests  # noqa: E402,F401

from benchmarks import breakdown  # noqa: E402

BENCH_LABEL = 'org.openstack.nova-docker.benchmark'
CHUNK = 1024 * 1024   # glanceclient's CHUNKSIZE for uploads and downloads
MB = 1000 * 1000


# -- children: one measured step each ---------------------------------------

class _FileGlance:
    """A Glance stand-in that serves one image from a file and stores an
    upload into a file, in 1 MiB chunks like glanceclient."""

    def __init__(self, image_id, path=None, sha512=None, upload_path=None):
        self.image_id = image_id
        self.path = path
        self.sha512 = sha512
        self.upload_path = upload_path
        self.uploaded = 0

    def get(self, context, image_id, include_locations=False,
            show_deleted=True):
        meta = {'id': image_id, 'name': 'bench-%s' % image_id[:8],
                'container_format': 'docker', 'disk_format': 'raw',
                'status': 'active', 'min_ram': 0, 'min_disk': 0,
                'properties': {}}
        if self.path:
            meta.update(size=os.path.getsize(self.path),
                        os_hash_algo='sha512', os_hash_value=self.sha512)
        return meta

    def download(self, context, image_id, data=None, dest_path=None,
                 trusted_certs=None):
        def chunks():
            with open(self.path, 'rb') as source:
                while True:
                    chunk = source.read(CHUNK)
                    if not chunk:
                        return
                    yield chunk
        return chunks()

    def update(self, context, image_id, metadata, data=None,
               purge_props=True):
        with open(self.upload_path, 'wb') as sink:
            while True:
                chunk = data.read(CHUNK)
                if not chunk:
                    break
                self.write(sink, chunk)
                self.uploaded += len(chunk)
        return self.get(context, image_id)

    @staticmethod
    def write(sink, chunk) -> None:
        sink.write(chunk)


def _child_idle(args) -> dict:
    from novadocker.virt.docker import snapshot  # noqa: F401
    return {}


class _TimedHash:
    """A hashlib object whose updates count as hashing."""

    def __init__(self, hasher, profile: breakdown.Breakdown):
        self.name = hasher.name
        self.update = profile.timed('hashing (%s)' % hasher.name,
                                    hasher.update)
        self.hexdigest = hasher.hexdigest


class _TimedHashlib:
    def __init__(self, profile: breakdown.Breakdown):
        self.new = lambda name: _TimedHash(hashlib.new(name), profile)


def _profile_import(profile: breakdown.Breakdown, glance) -> None:
    """Wrap what an import's time goes to: Docker's requests, the
    Glance stream, hashing, the waits on streams' queues (the pipe from
    the rewrite to Docker's request body, the hashing thread's)."""
    import queue

    from novadocker.virt.docker import images
    from novadocker.virt.docker import streams

    class TimedQueue(queue.Queue):
        # streams' queues: the pipe (rewrite -> docker load) and the
        # hashing thread's.
        put = profile.timed('queue full (waits for its consumer)',
                            queue.Queue.put)
        get = profile.timed('queue empty (waits for its producer)',
                            queue.Queue.get)

    profile.patch_docker()
    profile.replace(images, 'hashlib', _TimedHashlib(profile))
    # streams' own queue module only: other threads' queues stay as
    # they are.
    profile.replace(streams, 'queue', types.SimpleNamespace(
        **dict(vars(queue), Queue=TimedQueue)))
    pipe = streams.pipe
    profile.replace(streams, 'pipe', lambda write, *a, **kw: pipe(
        profile.thread('rewrite thread (Glance -> tar rewrite -> pipe)',
                       write), *a, **kw))
    download = glance.download
    glance.download = lambda *a, **kw: profile.timed_iter(
        'Glance stream (file reads)', download(*a, **kw))
    profile.name_thread('main thread (docker load request)')


def _profile_snapshot(profile: breakdown.Breakdown, glance, api) -> None:
    """Wrap Docker's requests, the docker save stream, the Glance
    upload's writes and the waits."""
    profile.patch_docker()
    profile.patch_waits()
    get_image = api.get_image
    api.get_image = lambda *a, **kw: profile.timed_iter(
        'docker save stream (HTTP reads)', get_image(*a, **kw))
    glance.write = profile.timed('Glance upload (file writes)',
                                 glance.write)
    profile.name_thread('snapshot (commit, save, upload)')


def _floor_read_hash(path: str) -> typing.List[typing.Tuple[str, float]]:
    """Reading the file in Glance's chunks, and hashing as many bytes,
    alone (one chunk hashed over and over: no memory of the image's
    size)."""
    start = time.perf_counter()
    size = 0
    with open(path, 'rb') as source:
        for chunk in iter(lambda: source.read(CHUNK), b''):
            size += len(chunk)
    read = time.perf_counter() - start
    digest = hashlib.sha512()
    block = os.urandom(CHUNK)
    start = time.perf_counter()
    for _ in range(-(-size // CHUNK)):
        digest.update(block)
    hashing = time.perf_counter() - start
    return [('read the file in 1 MiB chunks (page cache)', read),
            ('sha512 of as many bytes', hashing)]


def _profiled(run, title, floor=()) -> dict:
    """``run(profile)`` with the breakdown's report in the result."""
    profile = breakdown.Breakdown()
    result = run(profile)
    profile.undo()
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        profile.report(title, 1, {profile.role(): result['seconds']},
                       floor)
    result['profile'] = report.getvalue()
    return result


def _child_import(args) -> dict:
    from nova import context as nova_context
    from nova import objects

    from novadocker.virt.docker import client
    from novadocker.virt.docker import images
    objects.register_all()
    glance = _FileGlance(args.image_id, args.file, args.sha512)
    images.IMAGE_API = glance
    meta = objects.ImageMeta.from_dict(glance.get(None, args.image_id))
    store = images.ImageStore(client.connect())

    def run(profile=None):
        if profile is not None:
            _profile_import(profile, glance)
        start = time.monotonic()
        store.ensure_image(nova_context.get_admin_context(), meta)
        return {'seconds': time.monotonic() - start,
                'bytes': os.path.getsize(args.file)}
    if args.profile:
        floor = [('docker load < file', args.floor_load)]
        floor += _floor_read_hash(args.file)
        return _profiled(run, 'driver import', floor)
    return run()


def _child_snapshot(args) -> dict:
    from nova import context as nova_context
    from nova import objects

    from novadocker.virt.docker import client
    from novadocker.virt.docker import guest
    from novadocker.virt.docker import images
    from novadocker.virt.docker import snapshot
    objects.register_all()
    snap_id = str(uuid.uuid4())
    glance = _FileGlance(snap_id, upload_path=args.file)
    images.IMAGE_API = glance
    api = client.connect()
    instance = objects.Instance(uuid=args.instance_uuid, project_id='bench',
                                os_type=None)
    snapshotter = snapshot.Snapshotter(
        api, guest.Guests(api, args.host), args.host)

    def run(profile=None):
        if profile is not None:
            _profile_snapshot(profile, glance, api)
        start = time.monotonic()
        snapshotter.take(nova_context.get_admin_context(), instance,
                         snap_id,
                         lambda task_state, expected_state=None: None)
        return {'seconds': time.monotonic() - start,
                'bytes': glance.uploaded}
    if args.profile:
        return _profiled(run, 'driver snapshot', [
            ('docker commit', args.floor_commit),
            ('docker save > file', args.floor_save)])
    return run()


CHILDREN = {'idle': _child_idle, 'import': _child_import,
            'snapshot': _child_snapshot}


# -- parent -----------------------------------------------------------------

def _vm_hwm_mib(pid) -> float:
    """Peak RSS of a process's current image (VmHWM; reset by exec, unlike
    ru_maxrss, which keeps the forking parent's size)."""
    try:
        with open('/proc/%s/status' % pid) as status:
            for line in status:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _run_measured(argv, stdin=None, stdout=None) -> dict:
    """Run a process; return wall seconds and its peak RSS (MiB), polled
    every 10 ms from /proc (VmHWM only grows, so polling loses little)."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout,
                                stderr=errors)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _vm_hwm_mib(proc.pid))
            time.sleep(0.01)
        seconds = time.monotonic() - start
        errors.seek(0)
        err = errors.read().decode(errors='replace')
    if proc.returncode != 0:
        raise RuntimeError('%s failed (%s): %s' % (argv[0:3], proc.returncode,
                                                   err[-2000:]))
    return {'seconds': seconds, 'rss_mib': peak, 'stderr': err}


def _run_child(phase, **kwargs) -> dict:
    argv = [sys.executable, '-W', 'ignore', os.path.abspath(__file__),
            '--phase', phase]
    if kwargs.keys() & {'floor_load', 'floor_commit'}:
        argv.append('--profile')
    for key, value in kwargs.items():
        argv += ['--' + key.replace('_', '-'), str(value)]
    with tempfile.TemporaryFile() as out:
        measured = _run_measured(argv, stdout=out)
        out.seek(0)
        lines = out.read().decode().strip().splitlines()
    result = json.loads(lines[-1]) if lines else {}
    # The child's own VmHWM read at its end is exact; keep the larger.
    result['rss_mib'] = max(result.get('rss_mib', 0.0),
                            measured['rss_mib'])
    return result


class _RandomReader(io.RawIOBase):
    def readinto(self, buf):
        data = os.urandom(len(buf))
        buf[:len(data)] = data
        return len(data)

    def readable(self):
        return True


def build_rootfs(path: str, size_mib: int) -> None:
    from novadocker import rootfs
    with tarfile.open(path, 'w') as out:
        with tarfile.open(fileobj=io.BytesIO(
                rootfs.busybox_rootfs())) as base:
            for member in base:
                out.addfile(member, base.extractfile(member)
                            if member.isreg() else None)
        info = tarfile.TarInfo('data/random.bin')
        info.size = size_mib * 1024 * 1024
        info.mode = 0o644
        directory = tarfile.TarInfo('data')
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        out.addfile(directory)
        out.addfile(info, io.BufferedReader(_RandomReader(), CHUNK))


def sha512_of(path: str) -> str:
    digest = hashlib.sha512()
    with open(path, 'rb') as source:
        for chunk in iter(lambda: source.read(CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def rate(nbytes, seconds) -> float:
    return nbytes / MB / seconds if seconds else float('inf')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size-mib', type=int, default=512)
    parser.add_argument('--repeat', type=int, default=1)
    parser.add_argument('--workdir', default='/var/tmp')
    parser.add_argument('--phase', choices=sorted(CHILDREN))
    parser.add_argument('--file')
    parser.add_argument('--sha512')
    parser.add_argument('--image-id')
    parser.add_argument('--host')
    parser.add_argument('--instance-uuid')
    parser.add_argument('--profile', action='store_true',
                        help='also print where the driver\'s time goes')
    for floor in ('load', 'commit', 'save'):
        parser.add_argument('--floor-' + floor, type=float,
                            help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        result = CHILDREN[args.phase](args)
        result['rss_mib'] = _vm_hwm_mib('self')
        print(json.dumps(result))
        return 0

    import docker
    api = docker.APIClient(version='auto', timeout=600)
    docker_cli = shutil.which('docker')
    if not docker_cli:
        print('the docker CLI is needed for the raw floor', file=sys.stderr)
        return 2
    run_id = uuid.uuid4().hex[:10]
    built = 'nova-docker-bench/big-%s:latest' % run_id
    glance_id = str(uuid.uuid4())
    from novadocker.virt.docker import guest
    from novadocker.virt.docker import images
    loaded = images.glance_tag(glance_id)
    raw_commit = 'nova-docker-bench/commit-%s:latest' % run_id
    host = 'ndbench-%s' % run_id
    workdir = tempfile.mkdtemp(prefix='nd-bench-', dir=args.workdir)
    tarball = os.path.join(workdir, 'image.tar')
    results = {key: [] for key in ('raw_load', 'raw_load_hashed', 'import',
                                   'raw_save',
                                   'raw_commit_save', 'snapshot')}

    def rmi(name):
        try:
            api.remove_image(name, force=True)
        except docker.errors.NotFound:
            pass

    try:
        print('Building a %d MiB image (busybox + random data)...'
              % args.size_mib, flush=True)
        rootfs = os.path.join(workdir, 'rootfs.tar')
        build_rootfs(rootfs, args.size_mib)
        repository, tag = built.split(':')
        api.import_image_from_file(
            rootfs, repository=repository, tag=tag,
            changes=['CMD ["/bin/sleep", "2147483647"]'])
        os.unlink(rootfs)
        with open(tarball, 'wb') as out:
            _run_measured([docker_cli, 'save', built], stdout=out)
        rmi(built)   # from here on, every load starts from an empty store
        size = os.path.getsize(tarball)
        sha512 = sha512_of(tarball)
        idle = _run_child('idle')['rss_mib']
        print('image tarball: %.1f MB; idle driver process RSS %.0f MiB'
              % (size / MB, idle), flush=True)

        for attempt in range(args.repeat):
            # Import: raw floor, then the driver, each into an empty store.
            with open(tarball, 'rb') as source:
                m = _run_measured([docker_cli, 'load'], stdin=source,
                                  stdout=subprocess.DEVNULL)
            results['raw_load'].append(dict(m, bytes=size))
            rmi(built)
            # The same with the check the driver makes: sha512 of the
            # bytes in the same pass (tee), as the driver hashes its stream.
            m = _run_measured(['bash', '-c', 'set -o pipefail; tee >('
                               'sha512sum > /dev/null) < "$1" | "$2" load '
                               '> /dev/null', 'load', tarball, docker_cli])
            results['raw_load_hashed'].append(dict(m, bytes=size))
            rmi(built)
            floors = {'floor_load': results['raw_load'][-1]['seconds']} \
                if args.profile else {}
            r = _run_child('import', file=tarball, sha512=sha512,
                           image_id=glance_id, **floors)
            results['import'].append(r)

            # Snapshot source: a running workload container of the image,
            # labelled the way the driver finds it.
            instance_uuid = str(uuid.uuid4())
            container = api.create_container(
                loaded, labels={guest.LABEL_INSTANCE: instance_uuid,
                                guest.LABEL_HOST: host,
                                guest.LABEL_ROLE: guest.ROLE_WORKLOAD,
                                BENCH_LABEL: run_id},
                host_config=api.create_host_config(network_mode='none'))
            api.start(container['Id'])
            out_path = os.path.join(workdir, 'out.tar')
            with open(out_path, 'wb') as out:
                m = _run_measured([docker_cli, 'save', loaded], stdout=out)
            results['raw_save'].append(
                dict(m, bytes=os.path.getsize(out_path)))
            os.unlink(out_path)
            start = time.monotonic()
            commit = _run_measured([docker_cli, 'commit', container['Id'],
                                    raw_commit], stdout=subprocess.DEVNULL)
            with open(out_path, 'wb') as out:
                m = _run_measured([docker_cli, 'save', raw_commit],
                                  stdout=out)
            m['seconds'] = time.monotonic() - start
            results['raw_commit_save'].append(
                dict(m, bytes=os.path.getsize(out_path)))
            rmi(raw_commit)
            os.unlink(out_path)
            floors = {'floor_commit': commit['seconds'],
                      'floor_save': results['raw_save'][-1]['seconds']} \
                if args.profile else {}
            r = _run_child('snapshot', file=out_path, host=host,
                           instance_uuid=instance_uuid, **floors)
            results['snapshot'].append(r)
            os.unlink(out_path)
            api.remove_container(container['Id'], force=True)
            rmi(loaded)
            print('round %d done' % (attempt + 1), flush=True)
    finally:
        for container in api.containers(
                all=True, filters={'label': '%s=%s' % (BENCH_LABEL, run_id)}):
            api.remove_container(container['Id'], force=True)
        for name in (built, loaded, raw_commit):
            rmi(name)
        from novadocker.virt.docker import snapshot
        for found in api.images(name=snapshot.SNAPSHOT_REPOSITORY):
            for name in found.get('RepoTags') or []:
                if name.endswith(snapshot.snapshot_tag('x', host).split(
                        '-', 1)[1]):
                    rmi(name)
        shutil.rmtree(workdir, ignore_errors=True)

    def best(key):
        return min(results[key], key=lambda r: r['seconds'])

    rows = [('raw: docker load < file', 'raw_load', 'docker CLI'),
            ('raw: the same, sha512 in the same pass (tee)',
             'raw_load_hashed', 'bash, tee'),
            ('driver import: Glance stream -> docker load', 'import',
             'python'),
            ('raw: docker save > file', 'raw_save', 'docker CLI'),
            ('raw: docker commit + docker save > file', 'raw_commit_save',
             'docker CLI'),
            ('driver snapshot: commit + save -> Glance', 'snapshot',
             'python')]
    print()
    print('best of %d, image tarball %.1f MB' % (args.repeat, size / MB))
    print('%-46s %8s %9s %14s' % ('', 'seconds', 'MB/s', 'peak RSS MiB'))
    for label, key, who in rows:
        r = best(key)
        print('%-46s %8.2f %9.1f %8.0f (%s)' % (
            label, r['seconds'], rate(r['bytes'], r['seconds']),
            r['rss_mib'], who))
    print('idle driver process (imports only): %.0f MiB RSS' % idle)
    imp, load = best('import'), best('raw_load')
    snap, save, commit_save = (best('snapshot'), best('raw_save'),
                               best('raw_commit_save'))
    print()
    print('import throughput, driver / raw docker load:       %.2f' % (
        rate(imp['bytes'], imp['seconds']) /
        rate(load['bytes'], load['seconds'])))
    hashed = best('raw_load_hashed')
    print('import throughput, driver / raw load + sha512:     %.2f' % (
        rate(imp['bytes'], imp['seconds']) /
        rate(hashed['bytes'], hashed['seconds'])))
    print('snapshot throughput, driver / raw docker save:     %.2f' % (
        rate(snap['bytes'], snap['seconds']) /
        rate(save['bytes'], save['seconds'])))
    print('snapshot throughput, driver / raw commit + save:   %.2f' % (
        rate(snap['bytes'], snap['seconds']) /
        rate(commit_save['bytes'], commit_save['seconds'])))
    print('driver memory above idle: import %+.0f MiB, snapshot %+.0f MiB '
          '(image %.0f MiB)' % (imp['rss_mib'] - idle,
                                snap['rss_mib'] - idle, size / 1024 / 1024))
    if args.profile:
        for key in ('import', 'snapshot'):
            print(results[key][-1]['profile'], end='')
    return 0


if __name__ == '__main__':
    sys.exit(main())
