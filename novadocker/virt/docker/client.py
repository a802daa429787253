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

"""The connection to the Docker engine, and the one place where Docker
errors become Nova exceptions.

Everything else in the driver talks to the engine through the low-level
``docker.APIClient`` returned by :func:`connect`, inside
``with translate_errors(...)`` so that callers only ever see Nova exceptions.
"""

import contextlib
import re
import typing

import docker
import docker.errors
import docker.tls
from nova import exception
from nova.i18n import _
from oslo_log import log as logging
import requests.exceptions

from novadocker import conf

CONF = conf.CONF
LOG = logging.getLogger(__name__)


class _Reasoned:
    """Docker's own words for a failure, for callers that re-word it:
    nobody outside this module reads ``kwargs`` or parses messages."""

    @property
    def reason(self) -> str:
        return str(self.kwargs.get('reason') or '')


class DockerUnavailable(_Reasoned, exception.HypervisorUnavailable):
    msg_fmt = _("The Docker engine at %(url)s is unreachable: %(reason)s")


class DockerOperationFailed(_Reasoned, exception.NovaException):
    msg_fmt = _("Docker refused %(operation)s: %(reason)s")

    @property
    def operation(self) -> str:
        return str(self.kwargs.get('operation') or '')


class ContainerMissing(_Reasoned, exception.InstanceNotFound):
    """One of the instance's own containers is gone: the instance is."""
    msg_fmt = _("Instance %(instance_id)s could not be found: %(reason)s")


class ImageMissing(_Reasoned, exception.ImageNotFound,
                   exception.ImageUnacceptable):
    """An image is not in the Docker store.

    An ImageNotFound for lookups ("not loaded yet"), and an
    ImageUnacceptable so that a boot that needed it ends in ERROR with this
    fault: Nova aborts a build on ImageUnacceptable, while InstanceNotFound
    would read as "deleted during the build" (no fault, left in BUILD).
    """
    msg_fmt = _("Image %(image_id)s is not in the Docker store: "
                "%(reason)s")


class CommandNotFound(_Reasoned, exception.ImageUnacceptable):
    """The container's command cannot be executed (missing, not
    executable, wrong architecture): the image's fault, not the host's."""
    msg_fmt = _("Image %(image_id)s is unacceptable: its command cannot "
                "run: %(reason)s")


# What the OCI runtimes (runc, crun) report, through dockerd, when the
# container's command cannot be executed.
_COMMAND_NOT_FOUND = re.compile(
    r'exec: "[^"]*": (stat [^:]*: no such file or directory|'
    r'executable file not found|permission denied|exec format error)|'
    r'executable file .* not found|'
    r'invoke a command that was not found|'
    r'exec format error', re.IGNORECASE)
_NO_SUCH_IMAGE = re.compile(r'no such image:?\s*(\S*)', re.IGNORECASE)
_NO_SUCH_CONTAINER = re.compile(r'no such container', re.IGNORECASE)


def connect(timeout: typing.Optional[float] = -1,
            url: typing.Optional[str] = None) -> docker.APIClient:
    """Open an API client to the configured engine (or ``url``).

    The API version is negotiated (``api_version = auto``): the SDK asks the
    engine for its version once, so one client works with engines that no
    longer accept old API versions (Docker 28+ wants at least 1.44) and
    with older engines such as Debian's 20.10 (1.41).

    :param timeout: seconds per API call; the default is
        ``[docker]api_timeout``, None waits forever (event streams).
    """
    tls = None
    if CONF.docker.tls_verify or CONF.docker.cert_file:
        client_cert = None
        if CONF.docker.cert_file:
            client_cert = (CONF.docker.cert_file, CONF.docker.key_file)
        tls = docker.tls.TLSConfig(client_cert=client_cert,
                                   ca_cert=CONF.docker.ca_file,
                                   verify=CONF.docker.tls_verify)
    with translate_errors('connect'):
        return docker.APIClient(base_url=url or CONF.docker.api_url,
                                version=CONF.docker.api_version,
                                timeout=(CONF.docker.api_timeout
                                         if timeout == -1 else timeout),
                                tls=tls)


def _reason(exc: Exception) -> str:
    explanation = getattr(exc, 'explanation', None)
    if explanation:
        return str(explanation)
    return str(exc) or exc.__class__.__name__


def reason_of(exc: Exception) -> str:
    """Why it failed, in the engine's words when it said any: the reason
    of our typed exceptions, Docker's explanation of an SDK error, else
    the message."""
    if isinstance(exc, _Reasoned) and exc.reason:
        return exc.reason
    if isinstance(exc, exception.NovaException):
        return exc.format_message()
    return _reason(exc)


@contextlib.contextmanager
def translate_errors(operation: str,
                     instance=None,
                     image_id: typing.Optional[str] = None):
    """Turn any Docker SDK or transport error into the matching Nova one.

    A 404 is classified by what is missing, never by who asked:

    - no such container, with ``instance``: :class:`ContainerMissing`
      (an InstanceNotFound: the instance's own container is gone);
    - no such image: :class:`ImageMissing` (ImageNotFound and
      ImageUnacceptable), naming ``image_id`` or the image Docker names;
    - anything else: :class:`DockerOperationFailed`.

    A command the runtime cannot execute is :class:`CommandNotFound`.

    :param operation: what was being done, for the message
    :param instance: the Nova instance whose containers are concerned
    :param image_id: the image concerned (Glance ID or Docker name)
    """
    try:
        yield
    except exception.NovaException:
        raise
    except docker.errors.ImageLoadError as exc:
        raise exception.ImageUnacceptable(
            image_id=image_id or '?',
            reason=_('docker load failed: %s') % _reason(exc)) from exc
    except docker.errors.NotFound as exc:
        raise _not_found(exc, operation, instance, image_id) from exc
    except (requests.exceptions.ConnectionError,
            requests.exceptions.Timeout) as exc:
        raise DockerUnavailable(url=CONF.docker.api_url,
                                reason=_reason(exc)) from exc
    except docker.errors.APIError as exc:
        reason = _reason(exc)
        if _COMMAND_NOT_FOUND.search(reason):
            raise CommandNotFound(
                image_id=image_id or (instance.image_ref if instance
                                      else '?'),
                reason=reason) from exc
        raise _operation_failed(operation, reason) from exc
    except docker.errors.DockerException as exc:
        # Raised by the SDK itself, e.g. when the version negotiation in
        # APIClient() cannot reach the engine.
        raise DockerUnavailable(url=CONF.docker.api_url,
                                reason=_reason(exc)) from exc


def _not_found(exc: Exception, operation: str, instance,
               image_id: typing.Optional[str]) -> exception.NovaException:
    """The Nova exception for a 404, by what Docker says is missing."""
    reason = _reason(exc)
    no_image = _NO_SUCH_IMAGE.search(reason)
    if isinstance(exc, docker.errors.ImageNotFound) or no_image:
        named = no_image.group(1) if no_image else ''
        return ImageMissing(image_id=image_id or named or '?',
                            reason=reason)
    if instance is not None and _NO_SUCH_CONTAINER.search(reason):
        return ContainerMissing(instance_id=instance.uuid, reason=reason)
    return DockerOperationFailed(operation=operation, reason=reason)


def check_available(connect_api: typing.Callable[[], docker.APIClient]
                    ) -> None:
    """Connect and ping the engine; a NovaException saying what to check
    (nova-compute must not start without its engine)."""
    try:
        api = connect_api()
        with translate_errors('ping'):
            api.ping()
    except DockerUnavailable as exc:
        raise exception.NovaException(
            _('nova-docker cannot start: %s. Is dockerd running, and '
              'may the nova user use its socket (docker group)?') % exc
        ) from exc


def exec_not_found(output: bytes) -> bool:
    """Whether an exec's output is the runtime saying the command is not
    in the container (the exec itself then "succeeds")."""
    return b'executable file not found' in output


def is_not_found(exc: Exception) -> bool:
    """True for the Nova exceptions translate_errors uses for 'gone'."""
    return isinstance(exc, (exception.InstanceNotFound,
                            exception.ImageNotFound))


# -- the image store's failures: a full data root, docker load's report -----


class DiskFull(DockerOperationFailed):
    """The engine's data root is full: this host's fault, not the request's
    (a boot that fails on it may be rescheduled to another host)."""


class StreamError(DockerOperationFailed):
    """An error message inside a JSON progress stream (docker load's),
    sent after the HTTP response had begun as a success."""


class LoadReport(typing.NamedTuple):
    """What ``docker load`` said it did."""
    names: typing.List[str]          # "Loaded image: NAME"
    image_ids: typing.List[str]      # "Loaded image ID: ID" (untagged)
    renamed: typing.Dict[str, str]   # NAME moved away from the old ID


_NO_SPACE = re.compile(r'no space left on device', re.IGNORECASE)
_RENAMED = re.compile(r'^The image (\S+) already exists, renaming the old '
                      r'one with ID (\S+) to empty string')


def _operation_failed(operation: str, reason: str) -> DockerOperationFailed:
    cls = DiskFull if _NO_SPACE.search(reason) else DockerOperationFailed
    return cls(operation=operation, reason=reason)


def read_load_report(messages: typing.Iterable[dict],
                     operation: str = 'load image') -> LoadReport:
    """Read docker load's JSON stream to its end.

    An error message in it raises :class:`DiskFull` or
    :class:`StreamError` (run it inside ``translate_errors``: the stream
    can fail as the request does).
    """
    report = LoadReport([], [], {})
    for message in messages:
        if 'error' in message or 'errorDetail' in message:
            reason = str((message.get('errorDetail') or {}).get('message') or
                         message.get('error'))
            cls = DiskFull if _NO_SPACE.search(reason) else StreamError
            raise cls(operation=operation, reason=reason)
        for line in (message.get('stream') or '').splitlines():
            line = line.strip()
            if line.startswith('Loaded image ID:'):
                report.image_ids.append(line.split(':', 1)[1].strip())
            elif line.startswith('Loaded image:'):
                report.names.append(line.split(':', 1)[1].strip())
            else:
                match = _RENAMED.match(line)
                if match:
                    report.renamed[match.group(1)] = match.group(2)
    return report
