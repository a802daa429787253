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

"""The oslo.privsep contexts of nova-docker's privileged work.

One context, holding only what the work needs: CAP_NET_ADMIN for links,
addresses, routes and net sysctls, CAP_SYS_ADMIN for ``setns`` into an
instance's network namespace (``/proc/<sandbox pid>/ns/net``). nova-compute
starts its helper through rootwrap; ``etc/rootwrap.d/docker.filters``
carries the matching filter for this ``pypath``.
"""

from oslo_privsep import capabilities as caps
from oslo_privsep import priv_context

vif_plug = priv_context.PrivContext(
    'novadocker',
    cfg_section='nova_docker_privileged',
    pypath=__name__ + '.vif_plug',
    capabilities=[caps.CAP_NET_ADMIN, caps.CAP_SYS_ADMIN],
)

# The instance's hostname in a workload started in a warm-pool sandbox
# (identity.py): CAP_SYS_ADMIN for setns and sethostname, CAP_SYS_PTRACE to
# open the namespace of a process whose capabilities (Docker's default set)
# are not a subset of this context's. Only started when the pool is used;
# a context of its own so the network context does not hold SYS_PTRACE.
identity = priv_context.PrivContext(
    'novadocker',
    cfg_section='nova_docker_identity',
    pypath=__name__ + '.identity',
    capabilities=[caps.CAP_SYS_ADMIN, caps.CAP_SYS_PTRACE],
)
