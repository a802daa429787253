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

"""Glance images in the local Docker store.

A Glance image (``container_format=docker``: a ``docker save`` tarball,
plain or gzip, Docker or OCI layout) is streamed from Glance straight into
``docker load`` and tagged ``nova-docker/glance:<glance image id>``. The
tags inside the tarball are rewritten on the way, so a tenant's tarball can
never re-point a name the host uses (``mariadb:10.11`` of a Kolla host, say),
and the Glance name never has to match a Docker name. The Glance multihash
is checked on the same pass. Nothing touches the disk but Docker's store.
"""

import collections
import hashlib
import io
import json
import math
import posixpath
import queue
import re
import tarfile
import threading
import typing

from nova import exception
from nova.i18n import _
from nova.image import glance
from nova import utils
from oslo_log import log as logging
from oslo_utils import timeutils
from oslo_utils import units

from novadocker import conf
from novadocker import rootfs
from novadocker.virt.docker import client as docker_client

CONF = conf.CONF
LOG = logging.getLogger(__name__)

IMAGE_API = glance.API()
GLANCE_REPOSITORY = 'nova-docker/glance'
# Nova keeps 255 characters of a fault, after a ~100-character prefix:
# keep this short enough that the whole command shows.
UPLOAD_HINT = _('docker save IMG | openstack image create '
                '--container-format docker --disk-format raw NAME')
# Tarball members that carry image names: they are rewritten in flight.
_MANIFEST = 'manifest.json'
_REPOSITORIES = 'repositories'
_OCI_INDEX = 'index.json'
_NAME_ANNOTATIONS = ('io.containerd.image.name',
                     'org.opencontainers.image.ref.name')


class ImageTransferFailed(exception.NovaException):
    msg_fmt = _("Transfer of image %(image_id)s failed: %(reason)s")


def split_reference(name: str) -> typing.Tuple[str, str]:
    """``repo[:tag]`` as (repository, tag); a registry port is no tag."""
    repository, sep, tag = name.rpartition(':')
    if not sep or '/' in tag:
        return name, 'latest'
    return repository, tag


def glance_tag(image_id: str) -> str:
    """The local name of a Glance image."""
    return '%s:%s' % (GLANCE_REPOSITORY, image_id)


def check_image_acceptable(image_meta) -> None:
    """Refuse anything that is not a docker save tarball, before any I/O."""
    container_format = getattr(image_meta, 'container_format', None) \
        if image_meta.obj_attr_is_set('container_format') else None
    if container_format != 'docker':
        raise exception.ImageUnacceptable(
            image_id=image_meta.id,
            reason=_('container_format %(fmt)r != docker: %(hint)s') % {
                'fmt': container_format, 'hint': UPLOAD_HINT})


class _ChunkReader(io.RawIOBase):
    """A file-like view of a chunk iterator that hashes what passes.

    tarfile reads it with read(n); every byte goes through ``hasher``, so
    the Glance checksum is verified on the single pass Docker needs anyway.
    """

    def __init__(self, chunks: typing.Iterable[bytes], hasher=None):
        super().__init__()
        self._chunks = iter(chunks)
        # The current chunk and how far it has been read: tarfile reads
        # 10 KiB at a time, and re-slicing a large chunk on every read
        # would copy it over and over.
        self._pending = memoryview(b'')
        self._offset = 0
        self._hasher = hasher
        self.size = 0

    def readable(self):
        return True

    def readinto(self, buf):
        while self._offset >= len(self._pending):
            try:
                chunk = next(self._chunks)
            except StopIteration:
                return 0
            if chunk:
                if self._hasher is not None:
                    self._hasher.update(chunk)
                self.size += len(chunk)
                self._pending = memoryview(bytes(chunk))
                self._offset = 0
        n = min(len(buf), len(self._pending) - self._offset)
        buf[:n] = self._pending[self._offset:self._offset + n]
        self._offset += n
        return n

    def drain(self):
        """Consume the rest (tar end blocks, gzip trailer) for the hash."""
        while self.readinto(bytearray(65536)):
            pass


class _Cancelled(Exception):
    pass


class _BodyFailed(Exception):
    """Raised into requests in place of the request body's own error.

    urllib3 takes an OSError with ECONNRESET or EPIPE raised while sending
    the body (Glance dropping the download) for the engine closing its
    socket early, and then waits for a response that never comes: the
    boot would fail only after the whole api_timeout.
    """


class _QueueWriter(io.RawIOBase):
    """Write side of a bounded pipe between two threads.

    Buffers up to ``chunk_size`` bytes per queue item; with a queue of
    ``depth`` items the pipe never holds more than (depth + 1) chunks.
    """

    def __init__(self, q: queue.Queue, chunk_size: int,
                 cancelled: threading.Event):
        super().__init__()
        self._q = q
        self._buf = bytearray()
        self._chunk_size = chunk_size
        self._cancelled = cancelled

    def writable(self):
        return True

    def write(self, data):
        self._buf += data
        while len(self._buf) >= self._chunk_size:
            self._put(bytes(self._buf[:self._chunk_size]))
            del self._buf[:self._chunk_size]
        return len(data)

    def flush_all(self):
        if self._buf:
            self._put(bytes(self._buf))
            self._buf = bytearray()

    def _put(self, item):
        while True:
            if self._cancelled.is_set():
                raise _Cancelled()
            try:
                self._q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue


# Limits on what a tenant's tarball can make nova-compute or dockerd hold.
# manifest.json and index.json are read into memory here; their size (and
# that of pax/GNU records, which tarfile reads whole) is checked first.
MAX_JSON_BYTES = units.Mi
# Image configs are read whole by dockerd: bounded too, more generously
# (an image's history of 127 layers with long RUN lines stays far below).
MAX_CONFIG_BYTES = 8 * units.Mi
# docker save writes 4 members per layer and Docker stacks at most 127.
MAX_MEMBERS = 10000
MAX_NAME_CHARS = 255
# Default unpacked-size cap ([docker]image_max_unpacked_gb = 0): the
# largest of this floor, the flavor's root disk and this many times the
# Glance image's size (a gzip bomb's ratio is far above it).
UNPACKED_FLOOR = units.Gi
UNPACKED_FACTOR = 10
# Every name docker save writes is made of these (hex IDs, sha256, json).
_NAME_COMPONENT = re.compile(r'^[A-Za-z0-9_.+=@:,-]+$')
_BLOCK = tarfile.BLOCKSIZE
_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
               tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_RENAMED = re.compile(r'^The image (\S+) already exists, renaming the old '
                      r'one with ID (\S+) to empty string')


class UnsafeTarball(ValueError):
    """A tarball the rewrite refuses: dockerd could read it otherwise."""


class ImageTooLarge(UnsafeTarball):
    """The tarball unpacks to more than the cap."""


def max_unpacked_bytes(glance_size: typing.Optional[int],
                       root_gb: int = 0) -> int:
    """The unpacked-size cap of one image load (see image_max_unpacked_gb)."""
    if CONF.docker.image_max_unpacked_gb:
        return CONF.docker.image_max_unpacked_gb * units.Gi
    return max(UNPACKED_FLOOR, (root_gb or 0) * units.Gi,
               UNPACKED_FACTOR * (glance_size or 0))


class _CheckedTarInfo(tarfile.TarInfo):
    """Parses input headers, refusing what two tar readers could disagree
    on or what would make tarfile hold an unbounded record in memory."""

    def _proc_member(self, tarfile_):
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise UnsafeTarball(_('%s: sparse member') % self.name)
        if self.type in _META_TYPES and self.size > MAX_JSON_BYTES:
            raise UnsafeTarball(_('a %(n)d-byte pax/GNU header record') % {
                'n': self.size})
        return super()._proc_member(tarfile_)

    def _apply_pax_info(self, pax_headers, encoding, errors):
        if any(key.startswith('GNU.sparse') for key in pax_headers):
            raise UnsafeTarball(_('%s: sparse member') % self.name)
        if 'size' in pax_headers:
            try:
                pax_size = int(pax_headers['size'])
            except ValueError:
                pax_size = -1
            # Writers put 0 in the ustar field when the PAX record holds
            # the size; any other disagreement is a smuggling attempt.
            if pax_size < 0 or self.size not in (0, pax_size):
                raise UnsafeTarball(
                    _('%(name)s: PAX size %(pax)s contradicts the header '
                      'size %(ustar)d') % {'name': self.name,
                                           'pax': pax_headers['size'],
                                           'ustar': self.size})
        super()._apply_pax_info(pax_headers, encoding, errors)


def clean_member_name(raw: str) -> str:
    """The path dockerd would write for a member name ('.' for the root).

    Go's filepath.Clean turns ``x/../manifest.json`` and
    ``./manifest.json`` into ``manifest.json``: names are compared cleaned.
    Absolute names, ``..`` and characters docker save never writes are
    refused rather than cleaned.
    """
    if raw.startswith('/'):
        raise UnsafeTarball(_('%r: absolute member name') % raw)
    parts = [part for part in raw.split('/') if part not in ('', '.')]
    for part in parts:
        if part == '..':
            raise UnsafeTarball(_('%r: ".." in a member name') % raw)
        if not _NAME_COMPONENT.match(part):
            raise UnsafeTarball(_('%r: unexpected characters in a member '
                                  'name') % raw)
    name = '/'.join(parts) or '.'
    if len(name) > MAX_NAME_CHARS:
        raise UnsafeTarball(_('%r: member name too long') % raw[:64])
    return name


def _symlink_target(name: str, linkname: str) -> str:
    """A symlink's target, cleaned; refused unless it stays inside the
    archive (resolved from the link's own directory)."""
    if not linkname or linkname.startswith('/'):
        raise UnsafeTarball(_('%(name)s: symlink to %(target)r outside the '
                              'archive') % {'name': name, 'target': linkname})
    for part in linkname.split('/'):
        if part not in ('', '.', '..') and not _NAME_COMPONENT.match(part):
            raise UnsafeTarball(_('%r: unexpected characters in a symlink '
                                  'target') % name)
    cleaned = posixpath.normpath(linkname)
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name),
                                                 cleaned))
    if resolved == '..' or resolved.startswith('../'):
        raise UnsafeTarball(_('%(name)s: symlink to %(target)r outside the '
                              'archive') % {'name': name, 'target': linkname})
    return cleaned


def _read_json_member(tin, member, name: str) -> bytes:
    if member.size > MAX_JSON_BYTES:
        raise UnsafeTarball(_('%(name)s is %(n)d bytes, more than %(max)d') %
                            {'name': name, 'n': member.size,
                             'max': MAX_JSON_BYTES})
    return tin.extractfile(member).read()


def _rename_manifest(data: bytes, new_tag: str) -> bytes:
    """One image (one distinct Config), whatever the entries and tags."""
    entries = json.loads(data)
    if not isinstance(entries, list) or not entries or \
            not all(isinstance(e, dict) for e in entries):
        raise ValueError(_('manifest.json describes %d images; a Glance '
                           'image must hold exactly one') %
                         (len(entries) if isinstance(entries, list) else 0))
    configs = {json.dumps([e.get('Config'), e.get('Layers')],
                          sort_keys=True) for e in entries}
    if len(configs) != 1:
        raise ValueError(_('manifest.json describes %d images; a Glance '
                           'image must hold exactly one') % len(configs))
    entry = dict(entries[0], RepoTags=[new_tag])
    return json.dumps([entry]).encode()


def _rename_oci_index(data: bytes, new_tag: str) -> bytes:
    """One image = one distinct manifest digest: Docker 25+ writes one
    entry per tag of the same image; they collapse into one, our name."""
    index = json.loads(data)
    manifests = (index.get('manifests') or []) if isinstance(index, dict) \
        else []
    digests = {m.get('digest') if isinstance(m, dict) else None
               for m in manifests}
    if len(digests) != 1 or None in digests:
        raise ValueError(_('index.json describes %d images; a Glance image '
                           'must hold exactly one') % len(digests))
    entry = dict(manifests[0])
    annotations = {key: value for key, value in
                   (entry.get('annotations') or {}).items()
                   if key not in _NAME_ANNOTATIONS}
    annotations['io.containerd.image.name'] = 'docker.io/' + new_tag
    annotations['org.opencontainers.image.ref.name'] = new_tag.split(':')[1]
    entry['annotations'] = annotations
    index['manifests'] = [entry]
    return json.dumps(index).encode()


def _referenced_json(name: str, data: bytes) -> typing.Set[str]:
    """Member names dockerd reads whole: configs (and OCI manifests)."""
    parsed = json.loads(data)
    if name == _MANIFEST:
        refs = {e.get('Config') for e in parsed}
    else:
        refs = {'blobs/%s' % m['digest'].replace(':', '/', 1)
                for m in parsed['manifests']
                if isinstance(m.get('digest'), str)}
    cleaned = set()
    for ref in refs:
        if isinstance(ref, str) and ref:
            try:
                cleaned.add(clean_member_name(ref))
            except UnsafeTarball:
                pass   # dockerd refuses it itself (safePath)
    return cleaned


class _Members:
    """What the rewrite has seen so far, to judge the next member."""

    def __init__(self, max_unpacked: typing.Optional[int]):
        self.kinds: typing.Dict[str, bytes] = {}
        self.sizes: typing.Dict[str, int] = {}   # regular members
        self.links: typing.Dict[str, str] = {}   # symlink -> cleaned target
        self.hardlinks: typing.Dict[str, str] = {}
        self.refs: typing.Set[str] = set()
        self.unpacked = 0
        self.max_unpacked = max_unpacked

    def admit(self, member: tarfile.TarInfo) -> tarfile.TarInfo:
        """Check one input member; return the fresh header to write."""
        if len(self.kinds) >= MAX_MEMBERS:
            raise UnsafeTarball(_('more than %d members') % MAX_MEMBERS)
        name = clean_member_name(member.name)
        if name in self.kinds:
            raise UnsafeTarball(_('%s appears twice') % name)
        parts = name.split('/')
        for i in range(1, len(parts)):
            parent = '/'.join(parts[:i])
            kind = self.kinds.get(parent)
            if kind is not None and kind != tarfile.DIRTYPE:
                raise UnsafeTarball(
                    _('%(name)s passes through %(parent)s, which is not a '
                      'directory') % {'name': name, 'parent': parent})
        if name == '.' and member.type != tarfile.DIRTYPE:
            raise UnsafeTarball(_('%r: not a file name') % member.name)
        out = tarfile.TarInfo(name)
        mtime = member.mtime
        out.mtime = min(max(int(mtime), 0), 8 ** 11 - 1) \
            if math.isfinite(mtime) else 0
        out.mode = member.mode & 0o777
        if name in (_MANIFEST, _OCI_INDEX, _REPOSITORIES) and (
                member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE)):
            raise UnsafeTarball(_('%s is not a regular file') % name)
        if member.type in (tarfile.REGTYPE, tarfile.AREGTYPE,
                           tarfile.CONTTYPE):
            out.type = tarfile.REGTYPE
            out.size = member.size
            self.sizes[name] = member.size
        elif member.type == tarfile.DIRTYPE:
            out.type = tarfile.DIRTYPE
        elif member.type == tarfile.SYMTYPE:
            out.type = tarfile.SYMTYPE
            out.linkname = _symlink_target(name, member.linkname)
            self.links[name] = posixpath.normpath(posixpath.join(
                posixpath.dirname(name), out.linkname))
        elif member.type == tarfile.LNKTYPE:
            target = clean_member_name(member.linkname)
            if target not in self.sizes:
                raise UnsafeTarball(
                    _('%(name)s: hard link to %(target)r, not an earlier '
                      'file of the archive') % {
                        'name': name, 'target': member.linkname})
            out.type = tarfile.LNKTYPE
            out.linkname = target
            self.hardlinks[name] = target
        else:
            raise UnsafeTarball(_('%(name)s: member type %(type)r is not in '
                                  'a docker save tarball') % {
                                      'name': name, 'type': member.type})
        self.kinds[name] = out.type
        self.unpacked += _BLOCK * (1 + -(-out.size // _BLOCK))
        if len(name) > 100:
            self.unpacked += 2 * _BLOCK   # the PAX path record we write
        if self.max_unpacked is not None and \
                self.unpacked > self.max_unpacked:
            raise ImageTooLarge(
                _('the image unpacks to more than %(gib).2f GiB ([docker]'
                  'image_max_unpacked_gb, default from the flavor root '
                  'disk or %(factor)dx the image size)') % {
                    'gib': self.max_unpacked / units.Gi,
                    'factor': UNPACKED_FACTOR})
        self.check_refs()
        return out

    def resolve(self, name: str) -> typing.Optional[str]:
        for _hop in range(16):
            if name in self.hardlinks:
                name = self.hardlinks[name]
            elif name in self.links:
                name = self.links[name]
            else:
                return name
        return None

    def check_refs(self) -> None:
        """Configs dockerd reads whole must be small: checked as soon as
        both the reference and the member are known."""
        for ref in self.refs:
            size = self.sizes.get(self.resolve(ref) or '', 0)
            if size > MAX_CONFIG_BYTES:
                raise UnsafeTarball(
                    _('image config %(name)s is %(n)d bytes, more than '
                      '%(max)d') % {'name': ref, 'n': size,
                                    'max': MAX_CONFIG_BYTES})


def retag_tarball(source: io.RawIOBase, new_tag: str, chunk_size: int,
                  max_unpacked: typing.Optional[int] = None
                  ) -> typing.Iterator[bytes]:
    """Stream ``source`` (a docker save tarball, maybe compressed) as a
    plain tarball whose only image name is ``new_tag``.

    Every member is written with a fresh header built from its checked
    name, type, size, mode and mtime: no input PAX or GNU record reaches
    dockerd, so dockerd's Go reader sees exactly the members checked here
    (PAX records appear only where ustar cannot hold a checked value, a
    name over 100 characters or a size over 8 GiB, generated by tarfile).
    Refused (UnsafeTarball, a ValueError): sparse, device and fifo members,
    absolute names, ``..``, a member under an earlier symlink or file, a
    symlink leading outside, a hard link not to an earlier file, any name
    twice (``manifest.json`` and ``index.json`` compared as dockerd cleans
    them), over-sized JSON and more than ``max_unpacked`` bytes unpacked,
    checked on the declared sizes before any data is copied.

    The rewrite runs in a thread that feeds a bounded queue; the generator
    returned here is the request body of docker load. Closing the generator
    early (load refused) stops the thread. A malformed tarball raises
    ValueError from the generator, which aborts the upload.
    """
    q: queue.Queue = queue.Queue(maxsize=4)
    cancelled = threading.Event()
    done = object()
    failure: typing.List[BaseException] = []

    def produce():
        writer = _QueueWriter(q, chunk_size, cancelled)
        members = _Members(max_unpacked)
        try:
            with tarfile.open(fileobj=source, mode='r|*',
                              tarinfo=_CheckedTarInfo) as tin, \
                    tarfile.open(fileobj=writer, mode='w|',
                                 bufsize=chunk_size,
                                 format=tarfile.PAX_FORMAT,
                                 copybufsize=chunk_size) as tout:
                seen_names = False
                for member in tin:
                    out = members.admit(member)
                    name = out.name
                    if name == '.':
                        continue   # the root directory itself
                    if name in (_MANIFEST, _OCI_INDEX, _REPOSITORIES):
                        if name == _REPOSITORIES:
                            # Legacy name list: the manifest wins. Not
                            # written, so no hard link may point at it.
                            del members.sizes[name]
                            continue
                        data = _read_json_member(tin, member, name)
                        try:
                            if name == _MANIFEST:
                                data = _rename_manifest(data, new_tag)
                            else:
                                data = _rename_oci_index(data, new_tag)
                            members.refs |= _referenced_json(name, data)
                        except (AttributeError, KeyError, TypeError,
                                IndexError) as exc:
                            raise ValueError(_('%(name)s: unexpected '
                                               'structure (%(err)r)') % {
                                'name': name, 'err': exc}) from exc
                        members.check_refs()
                        seen_names = True
                        out.size = len(data)
                        tout.addfile(out, io.BytesIO(data))
                    elif out.type == tarfile.REGTYPE:
                        tout.addfile(out, tin.extractfile(member))
                    else:
                        tout.addfile(out)
                if not seen_names:
                    raise ValueError(_('no manifest.json or index.json: not '
                                       'a docker save tarball'))
            source.drain() if hasattr(source, 'drain') else None
            writer.flush_all()
        except _Cancelled:
            return
        except (tarfile.TarError, EOFError, OSError, ValueError,
                json.JSONDecodeError, KeyError) as exc:
            failure.append(exc)
        except BaseException as exc:  # surfaced to the consumer, not lost
            failure.append(exc)
        finally:
            while not cancelled.is_set():
                try:
                    q.put(done, timeout=0.5)
                    break
                except queue.Full:
                    continue

    producer = threading.Thread(target=produce, daemon=True,
                                name='nova-docker-image-stream')
    producer.start()
    try:
        while True:
            item = q.get()
            if item is done:
                break
            yield item
        if failure:
            raise failure[0]
    finally:
        cancelled.set()
        producer.join(timeout=30)


def _image_lock(image_id: str):
    """The per-image lock: loads, holds, releases and cache ageing of one
    Glance image never interleave."""
    return utils.synchronized('nova-docker-image-%s' % image_id)


# Spawns of this process holding each Glance image: taken under the image's
# lock when ensure_image hands the image to a spawn, released when that
# spawn ends. An image with holders is never removed: a spawn between
# ensure_image and the creation of its container uses the image, but no
# container shows it yet.
_holds_lock = threading.Lock()
_holds: typing.Counter[str] = collections.Counter()


def holders(image_id: str) -> int:
    """How many spawns of this process hold the image."""
    with _holds_lock:
        return _holds[image_id]


def _hold(image_id: str) -> None:
    with _holds_lock:
        _holds[image_id] += 1


def _unhold(image_id: str) -> None:
    with _holds_lock:
        _holds[image_id] -= 1
        if _holds[image_id] <= 0:
            del _holds[image_id]


class ImageStore:
    """Loads, finds and removes the driver's images in the Docker store."""

    def __init__(self, api):
        self._api = api
        # True once this store loaded an image from Glance: a failed spawn
        # removes only an image it loaded itself, not one another boot
        # loaded a moment before.
        self.loaded = False

    def local_image_id(self, image_id: str) -> typing.Optional[str]:
        """Docker ID of the loaded Glance image, or None if not loaded."""
        try:
            with docker_client.translate_errors('inspect image',
                                                image_id=image_id):
                return self._api.inspect_image(glance_tag(image_id))['Id']
        except exception.ImageNotFound:
            return None

    def ensure_image(self, context, image_meta, hold: bool = False,
                     root_gb: int = 0) -> str:
        """Make the Glance image available locally; return its Docker ID.

        One download per image, however many boots ask for it at once: the
        lock is per Glance image ID, so different images load in parallel.
        With ``hold`` (a spawn), the image is held until :meth:`release`:
        nothing removes it meanwhile.
        ``root_gb`` (the flavor's root disk) raises the default cap on what
        the image may unpack to.
        """
        check_image_acceptable(image_meta)
        image_id = image_meta.id

        @_image_lock(image_id)
        def _locked():
            docker_id = self.local_image_id(image_id)
            if docker_id is None:
                docker_id = self._load_from_glance(context, image_meta,
                                                   root_gb)
            # A use (and, after docker load, which leaves LastTagTime
            # unset, the first one): cache ageing counts from here.
            self.touch(image_id)
            if hold:
                _hold(image_id)
            return docker_id

        return _locked()

    def release(self, image_id: str, remove_if_unused: bool = False
                ) -> bool:
        """End a spawn's hold of the image; with ``remove_if_unused`` (a
        failed spawn that loaded it), remove it if no other spawn holds
        it and no container uses it. True if removed."""

        @_image_lock(image_id)
        def _locked() -> bool:
            _unhold(image_id)
            if not remove_if_unused:
                return False
            others = holders(image_id)
            if others:
                LOG.info('Image %s kept: %d other spawn(s) use it',
                         image_id, others)
                return False
            docker_id = self.local_image_id(image_id)
            if docker_id is None:
                return False
            if docker_id in images_used_by_containers(self._api):
                LOG.info('Image %s kept: a container uses it', image_id)
                return False
            try:
                # force=False: Docker refuses if a container appeared.
                with docker_client.translate_errors('remove image',
                                                    image_id=image_id):
                    self._api.remove_image(glance_tag(image_id),
                                           force=False)
            except exception.ImageNotFound:
                return False
            except docker_client.DockerOperationFailed as exc:
                LOG.info('Image %s kept: %s', image_id, exc.reason)
                return False
            LOG.info('Image %s removed after the failed spawn that loaded '
                     'it', image_id)
            return True

        return _locked()

    def touch(self, image_id: str) -> None:
        """Record a use: re-tagging moves the image's LastTagTime, which is
        what image cache ageing reads."""
        with docker_client.translate_errors('tag image', image_id=image_id):
            self._api.tag(glance_tag(image_id), GLANCE_REPOSITORY,
                          tag=image_id, force=True)

    def _load_from_glance(self, context, image_meta,
                          root_gb: int = 0) -> str:
        image_id = image_meta.id
        meta = IMAGE_API.get(context, image_id)
        algo = meta.get('os_hash_algo')
        expected = meta.get('os_hash_value')
        hasher = None
        if algo and expected:
            try:
                hasher = hashlib.new(algo)
            except ValueError:
                LOG.warning('Image %s: unknown hash algorithm %s, the '
                            'download is not verified', image_id, algo)
        else:
            LOG.warning('Image %s has no os_hash_value in Glance; the '
                        'download is not verified', image_id)
        LOG.info('Loading image %s from Glance into Docker', image_id)
        chunks = IMAGE_API.download(context, image_id)
        if chunks is None:
            raise ImageTransferFailed(image_id=image_id,
                                      reason=_('Glance returned no data'))
        reader = _ChunkReader(chunks, hasher)
        body = retag_tarball(reader, glance_tag(image_id),
                             CONF.docker.image_load_chunk_size,
                             max_unpacked_bytes(meta.get('size'), root_gb))
        try:
            self._docker_load(image_id, body)
            if hasher is not None and hasher.hexdigest() != expected:
                raise exception.ImageUnacceptable(
                    image_id=image_id,
                    reason=_('checksum mismatch: Glance says %(algo)s '
                             '%(exp)s, the data hashes to %(got)s') % {
                                 'algo': algo, 'exp': expected,
                                 'got': hasher.hexdigest()})
            docker_id = self.local_image_id(image_id)
            if docker_id is None:
                raise exception.ImageUnacceptable(
                    image_id=image_id,
                    reason=_('docker load did not report the image'))
        except Exception:
            self.remove(image_id)
            raise
        finally:
            body.close()
        LOG.info('Image %s loaded as %s (%d bytes)', image_id, docker_id,
                 reader.size)
        self.loaded = True
        return docker_id

    def _docker_load(self, image_id: str, body) -> None:
        """POST the body to docker load and check what it reports."""
        loaded: typing.List[str] = []
        loaded_ids: typing.List[str] = []
        renamed: typing.Dict[str, str] = {}
        body_failure: typing.List[Exception] = []

        def watched():
            # Remember why the body failed: requests wraps an OSError from
            # a request body (Glance dropped the connection) into a
            # ConnectionError, which would read as "Docker unreachable".
            try:
                yield from body
            except Exception as exc:
                body_failure.append(exc)
                raise _BodyFailed(str(exc)) from exc

        try:
            with docker_client.translate_errors('load image',
                                                image_id=image_id):
                for message in self._api.load_image(watched()):
                    if 'error' in message or 'errorDetail' in message:
                        detail = (message.get('errorDetail') or {}).get(
                            'message') or message.get('error')
                        self._raise_if_disk_full(image_id, detail)
                        raise exception.ImageUnacceptable(
                            image_id=image_id,
                            reason=_('docker load failed: %s') % detail)
                    for line in (message.get('stream') or '').splitlines():
                        self._parse_load_line(line, loaded, loaded_ids,
                                              renamed)
        except Exception as exc:
            if body_failure:
                cause = body_failure[0]
            elif isinstance(exc, (docker_client.DockerUnavailable,
                                  exception.ImageUnacceptable,
                                  ImageTransferFailed)):
                raise
            elif isinstance(exc, exception.NovaException):
                self._raise_if_disk_full(image_id, str(exc))
                # The engine refused what it was sent.
                raise exception.ImageUnacceptable(
                    image_id=image_id, reason=str(exc)) from exc
            else:
                cause = exc
            error = self._body_error(image_id, cause)
            if error is cause:
                raise cause
            raise error from cause
        reported = set(loaded) | set(loaded_ids)
        if reported != {glance_tag(image_id)}:
            # Our rewrite leaves one name; anything else means dockerd read
            # the tarball otherwise: undo all of it and refuse the image.
            self._undo_load(image_id, loaded, loaded_ids, renamed)
            raise exception.ImageUnacceptable(
                image_id=image_id,
                reason=_('docker load reported %s, not only the image\'s '
                         'own name; the load was undone') %
                (sorted(reported) or 'nothing'))

    @staticmethod
    def _parse_load_line(line: str, loaded, loaded_ids, renamed) -> None:
        line = line.strip()
        if line.startswith('Loaded image ID:'):
            loaded_ids.append(line.split(':', 1)[1].strip())
        elif line.startswith('Loaded image:'):
            loaded.append(line.split(':', 1)[1].strip())
        else:
            match = _RENAMED.match(line)
            if match:
                renamed[match.group(1)] = match.group(2)

    def _undo_load(self, image_id: str, loaded, loaded_ids,
                   renamed) -> None:
        """Put back every name the load moved, drop the ones it made."""
        ours = glance_tag(image_id)
        for name in loaded:
            if name == ours:
                continue
            previous = renamed.get(name)
            try:
                with docker_client.translate_errors('undo load',
                                                    image_id=image_id):
                    if previous:
                        repository, tag = split_reference(name)
                        self._api.tag(previous, repository, tag=tag,
                                      force=True)
                        LOG.error('Image %(id)s: docker load moved %(name)s; '
                                  'put back on %(prev)s', {
                                      'id': image_id, 'name': name,
                                      'prev': previous})
                    else:
                        self._api.remove_image(name, force=False)
                        LOG.error('Image %(id)s: docker load created '
                                  '%(name)s; removed', {
                                      'id': image_id, 'name': name})
            except exception.NovaException as exc:
                LOG.error('Image %(id)s: could not undo %(name)s: %(err)s',
                          {'id': image_id, 'name': name, 'err': exc})
        self.remove(image_id)
        for docker_id in loaded_ids:
            try:
                with docker_client.translate_errors('undo load',
                                                    image_id=image_id):
                    # Not forced: kept if tagged or used, so not ours alone.
                    self._api.remove_image(docker_id, force=False)
            except exception.NovaException as exc:
                LOG.info('Image %(id)s: kept %(docker)s: %(err)s', {
                    'id': image_id, 'docker': docker_id, 'err': exc})

    @staticmethod
    def _raise_if_disk_full(image_id: str, detail) -> None:
        """A full Docker data root is this host's fault, not the image's:
        ImageTransferFailed lets Nova reschedule the boot to another host
        (ImageUnacceptable would abort it), and the reason fits Nova's
        fault message (Docker's names a long temporary path first)."""
        if 'no space left on device' in str(detail).lower():
            raise ImageTransferFailed(
                image_id=image_id,
                reason=_('no space left on device: the Docker data root '
                         'of this host is full'))

    @staticmethod
    def _body_error(image_id: str, exc: Exception) -> Exception:
        """The Nova exception for a failure while producing the body."""
        if isinstance(exc, ImageTooLarge):
            return exception.ImageUnacceptable(image_id=image_id,
                                               reason=str(exc))
        if isinstance(exc, UnsafeTarball):
            return exception.ImageUnacceptable(
                image_id=image_id,
                reason=_('unsafe docker save tarball refused: %s') % exc)
        if isinstance(exc, (ValueError, tarfile.TarError, EOFError)):
            return exception.ImageUnacceptable(
                image_id=image_id,
                reason=_('not a valid docker save tarball (%(err)s). '
                         '%(hint)s') % {'err': exc, 'hint': UPLOAD_HINT})
        if isinstance(exc, exception.NovaException):
            return exc   # e.g. Glance's own errors, already translated
        if isinstance(exc, OSError):
            return ImageTransferFailed(image_id=image_id, reason=str(exc))
        return exc

    def remove(self, image_id: str) -> None:
        """Remove the loaded image, if any. Idempotent."""
        try:
            with docker_client.translate_errors('remove image',
                                                image_id=image_id):
                self._api.remove_image(glance_tag(image_id), force=True)
        except exception.ImageNotFound:
            pass

    def list_loaded(self) -> typing.List[dict]:
        """The images this driver loaded (tagged from Glance)."""
        with docker_client.translate_errors('list images'):
            return self._api.images(name=GLANCE_REPOSITORY)


def ensure_sandbox_image(api) -> str:
    """Build the sandbox image locally if the engine lacks it; return its
    Docker image ID.

    No registry is needed: the image is ``docker import`` of a static
    binary (busybox-static), whose ``sleep`` holds the network namespace.
    The driver creates sandboxes from the ID resolved here at start-up,
    never from the name, which anything with access to the engine could
    re-point later.
    """
    name = CONF.docker.sandbox_image
    try:
        with docker_client.translate_errors('inspect sandbox image',
                                            image_id=name):
            return api.inspect_image(name)['Id']
    except exception.ImageNotFound:
        pass
    repository, tag = split_reference(name)
    try:
        archive = rootfs.sandbox_rootfs(CONF.docker.sandbox_binary)
    except OSError as exc:
        raise exception.NovaException(
            _('Cannot build the sandbox image %(name)s from %(bin)s: '
              '%(err)s. Install busybox-static or set [docker]'
              'sandbox_binary / sandbox_image.') % {
                'name': name, 'bin': CONF.docker.sandbox_binary,
                'err': exc})
    LOG.info('Building sandbox image %s from %s', name,
             CONF.docker.sandbox_binary)
    with docker_client.translate_errors('import sandbox image'):
        api.import_image_from_data(
            archive, repository=repository, tag=tag,
            changes=['ENTRYPOINT ["/bin/busybox"]',
                     'CMD ["sleep", "2147483647"]',
                     'LABEL org.openstack.nova-docker.role=sandbox-image'])
        return api.inspect_image(name)['Id']


# -- image cache ageing ------------------------------------------------------
#
# The Docker store is the cache: every image the driver loaded is tagged
# nova-docker/glance:<glance id>, and ImageStore.touch() re-tags it on each
# use, which moves the image's Metadata.LastTagTime. That is "last used".
# docker load itself leaves LastTagTime unset (and Created is when the image
# was built, maybe months ago), so an image never touched since its load
# has its clock started by the first ageing pass that sees it.


class CachedImage(typing.NamedTuple):
    """One Glance image in the local cache."""
    glance_id: str
    docker_id: str
    last_used: typing.Any   # aware datetime (UTC); None: not since load


def _last_used(inspected: dict):
    """LastTagTime (moved by every touch); None if never tagged."""
    stamp = (inspected.get('Metadata') or {}).get('LastTagTime') or ''
    if stamp and not stamp.startswith('0001-'):
        return timeutils.parse_isotime(stamp)
    return None


def list_cached(api) -> typing.List[CachedImage]:
    """The images the driver loaded: only the nova-docker/glance tags."""
    with docker_client.translate_errors('list images'):
        found = api.images(name=GLANCE_REPOSITORY)
    prefix = GLANCE_REPOSITORY + ':'
    cached = []
    for image in found:
        glance_ids = [tag[len(prefix):] for tag in image.get('RepoTags') or []
                      if tag.startswith(prefix)]
        if not glance_ids:
            continue
        try:
            with docker_client.translate_errors('inspect image',
                                                image_id=image['Id']):
                inspected = api.inspect_image(image['Id'])
        except exception.ImageNotFound:
            continue   # removed meanwhile
        for glance_id in glance_ids:
            cached.append(CachedImage(glance_id, image['Id'],
                                      _last_used(inspected)))
    return cached


def images_used_by_containers(api) -> typing.Set[str]:
    """Docker image IDs of every container on the engine, in any state and
    whoever made it: an image a container uses is never aged out."""
    with docker_client.translate_errors('list containers'):
        return {c['ImageID'] for c in api.containers(all=True)}


def age_cache(api, in_use_glance_ids: typing.Iterable[str],
              min_age_seconds: int, remove_unused: bool = True,
              now=None) -> typing.Dict[str, typing.List[str]]:
    """One pass of image cache ageing over the driver's own images.

    An image is in use when an instance Nova lists uses its Glance ID or any
    container on the engine uses its Docker image. Images in use are touched,
    so their age restarts when the last user goes. Unused images last used
    at least ``min_age_seconds`` ago are removed if ``remove_unused``.
    Images not touched since their load are touched (their clock starts)
    and kept. Returns the Glance IDs by outcome: in_use, removed, kept.
    """
    in_use_glance_ids = set(in_use_glance_ids)
    used_docker_ids = images_used_by_containers(api)
    now = now or timeutils.utcnow(with_timezone=True)
    result: typing.Dict[str, typing.List[str]] = {
        'in_use': [], 'removed': [], 'kept': []}
    store = ImageStore(api)
    for image in list_cached(api):
        in_use = (image.glance_id in in_use_glance_ids or
                  image.docker_id in used_docker_ids)
        if in_use or image.last_used is None:
            # In use: its age restarts. Never used since its load (loaded
            # before the driver marked loads): its age starts now.
            result['in_use' if in_use else 'kept'].append(image.glance_id)
            try:
                store.touch(image.glance_id)
            except exception.NovaException as exc:
                LOG.warning('Image cache: could not touch %s: %s',
                            image.glance_id, exc)
            continue
        age = (now - image.last_used).total_seconds()
        if not remove_unused or age < min_age_seconds:
            result['kept'].append(image.glance_id)
            continue
        if _remove_if_still_unused(api, image.glance_id, min_age_seconds):
            result['removed'].append(image.glance_id)
        else:
            result['kept'].append(image.glance_id)
    return result


def _remove_if_still_unused(api, glance_id: str,
                            min_age_seconds: int) -> bool:
    """Untag one image under its load lock, after looking again: a spawn
    may hold it or have touched it, or a container started using it,
    meanwhile."""

    @_image_lock(glance_id)
    def _locked() -> bool:
        if holders(glance_id):
            return False
        tag = glance_tag(glance_id)
        try:
            with docker_client.translate_errors('inspect image',
                                                image_id=glance_id):
                inspected = api.inspect_image(tag)
            last_used = _last_used(inspected)
            if last_used is None:
                return False
            age = (timeutils.utcnow(with_timezone=True) -
                   last_used).total_seconds()
            if age < min_age_seconds:
                return False
            if inspected['Id'] in images_used_by_containers(api):
                return False
            # force=False: Docker refuses if a container uses the image,
            # and only untags if the image has other names too.
            with docker_client.translate_errors('remove image',
                                                image_id=glance_id):
                api.remove_image(tag, force=False)
        except exception.ImageNotFound:
            return False
        except docker_client.DockerOperationFailed as exc:
            LOG.info('Image cache: %s kept: %s', glance_id, exc)
            return False
        LOG.info('Image cache: removed image %s, unused for %d seconds',
                 glance_id, age)
        return True

    return _locked()
