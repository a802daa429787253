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

"""Scenario tests: a live all-in-one cloud (tools/aio), through its API.

They need the cloud that ``tools/aio up`` starts and run with
``tools/aio scenario``, which sets NOVA_DOCKER_AIO_SCENARIO. Without it this
package loads no test, so the ordinary ``stestr run`` of tests/ (which has
no cloud) never collects them.
"""

from tests.fixtures import suites


def load_tests(loader, standard_tests, pattern):
    return suites.load_if('NOVA_DOCKER_AIO_SCENARIO', __file__, loader,
                          standard_tests, pattern)
