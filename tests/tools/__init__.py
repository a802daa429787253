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

"""Tests of the scripts under tools/ (the all-in-one, Tempest lists)."""

import os
import sys

from oslotest import mock_fixture

# The class-level autospec mocks here record calls without ``self``, as
# mock behaves once nova's test module has patched it (oslotest's fix of
# mock issue 396), which stestr's discovery does in every worker. A run of
# these tests alone gets the same patch here. (Not in tests/__init__: the
# functional tests' child processes and the all-in-one's scenario venv
# rely on plain mock, or have no oslotest.)
mock_fixture.patch_mock_module()

# The tools' package (tools/ndtools) is no installed package: its tests
# import it from the checkout.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
if os.path.join(REPO, 'tools') not in sys.path:
    sys.path.insert(0, os.path.join(REPO, 'tools'))


def write_aio_nova_conf(directory: str) -> str:
    """The all-in-one's nova.conf (every placeholder 'x') in ``directory``;
    its path, for tests that parse it with Nova's own options."""
    from ndtools import aio_services
    values = dict.fromkeys(('logs', 'db', 'etc', 'data', 'rabbit', 'host',
                            'driver', 'sock', 'helper', 'docker_host'), 'x')
    path = os.path.join(directory, 'nova.conf')
    with open(path, 'w') as conf_file:
        conf_file.write(aio_services.NOVA_CONF % values)
    return path
