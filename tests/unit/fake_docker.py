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

"""A small stateful Docker engine behind a specced ``docker.APIClient``.

Unit tests need to see what the driver created and removed, so the specced
client's methods are wired to an in-memory model of containers and images.
Only the calls the driver makes are modelled; anything else still has the
real signature (``create_autospec``), so a wrong call fails the test.
"""

import io
import json
import random
import tarfile
import time
from unittest import mock
import uuid

import docker
import docker.errors
import docker.types
from nova.compute import vm_states
from nova import context as nova_context
from nova import objects

objects.register_all()


def new_instance(vcpus=2, memory_mb=256, **kwargs) -> objects.Instance:
    """A Nova instance object as the compute manager hands it over."""
    flavor = objects.Flavor(
        id=1, flavorid='1', name='m1.unit', vcpus=vcpus, memory_mb=memory_mb,
        root_gb=1, ephemeral_gb=0, swap=0, extra_specs={}, rxtx_factor=1.0,
        is_public=True, vcpu_weight=None, disabled=False)
    values = dict(
        context=nova_context.get_admin_context(),
        id=random.randint(1, 2 ** 31 - 1), uuid=str(uuid.uuid4()),
        flavor=flavor, host='unit-host', node='unit-host', vcpus=vcpus,
        memory_mb=memory_mb, image_ref=str(uuid.uuid4()),
        hostname='srv-unit', vm_state=vm_states.BUILDING, task_state=None,
        project_id='p', user_id='u', metadata={}, system_metadata={})
    values.update(kwargs)
    return objects.Instance(**values)


def saved_tarball(repo_tags=('library/busybox:latest',), images=1,
                  layer_size=1024, oci=False) -> bytes:
    """A synthetic ``docker save`` tarball (no Docker needed)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w') as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        layer = bytes(random.getrandbits(8) for _ in range(64)) * (
            max(1, layer_size // 64))
        add('abc/layer.tar', layer)
        add('cfg.json', b'{"config": {}}')
        manifest = [{'Config': 'cfg.json', 'RepoTags': list(repo_tags),
                     'Layers': ['abc/layer.tar']} for _ in range(images)]
        add('manifest.json', json.dumps(manifest).encode())
        add('repositories', json.dumps(
            {t.split(':')[0]: {t.split(':')[1]: 'abc'}
             for t in repo_tags}).encode())
        if oci:
            add('index.json', json.dumps({
                'schemaVersion': 2,
                'manifests': [{
                    'digest': 'sha256:%064d' % i,
                    'annotations': {
                        'io.containerd.image.name': 'docker.io/' + t,
                        'org.opencontainers.image.ref.name':
                            t.split(':')[1]}}
                    for i, t in enumerate(list(repo_tags) * images)]
            }).encode())
    return out.getvalue()


def _api_error(cls, message, status):
    response = mock.Mock(status_code=status)   # an HTTP response, not Docker
    return cls(message, response=response, explanation=message)


class FakeEngine:
    """In-memory containers and images driving a specced APIClient."""

    def __init__(self):
        self.api = mock.create_autospec(docker.APIClient, instance=True)
        self.api.api_version = '1.41'
        self.containers = {}   # id -> dict
        self.images = {}       # tag -> image id
        self.loads = 0
        api = self.api
        api.create_host_config.side_effect = (
            lambda *a, **kw: docker.types.HostConfig(*a, version='1.41',
                                                     **kw))
        api.containers.side_effect = self._containers
        api.create_container.side_effect = self._create
        api.start.side_effect = self._start
        api.stop.side_effect = self._stop
        api.pause.side_effect = lambda cid: self._set(cid, paused=True)
        api.unpause.side_effect = lambda cid: self._set(cid, paused=False)
        api.inspect_container.side_effect = self._inspect
        api.remove_container.side_effect = self._remove
        api.inspect_image.side_effect = self._inspect_image
        api.load_image.side_effect = self._load
        api.tag.side_effect = self._tag
        api.remove_image.side_effect = self._remove_image
        api.ping.return_value = True

    # -- containers ----------------------------------------------------------

    def _get(self, cid):
        if cid not in self.containers:
            raise _api_error(docker.errors.NotFound,
                             'No such container: %s' % cid, 404)
        return self.containers[cid]

    def _set(self, cid, **values):
        self._get(cid).update(values)

    def _containers(self, filters=None, **kwargs):
        wanted = dict(f.split('=', 1) for f in
                      (filters or {}).get('label', []))
        found = []
        for cid, c in self.containers.items():
            if not kwargs.get('all') and not c['running']:
                continue
            if all(c['labels'].get(k) == v for k, v in wanted.items()):
                found.append({'Id': cid, 'Names': ['/' + c['name']],
                              'Labels': dict(c['labels']),
                              'ImageID': self.images.get(c.get('image'),
                                                         c.get('image')),
                              'Created': c.get('created', 0)})
        return found

    def _create(self, image, command=None, name=None, labels=None,
                host_config=None, **kwargs):
        if any(c['name'] == name for c in self.containers.values()):
            raise _api_error(docker.errors.APIError,
                             'Conflict. The container name "/%s" is '
                             'already in use' % name, 409)
        if image not in self.images and image not in self.images.values():
            raise _api_error(docker.errors.ImageNotFound,
                             'No such image: %s' % image, 404)
        cid = uuid.uuid4().hex * 2
        self.containers[cid] = dict(
            name=name, image=image, command=command,
            labels=dict(labels or {}), host_config=host_config,
            running=False, paused=False, kwargs=kwargs,
            created=int(time.time()))
        return {'Id': cid, 'Warnings': []}

    def _start(self, cid):
        self._set(cid, running=True)

    def _stop(self, cid, timeout=None):
        self._set(cid, running=False, paused=False, stop_timeout=timeout)

    def _inspect(self, cid):
        c = self._get(cid)
        status = ('paused' if c['paused'] else
                  'running' if c['running'] else 'exited')
        return {'Id': cid, 'Name': '/' + c['name'],
                'State': {'Status': status, 'Running': c['running'],
                          'Paused': c['paused'], 'OOMKilled': False,
                          'Pid': 4242 if c['running'] else 0,
                          'ExitCode': 0, 'Error': ''},
                'HostConfig': c['host_config'],
                'Config': {'Labels': c['labels']}}

    def _remove(self, cid, force=False, v=False, link=False):
        self._get(cid)
        del self.containers[cid]

    # -- images ---------------------------------------------------------------

    def _inspect_image(self, name):
        if name in self.images:
            return {'Id': self.images[name], 'RepoTags': [name]}
        raise _api_error(docker.errors.ImageNotFound,
                         'No such image: %s' % name, 404)

    def _load(self, data, quiet=None):
        """Read the whole body as docker load does, then report the tags
        of its manifest.json. Errors in the body propagate as they do
        through requests."""
        self.loads += 1
        body = b''.join(data)
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            manifest = json.load(tar.extractfile('manifest.json'))
        messages = []
        for entry in manifest:
            image_id = 'sha256:' + uuid.uuid4().hex * 2
            for tag in entry.get('RepoTags') or []:
                self.images[tag] = image_id
                messages.append({'stream': 'Loaded image: %s\n' % tag})
        return iter(messages)

    def _tag(self, image, repository, tag=None, force=False):
        self.images['%s:%s' % (repository, tag)] = self._inspect_image(
            image)['Id']
        return True

    def _remove_image(self, image, force=False, noprune=False):
        self._inspect_image(image)
        del self.images[image]
