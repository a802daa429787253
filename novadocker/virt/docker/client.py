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


class DockerUnavailable(exception.HypervisorUnavailable):
    msg_fmt = _("The Docker engine at %(url)s is unreachable: %(reason)s")


class DockerOperationFailed(exception.NovaException):
    msg_fmt = _("Docker refused %(operation)s: %(reason)s")


def connect(timeout: typing.Optional[float] = -1) -> docker.APIClient:
    """Open an API client to the configured engine.

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
        return docker.APIClient(base_url=CONF.docker.api_url,
                                version=CONF.docker.api_version,
                                timeout=(CONF.docker.api_timeout
                                         if timeout == -1 else timeout),
                                tls=tls)


def _reason(exc: Exception) -> str:
    explanation = getattr(exc, 'explanation', None)
    if explanation:
        return str(explanation)
    return str(exc) or exc.__class__.__name__


@contextlib.contextmanager
def translate_errors(operation: str,
                     instance=None,
                     image_id: typing.Optional[str] = None):
    """Turn any Docker SDK or transport error into the matching Nova one.

    :param operation: what was being done, for the message
    :param instance: the Nova instance concerned; a missing container then
        becomes InstanceNotFound
    :param image_id: the Glance image concerned; a missing image or a load
        failure then becomes ImageNotFound / ImageUnacceptable
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
        if instance is not None:
            raise exception.InstanceNotFound(
                instance_id=instance.uuid) from exc
        if image_id is not None:
            raise exception.ImageNotFound(image_id=image_id) from exc
        raise DockerOperationFailed(operation=operation,
                                    reason=_reason(exc)) from exc
    except (requests.exceptions.ConnectionError,
            requests.exceptions.Timeout) as exc:
        raise DockerUnavailable(url=CONF.docker.api_url,
                                reason=_reason(exc)) from exc
    except docker.errors.APIError as exc:
        raise DockerOperationFailed(operation=operation,
                                    reason=_reason(exc)) from exc
    except docker.errors.DockerException as exc:
        # Raised by the SDK itself, e.g. when the version negotiation in
        # APIClient() cannot reach the engine.
        raise DockerUnavailable(url=CONF.docker.api_url,
                                reason=_reason(exc)) from exc


def is_not_found(exc: Exception) -> bool:
    """True for the Nova exceptions translate_errors uses for 'gone'."""
    return isinstance(exc, (exception.InstanceNotFound,
                            exception.ImageNotFound))
