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

"""A nova-compute stand-in that test_faults SIGKILLs mid-spawn.

``python -m tests.functional.fault_spawn_child ARGS.json``: a DockerDriver
on the given engine spawns one instance with the given ports; once the
sandbox runs and the ports are plugged (the workload, made alongside,
created or not yet, never started) it writes the marker file and waits to be
killed.
"""

import json
import sys
import time
from unittest import mock


def main(args_path: str) -> None:
    with open(args_path) as handle:
        args = json.load(handle)

    from nova import context as nova_context
    from nova.network import model as network_model
    from nova import objects
    from nova.virt import fake as fake_virt
    import nova.conf  # noqa: F401  (registers nova's options)

    from novadocker import conf
    from novadocker.virt.docker import driver as docker_driver
    from novadocker.virt.docker import images
    from novadocker.virt.docker import vifs
    from tests.fixtures import glance as glance_fixtures
    from tests.fixtures import network as net_fixtures
    from tests.functional import base

    objects.register_all()
    CONF = conf.CONF
    CONF.set_override('host', args['host'])
    CONF.set_override('state_path', args['state_path'])
    CONF.set_override('instances_path', args['state_path'])
    CONF.set_override('vif_plugging_timeout', 0)
    CONF.set_override('api_url', args['api_url'], 'docker')

    glance = glance_fixtures.FakeGlance()
    with open(args['image_path'], 'rb') as handle:
        meta = glance.add(handle.read())
    glance.images[args['image_id']] = dict(meta, id=args['image_id'])
    glance.data[args['image_id']] = glance.data.pop(meta['id'])
    del glance.images[meta['id']]
    images.IMAGE_API = glance

    for context in net_fixtures.PrivsepInProcess.CONTEXTS:
        context.set_client_mode(False)

    driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
    driver.nova_instance_uuids = lambda: [args['instance_uuid']]
    driver.init_host(args['host'])

    # The instance exactly as the parent test built it.
    test = base.DriverTestCase('run')
    test.context = nova_context.get_admin_context()
    test.host = args['host']
    test.nova_instances = set()
    image_meta = objects.ImageMeta.from_dict(glance.images[args['image_id']])
    instance = test.make_instance(image_meta)
    instance.id = args['instance_id']
    instance.uuid = args['instance_uuid']
    instance.hostname = args['hostname']
    network_info = network_model.NetworkInfo.hydrate(args['network_info'])

    real_plug = vifs.VIFPlugger.plug

    def plug_then_hang(plugger, *plug_args, **kwargs):
        real_plug(plugger, *plug_args, **kwargs)
        with open(args['marker'], 'w') as marker:
            marker.write('plugged')
        time.sleep(3600)     # SIGKILLed here

    with mock.patch.object(vifs.VIFPlugger, 'plug', autospec=True,
                           side_effect=plug_then_hang):
        driver.spawn(test.context, instance, image_meta, [], None, {},
                     network_info=network_info)


if __name__ == '__main__':
    main(sys.argv[1])
