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

"""Every test process runs in nova-compute 34's native threading mode.

nova-compute applies nova's monkey_patch before importing anything else
(nova/cmd/compute.py). The tests do the same, first thing: otherwise the
first nova import pulls in futurist, which imports eventlet when it can,
and nova.tests.functional (imported by the integration tests; its
__init__ calls monkey_patch.patch()) then refuses to start threading mode
("eventlet library imported early") during stestr's discovery of all
modules in one process.
"""

import os

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

from nova import monkey_patch  # noqa: E402

monkey_patch.patch(backend='threading')
