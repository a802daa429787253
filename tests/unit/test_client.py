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

"""client.translate_errors: each Docker/requests error -> one Nova error."""

from unittest import mock

import docker
import docker.errors
from nova import exception
from oslo_config import fixture as config_fixture
import requests.exceptions
import testtools

from novadocker import conf
from novadocker.virt.docker import client
from tests.fixtures import objects as obj_fixtures


def _api_error(cls, status, explanation):
    return cls('%d Client Error' % status,
               response=mock.Mock(status_code=status),
               explanation=explanation)


class TranslateErrorsTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(config_fixture.Config(conf.CONF)).config(
            api_url='unix:///run/test-docker.sock', group='docker')
        self.instance = obj_fixtures.instance()

    def _translate(self, error, **kwargs):
        try:
            with client.translate_errors('do things', **kwargs):
                raise error
        except Exception as exc:
            return exc
        self.fail('nothing raised')

    def test_container_not_found_is_instance_not_found(self):
        exc = self._translate(_api_error(docker.errors.NotFound, 404,
                                         'No such container: x'),
                              instance=self.instance)
        self.assertIsInstance(exc, client.ContainerMissing)
        self.assertIsInstance(exc, exception.InstanceNotFound)
        self.assertIn(self.instance.uuid, str(exc))
        self.assertEqual('No such container: x', exc.reason)
        self.assertTrue(client.is_not_found(exc))

    def test_missing_image_of_an_instance_is_not_instance_not_found(self):
        """create_container of an image Docker lacks: a boot fault
        (ImageUnacceptable), never "the instance disappeared"."""
        exc = self._translate(
            _api_error(docker.errors.ImageNotFound, 404,
                       'No such image: nova-docker/glance:g1'),
            instance=self.instance, image_id='g1')
        self.assertIsInstance(exc, client.ImageMissing)
        self.assertNotIsInstance(exc, exception.InstanceNotFound)
        self.assertIsInstance(exc, exception.ImageUnacceptable)
        self.assertIsInstance(exc, exception.ImageNotFound)
        self.assertIn('g1', str(exc))
        self.assertEqual('No such image: nova-docker/glance:g1', exc.reason)

    def test_missing_image_named_by_docker_when_not_given(self):
        # A plain NotFound whose text says "No such image" (an SDK that
        # did not classify it) is still an image.
        exc = self._translate(
            _api_error(docker.errors.NotFound, 404,
                       'No such image: sandbox:9'), instance=self.instance)
        self.assertIsInstance(exc, client.ImageMissing)
        self.assertIn('sandbox:9', str(exc))

    def test_other_404_of_an_instance_is_operation_failed(self):
        exc = self._translate(_api_error(docker.errors.NotFound, 404,
                                         'network foo not found'),
                              instance=self.instance)
        self.assertIsInstance(exc, client.DockerOperationFailed)
        self.assertNotIsInstance(exc, exception.InstanceNotFound)
        self.assertEqual('network foo not found', exc.reason)
        self.assertEqual('do things', exc.operation)

    def test_command_not_found(self):
        for message in (
                # Docker 20.10 + runc 1.0
                'OCI runtime create failed: container_linux.go:380: '
                'starting container process caused: exec: "/nope": stat '
                '/nope: no such file or directory: unknown',
                # Docker 26 + runc 1.1
                'failed to create task for container: failed to create '
                'shim task: OCI runtime create failed: runc create failed: '
                'unable to start container process: exec: "nope": '
                'executable file not found in $PATH: unknown',
                'OCI runtime create failed: exec: "/tmp": permission '
                'denied: unknown',
                # crun
                'crun: executable file `nope` not found in $PATH: No such '
                'file or directory: OCI runtime attempted to invoke a '
                'command that was not found'):
            exc = self._translate(_api_error(docker.errors.APIError, 400,
                                             message),
                                  instance=self.instance)
            self.assertIsInstance(exc, client.CommandNotFound, message)
            self.assertIsInstance(exc, exception.ImageUnacceptable)
            self.assertIn(self.instance.image_ref, str(exc))
            self.assertEqual(message, exc.reason)

    def test_other_missing_file_is_not_command_not_found(self):
        exc = self._translate(_api_error(
            docker.errors.APIError, 400,
            'error while creating mount source path "/srv/x": mkdir '
            '/srv/x: no such file or directory'), instance=self.instance)
        self.assertIsInstance(exc, client.DockerOperationFailed)

    def test_reason_of(self):
        self.assertEqual('boom', client.reason_of(
            client.DockerOperationFailed(operation='x', reason='boom')))
        self.assertEqual('sdk says', client.reason_of(
            _api_error(docker.errors.APIError, 500, 'sdk says')))
        self.assertIn('could not be found', client.reason_of(
            exception.InstanceNotFound(instance_id='i')))

    def test_image_not_found_is_image_not_found(self):
        exc = self._translate(_api_error(docker.errors.ImageNotFound, 404,
                                         'No such image: x'),
                              image_id='glance-id')
        self.assertIsInstance(exc, exception.ImageNotFound)
        self.assertIsInstance(exc, client.ImageMissing)
        self.assertIn('glance-id', str(exc))
        self.assertTrue(client.is_not_found(exc))

    def test_not_found_without_subject_is_operation_failed(self):
        exc = self._translate(_api_error(docker.errors.NotFound, 404,
                                         'no such thing'))
        self.assertIsInstance(exc, client.DockerOperationFailed)
        self.assertIn('do things', str(exc))
        self.assertIn('no such thing', str(exc))
        self.assertFalse(client.is_not_found(exc))

    def test_image_load_error_is_image_unacceptable(self):
        exc = self._translate(docker.errors.ImageLoadError('bad layer'),
                              image_id='glance-id')
        self.assertIsInstance(exc, exception.ImageUnacceptable)
        self.assertIn('bad layer', str(exc))
        self.assertIn('glance-id', str(exc))

    def test_conflict_is_operation_failed_with_explanation(self):
        exc = self._translate(
            _api_error(docker.errors.APIError, 409,
                       'container is not running'), instance=self.instance)
        self.assertIsInstance(exc, client.DockerOperationFailed)
        self.assertEqual('container is not running', exc.reason)

    def test_server_error_is_operation_failed(self):
        exc = self._translate(_api_error(docker.errors.APIError, 500,
                                         'OCI runtime create failed'))
        self.assertIsInstance(exc, client.DockerOperationFailed)
        self.assertIn('OCI runtime create failed', str(exc))

    def test_connection_error_is_hypervisor_unavailable(self):
        exc = self._translate(requests.exceptions.ConnectionError(
            'Connection refused'))
        self.assertIsInstance(exc, client.DockerUnavailable)
        self.assertIsInstance(exc, exception.HypervisorUnavailable)
        self.assertIn('unix:///run/test-docker.sock', str(exc))
        self.assertIn('Connection refused', str(exc))

    def test_timeout_is_hypervisor_unavailable(self):
        exc = self._translate(requests.exceptions.ReadTimeout('timed out'))
        self.assertIsInstance(exc, client.DockerUnavailable)

    def test_sdk_error_is_hypervisor_unavailable(self):
        # What APIClient(version='auto') raises when it cannot negotiate.
        exc = self._translate(docker.errors.DockerException(
            'Error while fetching server API version'))
        self.assertIsInstance(exc, client.DockerUnavailable)
        self.assertIn('fetching server API version', str(exc))

    def test_nova_exceptions_pass_unchanged(self):
        original = exception.InstanceNotFound(instance_id='x')
        self.assertIs(original, self._translate(original))

    def test_other_exceptions_pass_unchanged(self):
        original = ValueError('a bug')
        self.assertIs(original, self._translate(original))

    def test_cause_is_kept(self):
        original = _api_error(docker.errors.APIError, 500, 'boom')
        exc = self._translate(original)
        self.assertIs(original, exc.__cause__)


class ConnectTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.cfg = self.useFixture(config_fixture.Config(conf.CONF))

    @mock.patch.object(docker, 'APIClient', autospec=True)
    def test_negotiates_version_and_uses_timeout(self, api_class):
        self.cfg.config(api_url='unix:///x.sock', api_timeout=33,
                        group='docker')
        self.assertIs(api_class.return_value, client.connect())
        api_class.assert_called_once_with(
            base_url='unix:///x.sock', version='auto', timeout=33, tls=None)

    @mock.patch.object(docker, 'APIClient', autospec=True)
    def test_url_given_wins(self, api_class):
        self.cfg.config(api_url='unix:///x.sock', group='docker')
        client.connect(timeout=None, url='unix:///other.sock')
        api_class.assert_called_once_with(
            base_url='unix:///other.sock', version='auto', timeout=None,
            tls=None)

    @mock.patch.object(docker, 'APIClient', autospec=True)
    def test_tls(self, api_class):
        self.cfg.config(api_url='tcp://h:2376', tls_verify=True,
                        ca_file='/ca.pem', cert_file='/c.pem',
                        key_file='/k.pem', group='docker')
        with mock.patch('docker.tls.TLSConfig', autospec=True) as tls:
            client.connect()
        tls.assert_called_once_with(client_cert=('/c.pem', '/k.pem'),
                                    ca_cert='/ca.pem', verify=True)
        self.assertIs(tls.return_value,
                      api_class.call_args.kwargs['tls'])

    @mock.patch.object(docker, 'APIClient', autospec=True)
    def test_unreachable_engine(self, api_class):
        api_class.side_effect = docker.errors.DockerException(
            'Error while fetching server API version: No such file')
        self.assertRaises(client.DockerUnavailable, client.connect)


class CheckAvailableTest(testtools.TestCase):
    """The start-up check: connect and ping, or say what to look at."""

    def setUp(self):
        super().setUp()
        self.useFixture(config_fixture.Config(conf.CONF)).config(
            api_url='unix:///run/test-docker.sock', group='docker')
        self.api = mock.create_autospec(docker.APIClient, instance=True)

    def test_engine_answers(self):
        client.check_available(lambda: self.api)
        self.api.ping.assert_called_once_with()

    def test_ping_unreachable(self):
        self.api.ping.side_effect = requests.exceptions.ConnectionError(
            'connection refused')
        exc = self.assertRaises(exception.NovaException,
                                client.check_available, lambda: self.api)
        self.assertNotIsInstance(exc, client.DockerUnavailable)
        self.assertIn('nova-docker cannot start', str(exc))
        self.assertIn('connection refused', str(exc))
        self.assertIn('docker group', str(exc))

    def test_connect_unreachable(self):
        def connect():
            raise client.DockerUnavailable(url='unix:///x', reason='gone')
        exc = self.assertRaises(exception.NovaException,
                                client.check_available, connect)
        self.assertIn('nova-docker cannot start', str(exc))
        self.assertIn('gone', str(exc))

    def test_other_refusals_pass_through(self):
        self.api.ping.side_effect = _api_error(
            docker.errors.APIError, 500, 'busy')
        self.assertRaises(client.DockerOperationFailed,
                          client.check_available, lambda: self.api)


class ExecNotFoundTest(testtools.TestCase):

    def test_runtime_words(self):
        self.assertTrue(client.exec_not_found(
            b'OCI runtime exec failed: exec failed: unable to start '
            b'container process: exec: "chpasswd": executable file not '
            b'found in $PATH: unknown\r\n'))
        self.assertFalse(client.exec_not_found(b''))
        self.assertFalse(client.exec_not_found(
            b'chpasswd: (user root) pam_chauthtok() failed\n'))


class ImageStoreFailuresTest(testtools.TestCase):
    """A full data root and docker load's report, typed here so that no
    caller parses Docker's words."""

    def test_no_space_left_is_disk_full(self):
        message = ('write /var/lib/docker/tmp/docker-import-1/layer.tar: '
                   'no space left on device')
        try:
            with client.translate_errors('load image'):
                raise _api_error(docker.errors.APIError, 500, message)
        except client.DiskFull as exc:
            self.assertIsInstance(exc, client.DockerOperationFailed)
            self.assertEqual(message, exc.reason)
        else:
            self.fail('no DiskFull')

    def test_other_refusals_are_not_disk_full(self):
        try:
            with client.translate_errors('load image'):
                raise _api_error(docker.errors.APIError, 500, 'bad tar')
        except client.DockerOperationFailed as exc:
            self.assertNotIsInstance(exc, client.DiskFull)

    def test_load_report(self):
        report = client.read_load_report(iter([
            {'stream': 'Loaded image: a/b:1\n'},
            {'stream': 'The image victim:1 already exists, renaming the old '
                       'one with ID sha256:old to empty string\n'
                       'Loaded image: victim:1\n'},
            {'stream': 'Loaded image ID: sha256:loose\n'}]))
        self.assertEqual(['a/b:1', 'victim:1'], report.names)
        self.assertEqual(['sha256:loose'], report.image_ids)
        self.assertEqual({'victim:1': 'sha256:old'}, report.renamed)

    def test_error_in_the_load_stream(self):
        full = 'write /var/lib/docker/tmp/x: no space left on device'
        exc = self.assertRaises(client.DiskFull, client.read_load_report,
                                iter([{'errorDetail': {'message': full},
                                       'error': full}]))
        self.assertEqual(full, exc.reason)
        exc = self.assertRaises(client.StreamError, client.read_load_report,
                                iter([{'error': 'invalid tar header'}]))
        self.assertNotIsInstance(exc, client.DiskFull)
        self.assertEqual('invalid tar header', exc.reason)
