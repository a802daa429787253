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

"""Every ``[docker]`` option of the driver, in one place.

The options register themselves on import (nova-compute imports the driver
after parsing its config files, and oslo.config accepts late registration).
``list_opts`` feeds the ``oslo.config.opts`` entry point used by
oslo-config-generator.
"""

from oslo_config import cfg
from oslo_config import types

CONF = cfg.CONF

docker_group = cfg.OptGroup(
    'docker', title='Docker driver options',
    help='Options for the nova-docker compute driver '
         '(compute_driver = docker.DockerDriver).')

# Capability names the kernel knows (capability(7)), for cap_drop.
LINUX_CAPABILITIES = (
    'AUDIT_CONTROL', 'AUDIT_READ', 'AUDIT_WRITE', 'BLOCK_SUSPEND', 'BPF',
    'CHECKPOINT_RESTORE', 'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH',
    'FOWNER', 'FSETID', 'IPC_LOCK', 'IPC_OWNER', 'KILL', 'LEASE',
    'LINUX_IMMUTABLE', 'MAC_ADMIN', 'MAC_OVERRIDE', 'MKNOD', 'NET_ADMIN',
    'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_RAW', 'PERFMON', 'SETFCAP',
    'SETGID', 'SETPCAP', 'SETUID', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_CHROOT',
    'SYS_MODULE', 'SYS_NICE', 'SYS_PACCT', 'SYS_PTRACE', 'SYS_RAWIO',
    'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'SYSLOG', 'WAKE_ALARM',
    'ALL')

docker_opts = [
    cfg.StrOpt('api_url',
               default='unix:///var/run/docker.sock',
               help='URL of the Docker Engine API: unix:///path for the '
                    'local socket (default), or tcp://host:port. With '
                    'tcp://, set tls_verify and the certificate options.'),
    cfg.StrOpt('api_version',
               default='auto',
               help='Docker Engine API version to use. "auto" negotiates '
                    'with the engine, which is what works across Docker '
                    '20.10 (API 1.41) and Docker 28+ (minimum API 1.44). '
                    'Pin a version only to work around an engine bug.'),
    cfg.IntOpt('api_timeout',
               default=120, min=1,
               help='Seconds to wait for one Docker API call; for image '
                    'load and save streams it bounds each read. Raise it '
                    'for very large images: Docker 20.10 stages docker '
                    'save on disk before sending the first byte.'),
    cfg.BoolOpt('tls_verify',
                default=False,
                help='Use TLS and verify the engine certificate against '
                     'ca_file. Only meaningful with a tcp:// api_url.'),
    cfg.StrOpt('ca_file',
               help='CA certificate that signed the Docker engine '
                    'certificate.'),
    cfg.StrOpt('cert_file',
               help='Client certificate for TLS client authentication.'),
    cfg.StrOpt('key_file',
               help='Private key of cert_file.'),
    cfg.IntOpt('pids_limit',
               default=4096, min=-1,
               help='Maximum number of processes in one instance '
                    '(Docker pids-limit). -1 means unlimited.'),
    cfg.IntOpt('cpu_period_us',
               default=100000, min=1000, max=1000000,
               help='CFS period in microseconds used to turn flavor vCPUs '
                    'into a CPU quota (quota = vcpus * period).'),
    cfg.BoolOpt('cpu_quota',
                default=True,
                help='Cap each instance at its flavor vCPUs with a CFS '
                     'quota. When False only CPU shares (a weight) are '
                     'set, so idle host CPU can be borrowed.'),
    cfg.StrOpt('sandbox_image',
               default='nova-docker/sandbox:1',
               help='Docker image of the per-instance sandbox container '
                    'that holds the network namespace. If absent it is '
                    'built at start-up from sandbox_binary (no registry '
                    'needed).'),
    cfg.StrOpt('sandbox_binary',
               default='/bin/busybox',
               help='Static binary used to build sandbox_image when the '
                    'engine does not have it (Debian: busybox-static). It '
                    'must provide "sleep".'),
    cfg.IntOpt('console_log_bytes',
               default=100 * 1024, min=1024,
               help='Upper bound of get_console_output, in bytes: the tail '
                    'of the container log.'),
    cfg.IntOpt('image_load_chunk_size',
               default=1024 * 1024, min=4096,
               help='Bytes per chunk streamed between Glance and Docker '
                    '(bounds the memory an image transfer uses).'),
    cfg.StrOpt('integration_bridge',
               help='OVS bridge to plug ports into. Default: the bridge '
                    'Neutron names in the port binding '
                    '(vif_details bridge_name, else [neutron]ovs_bridge).'),
    cfg.StrOpt('ovsdb_connection',
               default='unix:/var/run/openvswitch/db.sock',
               help='OVSDB connection used to plug ports. It also sets '
                    '[os_vif_ovs]ovsdb_connection when that is left at its '
                    'TCP default, which no stock Open vSwitch listens on.'),
    cfg.IntOpt('ovsdb_timeout',
               default=120, min=1,
               help='Seconds to wait for one OVSDB command of the driver '
                    '(its own read-only lookups; os-vif uses '
                    '[os_vif_ovs]ovs_vsctl_timeout).'),
    # -- hardening (issue 9.3) -------------------------------------------
    cfg.StrOpt('log_max_size',
               default='10m',
               regex=r'^[1-9][0-9]*[kmg]?$',
               help='Size at which a container log file (json-file driver) '
                    'is rotated, in Docker syntax (10m, 512k, 1g). With '
                    'log_max_files it caps the disk a container\'s output '
                    'can take; get_console_output reads the newest part.'),
    cfg.IntOpt('log_max_files',
               default=3, min=1, max=100,
               help='Number of log files kept per container (the current '
                    'one included): at most log_max_size x log_max_files '
                    'of console output per instance on the host disk.'),
    cfg.ListOpt('cap_drop',
                item_type=types.String(choices=LINUX_CAPABILITIES,
                                       ignore_case=True),
                default=['MKNOD', 'SETFCAP'],
                help='Linux capabilities (names without CAP_) removed from '
                     'Docker\'s default set for every workload. The '
                     'default keeps what VM-like workloads use (sshd, su, '
                     'ping, chown, low ports) and drops device nodes and '
                     'file capabilities. See README, "Hardening".'),
    cfg.IntOpt('oom_score_adj',
               default=500, min=-1000, max=1000,
               help='oom_score_adj of the workload\'s processes: positive '
                    'so that, when the host runs out of memory, the kernel '
                    'kills tenant processes before host services (0).'),
    cfg.IntOpt('sandbox_oom_score_adj',
               default=400, min=-1000, max=1000,
               help='oom_score_adj of the sandbox (the process holding the '
                    'network namespace): below oom_score_adj so a host OOM '
                    'takes the tenant\'s processes before its network.'),
    cfg.ListOpt('allowed_runtimes',
                default=[],
                help='OCI runtimes (names from "docker info", Runtimes) a '
                     'flavor may ask for with the extra spec '
                     'docker:runtime, e.g. runsc (gVisor) or kata. Empty: '
                     'every workload runs under the engine\'s default '
                     'runtime and a flavor naming another is refused.'),
    cfg.BoolOpt('image_runtime_property',
                default=False,
                help='Also let the Glance image property docker_runtime '
                     'choose the runtime (among allowed_runtimes) when the '
                     'flavor names none. Images belong to tenants: enable '
                     'it only if every runtime in allowed_runtimes is '
                     'acceptable for every tenant.'),
    # -- recovery: the reaper (issue 9, correctness) --
    cfg.IntOpt('reap_interval',
               default=300, min=0,
               help='Seconds between two passes of the reaper, which '
                    'removes the containers labelled with this host whose '
                    'instance Nova no longer has on this host (deleted, or '
                    'a failed build whose clean-up could not reach the '
                    'engine), and the OVS ports they left. It also runs at '
                    'start-up and when the Docker event stream reconnects '
                    'after the engine was away. 0 turns the periodic pass '
                    'off (the other two still run).'),
    cfg.IntOpt('reap_min_age',
               default=60, min=0,
               help='The reaper leaves alone containers created less than '
                    'this many seconds ago (and instances this process is '
                    'spawning), so it never races a build; it looks again '
                    'once they are old enough.'),
    # -- speed: the warm sandbox pool (issue 13) --
    cfg.IntOpt('sandbox_pool_size',
               default=0, min=0, max=64,
               help='Sandboxes (the containers holding an instance\'s '
                    'network namespace) kept created and running ahead of '
                    'the boots that will use them, so a spawn makes and '
                    'starts only its workload. A claimed sandbox is renamed '
                    'after its instance and given the instance\'s hostname '
                    'and DNS; the pool is refilled in the background, '
                    'reconciled at start-up (stale and extra members '
                    'removed) and shrunk when this is lowered. Members are '
                    'labelled org.openstack.nova-docker.pool and are never '
                    'instances. 0 (default): every spawn creates its own '
                    'sandbox.'),
    # Image import limits (issue 9: tenant-proof image import).
    cfg.IntOpt('image_max_unpacked_gb',
               default=0, min=0,
               help='Most GiB a Glance image may unpack to (the plain '
                    'docker save tarball sent to docker load), checked on '
                    'the declared member sizes while it streams, so a '
                    'gzip/bzip2/xz bomb is refused before dockerd writes '
                    'it. 0: the largest of 1 GiB, the flavor root disk '
                    '(root_gb) and 10 times the Glance image size.'),
    # -- init and the flavor seen from inside (issue 11.0, 11.4) ---------
    cfg.BoolOpt('init',
                default=True,
                help='Run each workload under Docker\'s init (tini, the '
                     'engine\'s docker-init) as PID 1: it forwards the '
                     'stop signal, so a shell image without a TERM trap '
                     'stops at once instead of waiting shutdown_timeout, '
                     'and it reaps orphaned processes. An image that brings '
                     'its own init (systemd, s6) opts out with the Glance '
                     'property docker_init=false.'),
    cfg.StrOpt('lxcfs_path',
               default='/var/lib/lxcfs',
               help='Where LXCFS is mounted on the Docker host. When it is '
                    'mounted there, its /proc/{cpuinfo,meminfo,stat,'
                    'uptime,diskstats,loadavg,swaps} and '
                    '/sys/devices/system/cpu are bound read-only into each '
                    'new workload, so it sees its flavor\'s RAM and vCPUs '
                    'and its own uptime. When it is not, a warning is '
                    'logged once and workloads see the host\'s values. '
                    'Empty: never bind LXCFS.'),
]

CONF.register_group(docker_group)
CONF.register_opts(docker_opts, group=docker_group)


def list_opts():
    """oslo.config.opts entry point: the [docker] group and its options."""
    return [(docker_group, docker_opts)]
