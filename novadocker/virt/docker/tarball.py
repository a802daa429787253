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

"""The hardened rename of a ``docker save`` tarball, as one stream.

A tenant's tarball is rewritten member by member on its way to
``docker load``: every name checked, every header written afresh, the
image names inside replaced by the driver's own tag, and the unpacked size
capped before any data is copied. Pure: no Docker, no Glance, no options
(the caller passes the limits in), so it can be tested on bytes alone.
"""

import bz2
import gzip
import io
import json
import lzma
import math
import posixpath
import re
import tarfile
import typing

from nova.i18n import _
from oslo_utils import units

from novadocker.virt.docker import streams

# Tarball members that carry image names: they are rewritten in flight.
_MANIFEST = 'manifest.json'
_REPOSITORIES = 'repositories'
_OCI_INDEX = 'index.json'
_NAME_ANNOTATIONS = ('io.containerd.image.name',
                     'org.opencontainers.image.ref.name')

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
# Decompressed input is taken in blocks of this size.
_DECOMPRESSED_BLOCK = units.Mi
_END_OF_ARCHIVE = tarfile.NUL * (2 * _BLOCK)
_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
               tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class UnsafeTarball(ValueError):
    """A tarball the rewrite refuses: dockerd could read it otherwise."""


class ImageTooLarge(UnsafeTarball):
    """The tarball unpacks to more than the cap."""


def max_unpacked_bytes(glance_size: typing.Optional[int],
                       root_gb: int = 0, configured_gb: int = 0) -> int:
    """The unpacked-size cap of one image load: ``configured_gb``
    ([docker]image_max_unpacked_gb) if set, else the default from the
    flavor's root disk and the Glance image's size."""
    if configured_gb:
        return configured_gb * units.Gi
    return max(UNPACKED_FLOOR, (root_gb or 0) * units.Gi,
               UNPACKED_FACTOR * (glance_size or 0))


class _TarInput(io.RawIOBase):
    """The input as tarfile's ``r:`` mode reads it, forward only.

    tarfile parses headers and PAX/GNU records through :meth:`read`;
    member data is taken out with :meth:`views`, as views of the source's
    own blocks (no 10 KiB reads, no copy). ``seek`` only skips forward,
    which is all tarfile asks for once the data is taken.
    """

    def __init__(self, read_view: typing.Callable[[int], memoryview]):
        super().__init__()
        self._read_view = read_view
        self._peeked = memoryview(b'')
        self.position = 0
        self.source_failed = False

    def readable(self) -> bool:
        return True

    def _next_view(self, size: int) -> memoryview:
        if self._peeked:
            view, self._peeked = self._peeked[:size], self._peeked[size:]
        else:
            try:
                view = self._read_view(size)
            except Exception:
                self.source_failed = True
                raise
        self.position += len(view)
        return view

    def peek(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer at the end), left unread."""
        data = self.read(size)
        self._peeked = memoryview(data)
        self.position -= len(data)
        return data

    def views(self, size: int) -> typing.Iterator[memoryview]:
        """Exactly ``size`` bytes, as views; ReadError if the input ends."""
        while size > 0:
            view = self._next_view(size)
            if not view:
                raise tarfile.ReadError(_('unexpected end of data'))
            size -= len(view)
            yield view

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise ValueError('the tar input is read in bounded pieces')
        parts = []
        while size > 0:
            view = self._next_view(size)
            if not view:
                break
            parts.append(view)
            size -= len(view)
        return b''.join(parts)

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or offset < self.position:
            raise tarfile.ReadError(_('the tar stream cannot go back'))
        for _view in self.views(offset - self.position):
            pass
        return self.position


_DECOMPRESSORS = (
    (lambda head: head.startswith(b'\x1f\x8b\x08'),
     lambda raw, mode: gzip.GzipFile(fileobj=raw, mode=mode)),
    (lambda head: head[:3] == b'BZh' and head[4:10] == b'1AY&SY',
     bz2.BZ2File),
    (lambda head: head.startswith((b'\x5d\x00\x00\x80', b'\xfd7zXZ')),
     lzma.LZMAFile),
)


def _tar_input(source: io.RawIOBase) -> _TarInput:
    """The plain tar stream of ``source``: its own chunks if it is a
    ChunkReader of an uncompressed tarball, else decompressed (the
    compressions tarfile's ``r|*`` mode detects, by the same magic)."""
    read_view = getattr(source, 'read_view', None)
    if read_view is None:
        read_view = lambda size: memoryview(source.read(size))  # noqa
    raw = _TarInput(read_view)
    head = raw.peek(10)
    for matches, opener in _DECOMPRESSORS:
        if matches(head):
            break
    else:
        return raw
    decompressed = opener(raw, 'rb')

    def read_decompressed(size: int) -> memoryview:
        try:
            return memoryview(decompressed.read(
                min(size, _DECOMPRESSED_BLOCK)))
        except Exception as exc:
            if raw.source_failed:
                raise   # the source broke, not the data
            raise tarfile.ReadError(_('invalid compressed data: %s')
                                    % exc) from exc
    return _TarInput(read_decompressed)


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


def _read_json_member(tar_input: _TarInput, member, name: str) -> bytes:
    if member.size > MAX_JSON_BYTES:
        raise UnsafeTarball(_('%(name)s is %(n)d bytes, more than %(max)d') %
                            {'name': name, 'n': member.size,
                             'max': MAX_JSON_BYTES})
    return b''.join(tar_input.views(member.size))


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

    The rewrite runs in a thread behind a bounded queue (streams.pipe);
    the generator returned here is the request body of docker load.
    Closing the generator early (load refused) stops the thread. A
    malformed tarball raises ValueError from the generator, which aborts
    the upload.
    """
    def rewrite(writer: io.RawIOBase) -> None:
        members = _Members(max_unpacked)
        tar_input = _tar_input(source)
        written = 0

        def write(data) -> None:
            nonlocal written
            writer.write(data)
            written += len(data)

        def add(out: tarfile.TarInfo, data=()) -> None:
            """A fresh header, then the data (views), then its padding."""
            write(out.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING,
                            'surrogateescape'))
            for block in data:
                write(block)
            if out.size % _BLOCK:
                write(tarfile.NUL * (_BLOCK - out.size % _BLOCK))

        with tarfile.open(fileobj=tar_input, mode='r:',
                          tarinfo=_CheckedTarInfo) as tin:
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
                    data = _read_json_member(tar_input, member, name)
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
                    add(out, (data,))
                elif out.type == tarfile.REGTYPE:
                    add(out, tar_input.views(member.size))
                else:
                    add(out)
            if not seen_names:
                raise ValueError(_('no manifest.json or index.json: not '
                                   'a docker save tarball'))
        # The end of the archive, padded to a whole record as tarfile's
        # writer does.
        write(_END_OF_ARCHIVE)
        if written % tarfile.RECORDSIZE:
            write(tarfile.NUL * (tarfile.RECORDSIZE -
                                 written % tarfile.RECORDSIZE))
        if hasattr(source, 'drain'):
            source.drain()

    return streams.pipe(rewrite, chunk_size, 'nova-docker-image-stream')
