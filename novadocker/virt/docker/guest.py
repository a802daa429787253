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

"""The two containers behind one instance, and their lifecycle.

Every instance is a *sandbox* container (``network_mode=none``; it only
sleeps and holds the network namespace, hostname and resolv.conf) and a
*workload* container built from the Glance image, which joins the sandbox
with ``network_mode=container:<sandbox>``. Ports are plugged into the
sandbox before the workload starts, so the workload never runs without its
network, and restarting the workload keeps the NICs.

Both containers carry labels naming the instance and the compute host; the
driver never lists or touches a container without them, because compute
hosts often run other containers (Kolla runs OpenStack itself in Docker).
They are named after the instance UUID (``nova-<uuid>``,
``nova-<uuid>-sandbox``), not the instance name: two deployments (or a
re-created database) sharing one engine number their instances alike.

A sandbox taken from the warm pool (``pool``) was created before its
instance existed: it carries the pool's label instead of the instance's,
and belongs to the instance whose sandbox name it was renamed to
(``instance_of``); ``Guests`` finds it by that name.
"""

import datetime
import functools
import io
import os
import re
import shlex
import socket
import tarfile
import threading
import time
import typing

import docker.errors
from nova.compute import power_state
from nova import exception
from nova.i18n import _
from oslo_log import log as logging
from oslo_utils import strutils
from oslo_utils import timeutils
from oslo_utils import units

from novadocker import conf
from novadocker.virt.docker import background
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import configdrive

CONF = conf.CONF
LOG = logging.getLogger(__name__)

LABEL_INSTANCE = 'org.openstack.nova.instance-uuid'
LABEL_HOST = 'org.openstack.nova.host'
LABEL_ROLE = 'org.openstack.nova-docker.role'
LABEL_NAME = 'org.openstack.nova.instance-name'
# On the sandboxes of the warm pool, claimed or not (see pool.py).
LABEL_POOL = 'org.openstack.nova-docker.pool'
ROLE_WORKLOAD = 'workload'
ROLE_SANDBOX = 'sandbox'
NAME_PREFIX = 'nova-'
SANDBOX_SUFFIX = '-sandbox'
# The OCI runtime a flavor (or, if allowed, an image) asks for.
EXTRA_SPEC_RUNTIME = 'docker:runtime'
IMAGE_PROP_RUNTIME = 'docker_runtime'
# Image property: "false" for images that bring their own init (systemd,
# s6, tini in the image), which must be PID 1 themselves.
IMAGE_PROP_INIT = 'docker_init'
# Docker's PATH for images that set none.
DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
# Nova's image property for the image's default user: gets the key too.
IMAGE_PROP_ADMIN_USER = 'os_admin_user'
# What LXCFS virtualises, bound over the workload's own files so that the
# tools reading them see the flavor (and the container's uptime).
LXCFS_FILES = ('proc/cpuinfo', 'proc/diskstats', 'proc/loadavg',
               'proc/meminfo', 'proc/stat', 'proc/swaps', 'proc/uptime',
               'sys/devices/system/cpu')

# The hostname Docker gives a pool sandbox, until it is claimed.
POOL_HOSTNAME = 'nova-pool'

# Docker State.Status -> Nova power state. A paused (frozen) container is
# PAUSED whether Nova paused or suspended it: both freeze the cgroup.
_POWER_STATES = {
    'created': power_state.SHUTDOWN,
    'running': power_state.RUNNING,
    'paused': power_state.PAUSED,
    'restarting': power_state.RUNNING,
    'removing': power_state.SHUTDOWN,
    'exited': power_state.SHUTDOWN,
    'dead': power_state.CRASHED,
}


def power_state_of(state: dict) -> int:
    """Map a container's ``State`` dict to a Nova power state."""
    if state.get('OOMKilled') and state.get('Status') == 'exited':
        return power_state.CRASHED
    return _POWER_STATES.get(state.get('Status'), power_state.NOSTATE)


def container_name(instance, role: str = ROLE_WORKLOAD) -> str:
    """``nova-<uuid>``: unique on an engine shared by deployments."""
    name = NAME_PREFIX + instance.uuid
    return name + SANDBOX_SUFFIX if role == ROLE_SANDBOX else name


def sandbox_hostname(instance) -> str:
    """The instance's hostname as its sandbox (and so its workload, which
    Docker gives the sandbox's) has it."""
    return (instance.hostname or instance.name)[:63]


# A claimed pool sandbox's name, as listings ('/nova-<uuid>-sandbox') and
# events ('nova-<uuid>-sandbox') spell it.
_CLAIMED_NAME = re.compile('^/?%s([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-'
                           '[0-9a-f]{4}-[0-9a-f]{12})%s$'
                           % (NAME_PREFIX, SANDBOX_SUFFIX))


def instance_of(labels: typing.Optional[dict],
                names: typing.Iterable[str] = ()) -> typing.Optional[str]:
    """The UUID of the instance a container belongs to, or None: its
    instance label, or for a pool sandbox, the instance it was claimed for
    (renamed to ``nova-<uuid>-sandbox``); a free pool member has none."""
    labels = labels or {}
    if labels.get(LABEL_INSTANCE):
        return labels[LABEL_INSTANCE]
    if labels.get(LABEL_POOL):
        for name in names or ():
            match = _CLAIMED_NAME.match(name or '')
            if match:
                return match.group(1)
    return None


def log_config() -> dict:
    """json-file with rotation: a tenant's stdout cannot fill the disk,
    and ``docker logs`` (the console output) still reads it."""
    return {'Type': 'json-file',
            'Config': {'max-size': CONF.docker.log_max_size,
                       'max-file': str(CONF.docker.log_max_files)}}


def cap_drop() -> typing.List[str]:
    """[docker]cap_drop, upper-cased, without repeats."""
    found = []
    for name in CONF.docker.cap_drop:
        name = name.upper()
        if name not in found:
            found.append(name)
    return found


def image_property(instance, name: str) -> typing.Optional[str]:
    """A Glance property of the instance's image, unknown ones included.

    Nova copies every image property into the instance's system metadata
    as ``image_<name>``: ImageMetaProps would drop one it does not know.
    """
    value = (instance.system_metadata or {}).get('image_' + name)
    return value.strip() if value else None


def wants_init(instance) -> bool:
    """Docker's init (tini) as PID 1, unless [docker]init is off or the
    image says docker_init=false (it brings its own init)."""
    if not CONF.docker.init:
        return False
    value = image_property(instance, IMAGE_PROP_INIT)
    return strutils.bool_from_string(value, default=True) if value else True


class LxcfsBinds:
    """LXCFS's files, read-only, bound over the workload's: ``binds()``.

    One per driver: it remembers that it already said LXCFS is missing,
    so nova-compute logs that once, not at every boot.
    """

    def __init__(self):
        self._missing_logged = False

    def binds(self) -> typing.List[str]:
        """The binds, or [] (with one log line) when [docker]lxcfs_path is
        set but LXCFS is not mounted there (or its mount is dead: a
        restarted lxcfs leaves one behind)."""
        path = CONF.docker.lxcfs_path
        if not path:
            return []
        if not (os.path.ismount(path) and
                os.access(os.path.join(path, 'proc/meminfo'), os.R_OK)):
            if not self._missing_logged:
                LOG.warning('LXCFS is not mounted at [docker]lxcfs_path %s: '
                            'instances will see the host\'s CPUs, memory '
                            'and uptime in /proc. Start lxcfs (Debian: apt '
                            'install lxcfs) or set lxcfs_path empty to '
                            'silence this.', path)
                self._missing_logged = True
            return []
        self._missing_logged = False
        return ['%s:/%s:ro' % (os.path.join(path, name), name)
                for name in LXCFS_FILES
                if os.path.exists(os.path.join(path, name))]


def requested_runtime(instance) -> typing.Tuple[typing.Optional[str], str]:
    """The OCI runtime the instance asks for, and who asks.

    The flavor's extra spec ``docker:runtime`` wins; the image property
    ``docker_runtime`` counts only with ``[docker]image_runtime_property``
    (Nova copies every image property into the instance's system metadata
    as ``image_<name>``: ImageMetaProps would drop an unknown one).
    """
    flavor = instance.flavor
    specs = (flavor.extra_specs or {}) if flavor else {}
    if specs.get(EXTRA_SPEC_RUNTIME):
        return specs[EXTRA_SPEC_RUNTIME].strip(), 'flavor'
    if CONF.docker.image_runtime_property:
        value = image_property(instance, IMAGE_PROP_RUNTIME)
        if value:
            return value, 'image'
    return None, 'default'


class RuntimeUnavailable(exception.InvalidInput):
    """InvalidInput: Nova aborts the build with this message as the fault
    instead of rescheduling into "Exhausted all hosts"; the scheduler
    learns the runtimes from the host's traits (runtime_traits)."""
    msg_fmt = _("OCI runtime %(runtime)s requested by the %(source)s is "
                "not available on this host: %(reason)s. Available: "
                "%(available)s")


class EphemeralDiskUnsupported(exception.InvalidInput):
    """InvalidInput: the build aborts with this fault, nothing created.

    A container has one filesystem, sized by root_gb; a second disk of
    ephemeral_gb would be a loop-mounted file of its own, which the
    driver does not make: it refuses rather than silently folding it in.
    """
    msg_fmt = _("Flavor %(flavor)s has an ephemeral disk of %(gb)d GB: "
                "nova-docker gives a container one filesystem, sized by "
                "root_gb, and no ephemeral disk. Use a flavor with "
                "ephemeral_gb = 0.")


def check_flavor(flavor) -> None:
    """Refuse what a container cannot have (before anything is made)."""
    if flavor.ephemeral_gb:
        raise EphemeralDiskUnsupported(flavor=flavor.name,
                                       gb=flavor.ephemeral_gb)


RUNTIME_TRAIT_PREFIX = 'CUSTOM_DOCKER_RUNTIME_'


def usable_runtimes(info: dict) -> typing.List[str]:
    """The engine's default runtime and the allowed ones it has."""
    engine = set(info.get('Runtimes') or {})
    allowed = {r.strip() for r in CONF.docker.allowed_runtimes}
    default = info.get('DefaultRuntime')
    return sorted((allowed & engine) | ({default} if default else set()))


def runtime_trait(runtime: str) -> str:
    """CUSTOM_DOCKER_RUNTIME_<NAME>, for flavors' trait:...=required."""
    return RUNTIME_TRAIT_PREFIX + re.sub(r'[^A-Z0-9_]', '_', runtime.upper())


def command_override(image_meta) -> typing.Optional[typing.List[str]]:
    """The Glance property os_command_line replaces the image's CMD."""
    props = getattr(image_meta, 'properties', None)
    if props is None or not props.obj_attr_is_set('os_command_line'):
        return None
    line = props.os_command_line
    return shlex.split(line) if line else None


class _InstanceRef(typing.NamedTuple):
    """What error translation needs of an instance known by UUID only."""
    uuid: str
    image_ref: typing.Optional[str]


class ContainerState(typing.NamedTuple):
    """The part of ``docker inspect``'s State the driver decides on."""
    running: bool
    paused: bool
    pid: int          # 0 when not running
    power_state: int
    started_at: typing.Optional[datetime.datetime]   # None: not running
    exit_code: typing.Optional[int]
    error: str

    @classmethod
    def from_docker(cls, state: dict) -> 'ContainerState':
        running = bool(state.get('Running'))
        started = state.get('StartedAt')
        return cls(running=running, paused=bool(state.get('Paused')),
                   pid=int(state.get('Pid') or 0),
                   power_state=power_state_of(state),
                   started_at=(timeutils.parse_isotime(started)
                               if running and started else None),
                   exit_code=state.get('ExitCode'),
                   error=state.get('Error') or '')


# How long one listing serves the power-state sync's get_info calls. The
# driver's own operations and the Docker events thread drop an instance's
# listed state as soon as it changes, so this only bounds how stale a state
# can be while the event stream is down; Nova's sync runs every 10 minutes,
# so each run lists once.
LISTING_MAX_AGE = 15.0
# Docker answers ``docker ps`` from a replica of its containers that it
# updates after the operation itself has answered: on Docker 26 a listing
# right after ``docker stop`` returned still said "running" 13 times in 40
# (Docker 20.10: not seen). A listing begun this soon after a change does
# not answer for the changed instance.
REPLICA_LAG = 2.0


class Listed(typing.NamedTuple):
    """One container as a listing showed it."""
    role: str
    container_id: str
    status: str       # State.Status, e.g. running, paused, exited


class StateCache:
    """The states of this host's containers from one listing.

    Nova's power-state sync asks ``get_info(use_cache=True)`` of every
    instance; one ``containers(all=True)`` call answers them all instead of
    a list and an inspect per instance. An instance whose containers
    changed since the listing began (``changed(uuid)``: the driver's own
    operations, the Docker events thread) is not answered from it, so the
    caller reads it fresh; nor by a listing that began within REPLICA_LAG
    seconds of the change (the listing may predate it). One per driver,
    shared by every ``Guests``; thread-safe (the sync asks from a pool of
    threads).
    """

    def __init__(self, max_age: float = LISTING_MAX_AGE,
                 clock: typing.Callable[[], float] = time.monotonic):
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        # One listing at a time; the others wait for it and use it.
        self._listing = threading.Lock()
        self._by_uuid: typing.Dict[str, typing.List[Listed]] = {}
        self._listed_at: typing.Optional[float] = None
        self._generation = 0   # listings made
        # Each change gets a number and a time; an instance changed after a
        # listing began, or within REPLICA_LAG before, stays out of it.
        self._sequence = 0
        self._changed: typing.Dict[str, typing.Tuple[int, float]] = {}
        self._relisting = False
        # Power state of exited containers, inspected once (only inspect
        # tells an OOM kill from a stop) until they change.
        self._exited: typing.Dict[str, int] = {}

    def changed(self, instance_uuid: str) -> None:
        """The instance's containers changed: read it fresh until the next
        listing that began after now."""
        with self._lock:
            self._sequence += 1
            for listed in self._by_uuid.get(instance_uuid, ()):
                self._exited.pop(listed.container_id, None)
            now = self._clock()
            self._changed[instance_uuid] = (self._sequence, now)
            if not (self._relisting or self._fresh_locked()):
                # The next listing begins after every change so far: only
                # the marks of changes within REPLICA_LAG matter, and none
                # piles up while nobody asks (the sync turned off).
                self._changed = {
                    uuid: mark for uuid, mark in self._changed.items()
                    if now - mark[1] < REPLICA_LAG}

    def forget(self) -> None:
        """Drop the listing (events may have been lost): list again."""
        with self._lock:
            self._listed_at = None
            self._exited.clear()

    def containers(self, instance_uuid: str,
                   list_all: typing.Callable[[], list]
                   ) -> typing.Optional[typing.List[Listed]]:
        """The instance's containers as listed ([]: none), or None when
        the listing cannot tell (it changed since): read it fresh.
        ``list_all()`` lists every container of the host, when the
        listing is older than max_age."""
        with self._lock:
            if self._fresh_locked():
                return self._answer(instance_uuid)
        with self._listing:
            with self._lock:
                if self._fresh_locked():   # listed while we waited
                    return self._answer(instance_uuid)
                began = self._sequence
                self._relisting = True
            started = self._clock()
            try:
                by_uuid = self._group(list_all())
            except Exception:
                with self._lock:
                    self._relisting = False
                raise
            with self._lock:
                # Installed and answered at once: no change can fall
                # between, however long the listing took.
                self._install(by_uuid, started, began)
                self._relisting = False
                return self._answer(instance_uuid)

    def exited_state(self, instance_uuid: str, container_id: str,
                     read: typing.Callable[[], int]) -> int:
        """The power state of a listed exited container: ``read()`` once
        (an inspect), then remembered until the container changes."""
        with self._lock:
            if container_id in self._exited:
                return self._exited[container_id]
            sequence, generation = self._sequence, self._generation
        state = read()
        with self._lock:
            # Not if it changed meanwhile (it may have run and exited
            # again), nor into a newer listing.
            mark = self._changed.get(instance_uuid)
            if (mark is None or mark[0] <= sequence) and \
                    self._generation == generation:
                self._exited[container_id] = state
        return state

    def _fresh_locked(self) -> bool:
        return self._listed_at is not None and \
            self._clock() - self._listed_at < self._max_age

    def _answer(self, instance_uuid: str
                ) -> typing.Optional[typing.List[Listed]]:
        if instance_uuid in self._changed:
            return None
        return list(self._by_uuid.get(instance_uuid, ()))

    @staticmethod
    def _group(found: list) -> typing.Dict[str, typing.List[Listed]]:
        by_uuid: typing.Dict[str, typing.List[Listed]] = {}
        for container in found:
            labels = container.get('Labels') or {}
            uuid = instance_of(labels, container.get('Names'))
            if uuid:
                by_uuid.setdefault(uuid, []).append(Listed(
                    labels.get(LABEL_ROLE) or '', container['Id'],
                    container.get('State') or ''))
        return by_uuid

    def _install(self, by_uuid: typing.Dict[str, typing.List[Listed]],
                 started: float, began: int) -> None:
        """The new listing, made from ``started`` on, after the change
        numbered ``began``."""
        exited = {listed.container_id for rows in by_uuid.values()
                  for listed in rows if listed.status == 'exited'}
        self._by_uuid = by_uuid
        self._listed_at = started
        self._generation += 1
        self._changed = {uuid: mark for uuid, mark in self._changed.items()
                         if mark[0] > began
                         or mark[1] > started - REPLICA_LAG}
        self._exited = {cid: state for cid, state
                        in self._exited.items() if cid in exited}


class Guests:
    """Creates and finds the containers of this host's instances."""

    def __init__(self, api, host: str, root_quota: bool = False,
                 lxcfs: typing.Optional[LxcfsBinds] = None,
                 states: typing.Optional[StateCache] = None):
        self._api = api
        self._host = host
        # True when the engine enforces storage_opt size (see rootdisk).
        self._root_quota = root_quota
        self._lxcfs = lxcfs or LxcfsBinds()
        # The driver's one cache, told of every change made through here.
        self._states = states or StateCache()

    def changed(self, instance_uuid: str) -> None:
        """The instance's containers were created, started, stopped,
        paused or removed: its cached state is stale."""
        self._states.changed(instance_uuid)

    # -- finding -----------------------------------------------------------

    def labels(self, instance, role: str) -> dict:
        """The labels of the instance's container of ``role``."""
        return {LABEL_INSTANCE: instance.uuid, LABEL_HOST: self._host,
                LABEL_ROLE: role, LABEL_NAME: instance.name}

    def _list(self, role: typing.Optional[str] = None,
              instance_uuid: typing.Optional[str] = None) -> list:
        filters = ['%s=%s' % (LABEL_HOST, self._host)]
        if role:
            filters.append('%s=%s' % (LABEL_ROLE, role))
        if instance_uuid:
            filters.append('%s=%s' % (LABEL_INSTANCE, instance_uuid))
        with docker_client.translate_errors('list containers'):
            return self._api.containers(all=True, filters={'label': filters})

    def containers_of(self, instance_uuid: str) -> typing.List[
            typing.Tuple[str, str]]:
        """(role, container ID) of every container of the instance on
        this host, sandbox, workload and rescue alike: one API call (two
        when the sandbox is not labelled with the instance: one from the
        pool, or none)."""
        return self._containers(instance_uuid)[0]

    def _containers(self, instance_uuid: str) -> typing.Tuple[
            typing.List[typing.Tuple[str, str]], bool]:
        """containers_of, and whether the sandbox came from the pool."""
        found = [((c.get('Labels') or {}).get(LABEL_ROLE) or '', c['Id'])
                 for c in self._list(instance_uuid=instance_uuid)]
        if any(role == ROLE_SANDBOX for role, _cid in found):
            return found, False
        claimed = self.claimed_sandbox(instance_uuid)
        if claimed is None:
            return found, False
        return [(ROLE_SANDBOX, claimed)] + found, True

    def claimed_sandbox(self, instance_uuid: str) -> typing.Optional[str]:
        """ID of the pool sandbox claimed for the instance, if any: found
        by its name among this host's pool sandboxes."""
        name = NAME_PREFIX + instance_uuid + SANDBOX_SUFFIX
        with docker_client.translate_errors('list containers'):
            found = self._api.containers(all=True, filters={
                'label': ['%s=%s' % (LABEL_HOST, self._host),
                          LABEL_POOL + '=1'],
                'name': [name + '$']})
        for container in found:
            if instance_of(container.get('Labels'),
                           container.get('Names')) == instance_uuid:
                return container['Id']
        return None

    def list_instance_uuids(self) -> typing.List[str]:
        """UUIDs of the instances on this host: one Docker API call."""
        return sorted({c['Labels'][LABEL_INSTANCE]
                       for c in self._list(ROLE_WORKLOAD)})

    def list_names(self) -> typing.List[str]:
        """Nova's instance names, from the workloads' name label (the
        container name for containers made before the label): one API
        call."""
        return sorted(c['Labels'].get(LABEL_NAME) or
                      c['Names'][0].lstrip('/')
                      for c in self._list(ROLE_WORKLOAD))

    def power_state(self, instance, roles: typing.Sequence[str],
                    use_cache: bool = True) -> typing.Tuple[int, str]:
        """(power state, container ID) of the instance's first container
        of ``roles`` (ContainerMissing if none).

        With ``use_cache``, from the host's last listing (one API call
        for every instance of the host) unless the instance changed since;
        else, or then, from a list and an inspect of its own.
        """
        listed = (self._states.containers(instance.uuid, self.list_all)
                  if use_cache else None)
        if listed is None:
            guest = self.lookup(instance)
            role = next((r for r in roles if guest.has(r)), roles[-1])
            return guest.state(role).power_state, guest.id(role)
        found = next((c for r in roles for c in listed if c.role == r), None)
        if found is None:
            raise docker_client.ContainerMissing(
                instance_id=instance.uuid,
                reason=_('no %s container') % roles[-1])
        if found.status != 'exited':
            return (_POWER_STATES.get(found.status, power_state.NOSTATE),
                    found.container_id)
        # Exited or OOM-killed: only inspect tells.
        return self._states.exited_state(
            instance.uuid, found.container_id,
            functools.partial(self._inspected_state, instance,
                              found.container_id)), found.container_id

    def _inspected_state(self, instance, container_id: str) -> int:
        with docker_client.translate_errors('inspect', instance=instance):
            state = self._api.inspect_container(container_id)['State']
        return power_state_of(state)

    def lookup(self, instance) -> 'Guest':
        """The instance's Guest, whatever containers it has (maybe none:
        asking it for a missing one raises ContainerMissing)."""
        containers, pooled = self._containers(instance.uuid)
        return Guest(self, instance, containers, pooled=pooled)

    def find(self, instance, role: typing.Optional[str] = ROLE_WORKLOAD
             ) -> typing.Optional['Guest']:
        """The instance's Guest, or None if it has no container of
        ``role`` (None: no container at all)."""
        found = self.lookup(instance)
        if role is None:
            return found if found.containers else None
        return found if found.has(role) else None

    def get(self, instance, role: str = ROLE_WORKLOAD) -> 'Guest':
        """Like find, but a missing container is ContainerMissing (an
        InstanceNotFound)."""
        found = self.find(instance, role)
        if found is None:
            raise docker_client.ContainerMissing(
                instance_id=instance.uuid,
                reason=_('no %s container') % role)
        return found

    def remove(self, instance) -> None:
        """Remove every container of the instance. Idempotent."""
        found = self.find(instance, None)
        if found is not None:
            found.remove()

    def list_all(self) -> typing.List[dict]:
        """Every container labelled with this host, as Docker lists them
        (Id, Names, Labels, Created, State), whatever their instance."""
        return self._list()

    def remove_container(self, container_id: str,
                         instance_uuid: str) -> None:
        """Remove one container of the instance, and its anonymous
        volumes. Idempotent."""
        owner = _InstanceRef(uuid=instance_uuid, image_ref=None)
        try:
            with docker_client.translate_errors('remove', instance=owner):
                self._api.remove_container(container_id, force=True, v=True)
        except exception.InstanceNotFound:
            pass
        finally:
            self.changed(instance_uuid)

    # -- creating ----------------------------------------------------------

    def handle(self, instance, sandbox_id: str,
               workload_id: typing.Optional[str] = None,
               pooled: bool = False) -> 'Guest':
        """The Guest of containers just created, from their IDs: no list
        call for what the driver already knows."""
        containers = [(ROLE_SANDBOX, sandbox_id)]
        if workload_id is not None:
            containers.append((ROLE_WORKLOAD, workload_id))
        return Guest(self, instance, containers, pooled=pooled)

    def _sandbox_host_config(self, dns: typing.Sequence[str] = (),
                             dns_search: typing.Sequence[str] = ()) -> dict:
        return self._api.create_host_config(
            network_mode='none', restart_policy={'Name': 'no'},
            dns=list(dns) or None, dns_search=list(dns_search) or None,
            pids_limit=16, mem_limit=32 * units.Mi,
            security_opt=['no-new-privileges'], cap_drop=['ALL'],
            # hostname, hosts and resolv.conf are bind mounts: they stay
            # writable by Docker and readable by the workload.
            read_only=True,
            oom_score_adj=CONF.docker.sandbox_oom_score_adj,
            log_config=log_config(), init=False)

    def create_sandbox(self, instance, sandbox_image_id: str,
                       dns: typing.Sequence[str] = (),
                       dns_search: typing.Sequence[str] = (),
                       start: bool = True) -> str:
        """Create (and, with ``start``, start) the namespace-holding
        container from the sandbox image's ID (resolved at start-up, not a
        re-pointable name).
        """
        host_config = self._sandbox_host_config(dns, dns_search)
        with docker_client.translate_errors('create sandbox',
                                            instance=instance,
                                            image_id=sandbox_image_id):
            try:
                created = self._api.create_container(
                    sandbox_image_id,
                    name=container_name(instance, ROLE_SANDBOX),
                    hostname=sandbox_hostname(instance),
                    labels=self.labels(instance, ROLE_SANDBOX),
                    host_config=host_config, network_disabled=False)
                if start:
                    self._api.start(created['Id'])
            finally:
                self.changed(instance.uuid)
        return created['Id']

    # -- the warm pool's sandboxes (pool.py decides when) --------------------

    def create_pool_sandbox(self, name: str, sandbox_image_id: str) -> dict:
        """Create and start a pool sandbox: an instance's sandbox without
        its instance (no DNS of its own, a placeholder hostname, the pool's
        label); ``docker inspect`` of it once started. A sandbox that fails
        to start is removed."""
        with docker_client.translate_errors('create pool sandbox',
                                            image_id=sandbox_image_id):
            created = self._api.create_container(
                sandbox_image_id, name=name, hostname=POOL_HOSTNAME,
                labels={LABEL_HOST: self._host, LABEL_ROLE: ROLE_SANDBOX,
                        LABEL_POOL: '1'},
                host_config=self._sandbox_host_config(),
                network_disabled=False)
            try:
                self._api.start(created['Id'])
                return self._api.inspect_container(created['Id'])
            except Exception:
                self._api.remove_container(created['Id'], force=True)
                raise

    def inspect_pool_sandbox(self, container_id: str) -> dict:
        with docker_client.translate_errors('inspect pool sandbox'):
            return self._api.inspect_container(container_id)

    def remove_pool_sandbox(self, container_id: str) -> None:
        """Remove a free pool sandbox. Idempotent."""
        with docker_client.translate_errors('remove pool sandbox'):
            try:
                self._api.remove_container(container_id, force=True, v=True)
            except docker.errors.NotFound:
                pass

    def list_pool(self) -> typing.List[dict]:
        """This host's pool sandboxes, free and claimed, as listed."""
        with docker_client.translate_errors('list containers'):
            return self._api.containers(all=True, filters={'label': [
                '%s=%s' % (LABEL_HOST, self._host), LABEL_POOL + '=1']})

    def claim_pool_sandbox(self, instance, container_id: str) -> None:
        """Make a free pool sandbox the instance's: renamed to the
        instance's sandbox name (``instance_of`` reads it back)."""
        try:
            with docker_client.translate_errors('claim pool sandbox',
                                                instance=instance):
                self._api.rename(container_id,
                                 container_name(instance, ROLE_SANDBOX))
        finally:
            self.changed(instance.uuid)

    def check_runtime(self, instance) -> typing.Optional[str]:
        """The runtime for the instance's workload (None: the engine's
        default), or RuntimeUnavailable before anything is created.

        It must be in [docker]allowed_runtimes and known to the engine.
        """
        runtime, source = requested_runtime(instance)
        if runtime is None:
            return None
        with docker_client.translate_errors('info'):
            info = self._api.info()
        engine = set(info.get('Runtimes') or {})
        default = info.get('DefaultRuntime')
        allowed = [r.strip() for r in CONF.docker.allowed_runtimes]
        usable = usable_runtimes(info)
        if runtime == default:
            return None
        if runtime not in allowed:
            reason = _('not in [docker]allowed_runtimes')
        elif runtime not in engine:
            reason = _('the Docker engine has no such runtime')
        else:
            return runtime
        raise RuntimeUnavailable(runtime=runtime, source=source,
                                 reason=reason,
                                 available=', '.join(usable) or '-')

    def workload_host_config(self, instance, sandbox_id: str,
                             runtime: typing.Optional[str] = None) -> dict:
        """Flavor limits and the hardening every workload gets."""
        flavor = instance.flavor
        memory = flavor.memory_mb * units.Mi
        options = dict(
            network_mode='container:%s' % sandbox_id,
            mem_limit=memory,
            # The flavor's swap (MB) on top of its RAM; 0: no swap.
            memswap_limit=memory + (flavor.swap or 0) * units.Mi,
            cpu_shares=max(2, flavor.vcpus * 1024),
            pids_limit=CONF.docker.pids_limit,
            privileged=False,
            security_opt=['no-new-privileges'],
            cap_drop=cap_drop() or None,
            oom_score_adj=CONF.docker.oom_score_adj,
            log_config=log_config(),
            restart_policy={'Name': 'no'},   # Nova owns the power state
            # tini as PID 1: it passes the stop signal on to the workload
            # (which, not being PID 1, dies of it by default) and reaps
            # orphans, as a VM's init does.
            init=wants_init(instance),
            binds=self._lxcfs.binds() + configdrive.bind(instance) or None,
        )
        if runtime:
            options['runtime'] = runtime
        if self._root_quota and flavor.root_gb:
            # The writable layer (btrfs/zfs: the whole root) is the
            # flavor's root disk.
            options['storage_opt'] = {'size': '%dG' % flavor.root_gb}
        if CONF.docker.cpu_quota:
            options['cpu_period'] = CONF.docker.cpu_period_us
            options['cpu_quota'] = flavor.vcpus * CONF.docker.cpu_period_us
        return self._api.create_host_config(**options)

    def create_workload(self, instance, docker_image_id: str, image_meta,
                        sandbox_id: str,
                        runtime: typing.Optional[str] = None) -> str:
        """Create (not start) the workload container from the image."""
        # image_meta is None for a workload re-made from a resize commit.
        image_id = (image_meta.id if image_meta is not None
                    else instance.image_ref)
        with docker_client.translate_errors('create container',
                                            instance=instance,
                                            image_id=image_id):
            try:
                created = self._api.create_container(
                    docker_image_id, name=container_name(instance),
                    command=command_override(image_meta),
                    labels=self.labels(instance, ROLE_WORKLOAD),
                    # A terminal keeps shell-CMD images (busybox, ubuntu)
                    # alive the way a VM console does; the log is the
                    # console output.
                    tty=True, stdin_open=True,
                    host_config=self.workload_host_config(
                        instance, sandbox_id, runtime))
            finally:
                self.changed(instance.uuid)
        return created['Id']


class Guest:
    """One instance's containers on this host, as one list call found
    them.

    Shaped like docker-py's Container model (IDs, the inspected
    attributes, ``reload()``) and nova's zvm Guest (the per-instance
    operations): callers ask typed questions (``running``, ``paused``,
    ``pid``, ``power_state``) and never read Docker's JSON. A container is
    inspected on first need and again after an operation changed it.
    """

    def __init__(self, guests: Guests, instance,
                 containers: typing.List[typing.Tuple[str, str]],
                 pooled: bool = False):
        self._guests = guests
        self._api = guests._api
        self.instance = instance
        self.containers = list(containers)
        # The sandbox came from the warm pool: Docker gives it (and each
        # start of a container in its namespace) the pool's placeholder
        # hostname, which the driver replaces (identity.py).
        self.pooled = pooled
        self._attrs: typing.Dict[str, dict] = {}

    def has(self, role: str) -> bool:
        return any(r == role for r, _cid in self.containers)

    def id(self, role: str = ROLE_WORKLOAD) -> str:
        """ID of the container of ``role``; ContainerMissing if none."""
        for found_role, container_id in self.containers:
            if found_role == role:
                return container_id
        raise docker_client.ContainerMissing(
            instance_id=self.instance.uuid,
            reason=_('no %s container') % role)

    @property
    def workload_id(self) -> str:
        return self.id(ROLE_WORKLOAD)

    @property
    def sandbox_id(self) -> str:
        return self.id(ROLE_SANDBOX)

    def reload(self) -> None:
        """List the instance's containers again; forget what was
        inspected (callers reload after changing its containers: the
        host's cached states forget it too)."""
        self._guests.changed(self.instance.uuid)
        # (pooled stays: an instance's sandbox is never replaced under a
        # Guest.)
        self.containers = self._guests.containers_of(self.instance.uuid)
        self._attrs.clear()

    def inspect(self, role: str = ROLE_WORKLOAD) -> dict:
        """``docker inspect`` of the container of ``role``, read once."""
        if role not in self._attrs:
            container_id = self.id(role)
            with docker_client.translate_errors('inspect',
                                                instance=self.instance):
                self._attrs[role] = self._api.inspect_container(
                    container_id)
        return self._attrs[role]

    def _changed(self, role: str) -> None:
        """Called after each operation on the container of ``role``."""
        self._attrs.pop(role, None)
        self._guests.changed(self.instance.uuid)

    def state(self, role: str = ROLE_WORKLOAD) -> ContainerState:
        return ContainerState.from_docker(self.inspect(role)['State'])

    @property
    def running(self) -> bool:
        """The workload runs (a frozen one counts as running)."""
        return self.state().running

    @property
    def paused(self) -> bool:
        """The workload is frozen (Nova's pause or suspend)."""
        return self.state().paused

    @property
    def pid(self) -> int:
        """PID whose /proc/<pid>/ns/net is the instance's netns (0 if the
        sandbox is not running)."""
        return self.state(ROLE_SANDBOX).pid

    @property
    def power_state(self) -> int:
        return self.state().power_state

    @property
    def image_id(self) -> str:
        """The Docker image ID the workload was made from."""
        return self.inspect()['Image']

    # -- driving -----------------------------------------------------------

    def start(self, role: str = ROLE_WORKLOAD) -> None:
        container_id = self.id(role)
        image = (CONF.docker.sandbox_image if role == ROLE_SANDBOX
                 else self.instance.image_ref)
        try:
            with docker_client.translate_errors(
                    'start', instance=self.instance, image_id=image):
                self._api.start(container_id)
        finally:
            self._changed(role)

    def stop(self, timeout: int, role: str = ROLE_WORKLOAD) -> None:
        """The image's StopSignal (SIGTERM unless it says otherwise), then
        SIGKILL after timeout; timeout 0 (hard reboot, forced power-off):
        SIGKILL at once, the workload is not asked."""
        container_id = self.id(role)
        self._changed(role)
        state = self.state(role)
        try:
            with docker_client.translate_errors('stop',
                                                instance=self.instance):
                if state.paused:
                    self._api.unpause(container_id)
                if timeout > 0 or not state.running:
                    self._api.stop(container_id,
                                   timeout=max(0, int(timeout)))
                else:
                    self._kill(container_id)
        finally:
            self._changed(role)

    def _kill(self, container_id: str) -> None:
        """SIGKILL; Docker answers once the container is down. One that
        exited meanwhile (409, not running) is already what we want."""
        try:
            self._api.kill(container_id)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise

    def kill(self, role: str = ROLE_WORKLOAD) -> None:
        self.stop(0, role)

    def restart(self, timeout: int) -> None:
        self.stop(timeout)
        self.start()

    def pause(self) -> None:
        container_id = self.id()
        try:
            with docker_client.translate_errors('pause',
                                                instance=self.instance):
                self._api.pause(container_id)
        finally:
            self._changed(ROLE_WORKLOAD)

    def unpause(self) -> None:
        """Thaw the workload; a no-op if it is not frozen (Nova's driver
        contract: unpause/resume of a running instance must not fail)."""
        container_id = self.id()
        self._changed(ROLE_WORKLOAD)
        if not self.paused:
            return
        try:
            with docker_client.translate_errors('unpause',
                                                instance=self.instance):
                self._api.unpause(container_id)
        finally:
            self._changed(ROLE_WORKLOAD)

    def remove(self, role: typing.Optional[str] = None) -> None:
        """Remove the container of ``role`` (None: every container of the
        instance), with its anonymous volumes. Idempotent.

        The sandbox goes alongside the others (the engine stops and
        unmounts them in parallel): nothing depends on it once its ports
        are unplugged. The others go one by one, newest first, so a rescue
        container goes before the workload whose filesystem it mounts.
        """
        doomed = [(r, c) for r, c in self.containers
                  if role is None or r == role]
        sandboxes = [c for r, c in doomed if r == ROLE_SANDBOX]
        others = [c for r, c in doomed if r != ROLE_SANDBOX]
        if sandboxes and others:
            with background.Alongside(self._remove_each, sandboxes,
                                      name='remove-%s' % self.instance.uuid):
                self._remove_each(others)
        else:
            self._remove_each(sandboxes or others)
        for found_role, _container_id in doomed:
            self._changed(found_role)
        self.containers = [(r, c) for r, c in self.containers
                           if (r, c) not in doomed]

    def _remove_each(self, ids: typing.List[str]) -> None:
        for container_id in ids:
            self._guests.remove_container(container_id, self.instance.uuid)

    # -- reading -----------------------------------------------------------

    def console_log(self, max_bytes: int) -> bytes:
        """The tail of the workload's log, at most max_bytes."""
        container_id = self.id()
        # Docker can only tail by lines: ask for a few lines and widen
        # until the budget is filled or the whole log came back, so a huge
        # log is never transferred whole and short lines still fill it.
        lines = max(64, max_bytes // 128)
        with docker_client.translate_errors('logs', instance=self.instance):
            while True:
                data = self._api.logs(container_id, stdout=True,
                                      stderr=True, tail=lines)
                if len(data) >= max_bytes or data.count(b'\n') < lines:
                    break
                lines *= 4
        return data[-max_bytes:]

    def stats(self) -> dict:
        container_id = self.id()
        with docker_client.translate_errors('stats', instance=self.instance):
            return self._api.stats(container_id, stream=False)

    # -- the workload's filesystem and commands ----------------------------

    def check_command(self, role: str = ROLE_WORKLOAD) -> None:
        """CommandNotFound (an ImageUnacceptable) if the command of the
        instance's container of ``role`` is not in its image.

        Without an init, ``docker start`` refuses a missing executable;
        under the init the start succeeds and the init's exec fails a
        moment later (exit 127). Look the command up first, as execvp
        would (PATH from the image, the working directory for a relative
        path), so a bad image stays a clear build fault.
        """
        info = self.inspect(role)
        command = info.get('Path')
        if not info['HostConfig'].get('Init') or not command:
            return
        config = info.get('Config') or {}
        env = dict(e.split('=', 1) for e in config.get('Env') or ()
                   if '=' in e)
        if '/' in command:
            candidates = [os.path.join(config.get('WorkingDir') or '/',
                                       command)]
        else:
            candidates = [os.path.join(d or '/', command)
                          for d in env.get('PATH', DEFAULT_PATH).split(':')]
        for path in candidates:
            if self._exists(info['Id'], path):
                return
        raise docker_client.CommandNotFound(
            image_id=info.get('Image') if role != ROLE_WORKLOAD
            else self.instance.image_ref,
            reason=_('exec: "%s": executable file not found in $PATH')
            % command)

    def _exists(self, container_id: str, path: str) -> bool:
        """A path (or a symlink) exists in the container's filesystem:
        HEAD of the archive API, which transfers nothing."""
        with docker_client.translate_errors('stat'):
            response = self._api.head(
                self._api._url('/containers/{0}/archive', container_id),
                params={'path': path}, timeout=CONF.docker.api_timeout)
        return response.status_code == 200

    def inject_keys(self) -> None:
        """The instance's public key in root's authorized_keys, and in the
        image's default user's (Glance property os_admin_user, looked up
        in the image's /etc/passwd), kept with the keys already there,
        before the workload first starts.

        Docker's archive API writes inside the container's root filesystem
        (chrooted) and replaces a symlinked ``.ssh`` with a directory, so
        an image cannot redirect the write onto the host.
        """
        instance = self.instance
        keys = instance.key_data if instance.obj_attr_is_set(
            'key_data') else None
        if not keys or not keys.strip():
            return
        container_id = self.id()
        members = []
        for uid, gid, home in self._key_owners(container_id):
            path = os.path.normpath('/' + home).lstrip('/')
            have = self._read_file(container_id,
                                   '/%s/.ssh/authorized_keys' % path)
            lines = have.splitlines()
            lines += [k for k in keys.strip().splitlines()
                      if k.strip() and k not in lines]
            data = ('\n'.join(lines) + '\n').encode()
            # A missing home is created by Docker (0755, root's).
            members += [(path + '/.ssh', 0o700, None, uid, gid),
                        (path + '/.ssh/authorized_keys', 0o600, data, uid,
                         gid)]
        self._put(container_id, 'inject keys', members)

    def _key_owners(self, container_id: str) -> list:
        """(uid, gid, home) of root and of the image's os_admin_user."""
        owners = [(0, 0, '/root')]
        user = image_property(self.instance, IMAGE_PROP_ADMIN_USER)
        if not user or user == 'root':
            return owners
        for line in self._read_file(container_id,
                                    '/etc/passwd').splitlines():
            fields = line.split(':')
            if len(fields) >= 6 and fields[0] == user and \
                    fields[2].isdigit() and fields[3].isdigit() and \
                    fields[5].startswith('/'):
                entry = (int(fields[2]), int(fields[3]), fields[5])
                if entry[2] != '/root':
                    owners.append(entry)
                return owners
        LOG.warning('Image user %s (os_admin_user) is not in the image\'s '
                    '/etc/passwd: the key goes to root only', user,
                    instance=self.instance)
        return owners

    def inject_files(self, injected_files) -> None:
        """Nova's injected files (personality) at their paths, root's,
        0644, the same way: inside the container's filesystem only."""
        members = []
        for path, content in injected_files or ():
            name = os.path.normpath('/' + path).lstrip('/')
            if not name or name == '.':
                continue
            if isinstance(content, str):
                content = content.encode()
            members.append((name, 0o644, content, 0, 0))
        if members:
            self._put(self.id(), 'inject files', members)

    def set_password(self, user: str, password: str) -> None:
        """The image's own ``chpasswd`` run as root, the password on its
        stdin (never in a command line, which Docker's events would show).

        No chpasswd in the image: SetAdminPasswdNotSupported.
        """
        if any(c in password for c in '\n\r\0'):
            # chpasswd reads user:password lines: a line break would set
            # another user's password.
            raise exception.InstancePasswordSetFailed(
                instance=self.instance.uuid,
                reason=_('the password contains a line break'))
        container_id = self.id()
        with docker_client.translate_errors('set password',
                                            instance=self.instance):
            exec_id = self._api.exec_create(
                container_id, ['chpasswd'], stdin=True, stdout=True,
                stderr=True, user='0')['Id']   # no /etc/passwd needed
            sock = self._api.exec_start(exec_id, socket=True)
        raw = getattr(sock, '_sock', sock)
        try:
            raw.settimeout(CONF.docker.api_timeout)
            raw.sendall(('%s:%s\n' % (user, password)).encode())
            raw.shutdown(socket.SHUT_WR)
            output = b''
            while len(output) < 64 * units.Ki:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                output += chunk
        finally:
            sock.close()
        with docker_client.translate_errors('set password',
                                            instance=self.instance):
            code = self._api.exec_inspect(exec_id)['ExitCode']
        if code in (126, 127) or docker_client.exec_not_found(output):
            raise exception.SetAdminPasswdNotSupported()
        if code != 0:
            # Not the output: it could echo what it was given.
            raise exception.InstancePasswordSetFailed(
                instance=self.instance.uuid,
                reason=_('chpasswd exited %s') % code)

    def _put(self, container_id: str, what: str, members: list) -> None:
        """Unpack (name, mode, bytes or None for a directory, uid, gid)
        members at / of the container."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode='w') as tar:
            for name, mode, content, uid, gid in members:
                info = tarfile.TarInfo(name)
                info.mode, info.uid, info.gid = mode, uid, gid
                if content is None:
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                else:
                    info.size = len(content)
                    tar.addfile(info, io.BytesIO(content))
        with docker_client.translate_errors(what, instance=self.instance):
            self._api.put_archive(container_id, '/', buf.getvalue())

    def _read_file(self, container_id: str, path: str,
                   max_bytes: int = 256 * units.Ki) -> str:
        """A regular file of the container, '' if absent, not a file or
        larger than max_bytes (never read whole into memory)."""
        try:
            stream, stat = self._api.get_archive(container_id, path)
            if stat.get('size', 0) > max_bytes:
                stream.close()
                return ''
            with tarfile.open(fileobj=io.BytesIO(b''.join(stream))) as tar:
                member = tar.next()
                if member is None or not member.isfile():
                    return ''
                return tar.extractfile(member).read().decode(
                    'utf-8', 'replace')
        except docker.errors.NotFound:
            return ''
