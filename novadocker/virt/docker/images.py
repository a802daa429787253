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

"""The driver's images in the local Docker store.

A Glance image (``container_format=docker``: a ``docker save`` tarball,
plain or gzip, Docker or OCI layout) is streamed from Glance straight into
``docker load`` and tagged ``nova-docker/glance:<glance image id>``. The
tags inside the tarball are rewritten on the way (``tarball``), so a
tenant's tarball can never re-point a name the host uses (``mariadb:10.11``
of a Kolla host, say), and the Glance name never has to match a Docker
name. The Glance multihash is checked on the same pass. Nothing touches the
disk but Docker's store.

Every image the driver removes goes through :meth:`ImageStore.remove`,
under one rule (see there). Cache ageing lives in ``imagecache``.
"""

import collections
import hashlib
import tarfile
import threading
import typing

from nova import exception
from nova.i18n import _
from nova.image import glance
from nova import utils
from oslo_log import log as logging

from novadocker import conf
from novadocker import rootfs
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import streams
from novadocker.virt.docker import tarball

CONF = conf.CONF
LOG = logging.getLogger(__name__)

IMAGE_API = glance.API()
GLANCE_REPOSITORY = 'nova-docker/glance'
_GLANCE_PREFIX = GLANCE_REPOSITORY + ':'
# Nova keeps 255 characters of a fault, after a ~100-character prefix:
# keep this short enough that the whole command shows.
UPLOAD_HINT = _('docker save IMG | openstack image create '
                '--container-format docker --disk-format raw NAME')


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
    return _GLANCE_PREFIX + image_id


def _glance_id(name: str) -> typing.Optional[str]:
    """The Glance ID a local name stands for; None if not a Glance tag."""
    return name[len(_GLANCE_PREFIX):] if name.startswith(_GLANCE_PREFIX) \
        else None


def check_image_acceptable(image_meta) -> None:
    """Refuse anything that is not a docker save tarball, before any I/O."""
    container_format = getattr(image_meta, 'container_format', None) \
        if image_meta.obj_attr_is_set('container_format') else None
    if container_format != 'docker':
        raise exception.ImageUnacceptable(
            image_id=image_meta.id,
            reason=_('container_format %(fmt)r != docker: %(hint)s') % {
                'fmt': container_format, 'hint': UPLOAD_HINT})


class _BodyFailed(Exception):
    """Raised into requests in place of the request body's own error.

    urllib3 takes an OSError with ECONNRESET or EPIPE raised while sending
    the body (Glance dropping the download) for the engine closing its
    socket early, and then waits for a response that never comes: the
    boot would fail only after the whole api_timeout.
    """


def _image_lock(key: str):
    """The per-image lock: loads, holds, releases and removals of one
    image never interleave. A Glance image's key is its Glance ID."""
    return utils.synchronized('nova-docker-image-%s' % key)


def _lock_key(name: str) -> str:
    return _glance_id(name) or name


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


def images_used_by_containers(api) -> typing.Set[str]:
    """Docker image IDs of every container on the engine, in any state and
    whoever made it: an image a container uses is never removed."""
    with docker_client.translate_errors('list containers'):
        return {c['ImageID'] for c in api.containers(all=True)}


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
        failed spawn that loaded it), remove it as :meth:`remove` does.
        True if removed."""

        @_image_lock(image_id)
        def _locked() -> bool:
            _unhold(image_id)
            if not remove_if_unused:
                return False
            removed = self._remove_locked(glance_tag(image_id))
            if removed:
                LOG.info('Image %s removed after the failed spawn that '
                         'loaded it', image_id)
            return removed

        return _locked()

    def touch(self, image_id: str) -> None:
        """Record a use: re-tagging moves the image's LastTagTime, which is
        what image cache ageing reads."""
        with docker_client.translate_errors('tag image', image_id=image_id):
            self._api.tag(glance_tag(image_id), GLANCE_REPOSITORY,
                          tag=image_id, force=True)

    def remove(self, name: str, force: bool = False,
               keep_if: typing.Optional[typing.Callable[[dict], bool]] = None
               ) -> bool:
        """Remove one of the driver's image names; True if it went.

        The one rule, for every image the driver removes: always under the
        image's lock (the one ensure_image loads it under, so a removal
        never interleaves with a load, a hold or a release of it), and

        - a shared name (a Glance image, a resize backup, what a refused
          load left): kept while a spawn of this process holds it (its
          container does not exist yet), while ``keep_if(inspected)`` says
          so (cache ageing: used again meanwhile), or while any container
          on the engine uses its image ID; then removed without force, so
          Docker still refuses if a container appeared meanwhile, and only
          untags an image that has other names;
        - with ``force``, a name only its caller can be using (a
          snapshot's temporary commit, a load being undone under its lock):
          removed whatever uses it, as nothing else may keep it on the
          host.

        Idempotent; Docker's refusals are logged, never raised (a removal
        is clean-up, retried by the next image cache pass). An unreachable
        engine raises.
        """

        @_image_lock(_lock_key(name))
        def _locked() -> bool:
            return self._remove_locked(name, force, keep_if)

        return _locked()

    def _remove_locked(self, name: str, force: bool = False,
                       keep_if=None) -> bool:
        """:meth:`remove`, for a caller that holds the image's lock."""
        try:
            if not force:
                glance_id = _glance_id(name)
                held = holders(glance_id) if glance_id else 0
                if held:
                    LOG.info('Image %(name)s kept: %(n)d spawn(s) use it',
                             {'name': name, 'n': held})
                    return False
                with docker_client.translate_errors('inspect image',
                                                    image_id=name):
                    inspected = self._api.inspect_image(name)
                if keep_if is not None and keep_if(inspected):
                    return False
                if inspected['Id'] in images_used_by_containers(self._api):
                    LOG.info('Image %s kept: a container uses it', name)
                    return False
            with docker_client.translate_errors('remove image',
                                                image_id=name):
                self._api.remove_image(name, force=force)
        except exception.ImageNotFound:
            return False
        except docker_client.DockerOperationFailed as exc:
            (LOG.warning if force else LOG.info)(
                'Image %(name)s kept: %(reason)s',
                {'name': name, 'reason': exc.reason})
            return False
        return True

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
        if hasher is not None:
            hasher = streams.BackgroundHasher(hasher)
        reader = streams.ChunkReader(chunks, hasher)
        body = tarball.retag_tarball(
            reader, glance_tag(image_id), CONF.docker.image_load_chunk_size,
            tarball.max_unpacked_bytes(meta.get('size'), root_gb,
                                       CONF.docker.image_max_unpacked_gb))
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
            # Unverified, and ours alone while the lock is held: forced.
            self._remove_locked(glance_tag(image_id), force=True)
            raise
        finally:
            body.close()
            if hasher is not None:
                hasher.close()
        LOG.info('Image %s loaded as %s (%d bytes)', image_id, docker_id,
                 reader.bytes_read)
        self.loaded = True
        return docker_id

    def _docker_load(self, image_id: str, body) -> None:
        """POST the body to docker load and check what it reports."""
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
                report = docker_client.read_load_report(
                    self._api.load_image(watched()))
        except Exception as exc:
            if body_failure:
                cause = body_failure[0]
            elif isinstance(exc, docker_client.DiskFull):
                # This host's fault, not the image's: ImageTransferFailed
                # lets Nova reschedule the boot (ImageUnacceptable would
                # abort it); Docker's own words name a long temporary
                # path first, too long for Nova's fault message.
                raise ImageTransferFailed(
                    image_id=image_id,
                    reason=_('no space left on device: the Docker data '
                             'root of this host is full')) from exc
            elif isinstance(exc, (docker_client.DockerUnavailable,
                                  exception.ImageUnacceptable,
                                  ImageTransferFailed)):
                raise
            elif isinstance(exc, docker_client.StreamError):
                raise exception.ImageUnacceptable(
                    image_id=image_id,
                    reason=_('docker load failed: %s') % exc.reason
                ) from exc
            elif isinstance(exc, exception.NovaException):
                # The engine refused what it was sent.
                raise exception.ImageUnacceptable(
                    image_id=image_id, reason=str(exc)) from exc
            else:
                cause = exc
            error = self._body_error(image_id, cause)
            if error is cause:
                raise cause
            raise error from cause
        reported = set(report.names) | set(report.image_ids)
        if reported != {glance_tag(image_id)}:
            # Our rewrite leaves one name; anything else means dockerd read
            # the tarball otherwise: undo all of it and refuse the image.
            self._undo_load(image_id, report)
            raise exception.ImageUnacceptable(
                image_id=image_id,
                reason=_('docker load reported %s, not only the image\'s '
                         'own name; the load was undone') %
                (sorted(reported) or 'nothing'))

    def _undo_load(self, image_id: str,
                   report: docker_client.LoadReport) -> None:
        """Put back every name the load moved, drop the ones it made.
        Runs under the image's lock (in ensure_image)."""
        ours = glance_tag(image_id)
        for name in report.names:
            if name == ours:
                continue
            previous = report.renamed.get(name)
            try:
                if previous:
                    repository, tag = split_reference(name)
                    with docker_client.translate_errors('undo load',
                                                        image_id=image_id):
                        self._api.tag(previous, repository, tag=tag,
                                      force=True)
                    LOG.error('Image %(id)s: docker load moved %(name)s; '
                              'put back on %(prev)s', {
                                  'id': image_id, 'name': name,
                                  'prev': previous})
                elif self.remove(name):
                    LOG.error('Image %(id)s: docker load created %(name)s; '
                              'removed', {'id': image_id, 'name': name})
                else:
                    LOG.error('Image %(id)s: could not undo %(name)s', {
                        'id': image_id, 'name': name})
            except exception.NovaException as exc:
                LOG.error('Image %(id)s: could not undo %(name)s: %(err)s',
                          {'id': image_id, 'name': name, 'err': exc})
        self._remove_locked(ours, force=True)
        for docker_id in report.image_ids:
            try:
                # Not forced: kept if tagged or used, so not ours alone.
                self.remove(docker_id)
            except exception.NovaException as exc:
                LOG.info('Image %(id)s: kept %(docker)s: %(err)s', {
                    'id': image_id, 'docker': docker_id, 'err': exc})

    @staticmethod
    def _body_error(image_id: str, exc: Exception) -> Exception:
        """The Nova exception for a failure while producing the body."""
        if isinstance(exc, tarball.ImageTooLarge):
            return exception.ImageUnacceptable(image_id=image_id,
                                               reason=str(exc))
        if isinstance(exc, tarball.UnsafeTarball):
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
