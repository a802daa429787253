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
"""The project's host tools: tools/run-tests and the all-in-one (tools/aio).

``host`` (install and start what a test or a cloud needs), ``runtests``,
``aio`` and ``aio_services`` run on Debian's python3 before any venv
exists: standard library only. ``cloud`` and ``tempest_conf`` run in the
all-in-one's venv (openstacksdk).
"""
