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

"""The reaper: containers of instances Nova no longer has on this host.

A delete or a failed build's clean-up that could not reach the engine
(dockerd down or restarting) leaves the instance's containers behind, and
nothing in Nova comes back for them: a build that failed has no host any
more, so its delete never reaches this compute. The reaper removes every
container labelled with this host whose instance Nova does not list on
this host, and what the instance left on Open vSwitch.

It never touches a container without this host's label, and it never races
a build: containers are listed *before* Nova is asked (a build sets the
instance's host before it creates anything), instances this process is
spawning are skipped, and so are containers younger than
``[docker]reap_min_age``.
"""

import collections
import threading
import time
import typing

from oslo_log import log as logging

from novadocker import conf
from novadocker.virt.docker import guest

CONF = conf.CONF
LOG = logging.getLogger(__name__)


class Pass(typing.NamedTuple):
    """What one pass did: the instances reaped, and in how many seconds
    the youngest unknown container it left alone becomes old enough
    (None: nothing left for later)."""
    reaped: typing.List[str]
    retry_in: typing.Optional[float]


class Reaper:
    """One pass at a time, from any thread.

    :param guests: returns the host's ``guest.Guests``
    :param known_uuids: returns the UUIDs of the instances Nova has on this
        host; raising means "unknown", and nothing is reaped
    :param claim: ``claim(uuid)`` is a context manager yielding False when
        the instance is being spawned (skip it); while it is held, no spawn
        of that instance starts
    :param unplug_leftovers: ``unplug_leftovers(uuid)`` removes the OVS
        ports the instance left
    """

    def __init__(self, host: str, guests: typing.Callable,
                 known_uuids: typing.Callable[[], typing.Iterable[str]],
                 claim: typing.Callable,
                 unplug_leftovers: typing.Callable[[str], typing.Any]):
        self._host = host
        self._guests = guests
        self._known_uuids = known_uuids
        self._claim = claim
        self._unplug_leftovers = unplug_leftovers
        self._lock = threading.Lock()

    def run(self, why: str) -> Pass:
        with self._lock:
            return self._run(why)

    def _run(self, why: str) -> Pass:
        guests = self._guests()
        by_instance = collections.defaultdict(list)
        for container in guests.list_all():
            # A claimed pool sandbox is its instance's; a free one is the
            # pool's (pool.py), never reaped here.
            uuid = guest.instance_of(container.get('Labels'),
                                     container.get('Names'))
            if uuid:
                by_instance[uuid].append(container)
        if not by_instance:
            return Pass([], None)
        # Only now ask Nova: any build whose containers were listed above
        # had its host set before they were created.
        try:
            known = set(self._known_uuids())
        except Exception as exc:
            LOG.warning('Reaper (%(why)s): cannot list the instances Nova '
                        'has on host %(host)s, nothing reaped: %(exc)s',
                        {'why': why, 'host': self._host, 'exc': exc})
            return Pass([], None)
        now = time.time()
        min_age = CONF.docker.reap_min_age
        reaped = []
        retry_in = None
        for uuid, containers in sorted(by_instance.items()):
            if uuid in known:
                continue
            age = now - max(c.get('Created') or now for c in containers)
            if age < min_age:
                wait = min_age - age + 1
                retry_in = wait if retry_in is None else min(retry_in, wait)
                continue
            with self._claim(uuid) as claimed:
                if not claimed:
                    continue   # being spawned right now
                if self._reap(guests, uuid, containers, why):
                    reaped.append(uuid)
        return Pass(reaped, retry_in)

    def _reap(self, guests, uuid: str, containers: list, why: str) -> bool:
        ok = True
        for container in containers:
            name = (container.get('Names') or ['?'])[0].lstrip('/')
            LOG.warning('Reaper (%(why)s): removing container %(name)s '
                        '(%(id)s, %(role)s) of instance %(uuid)s, which '
                        'Nova does not have on host %(host)s',
                        {'why': why, 'name': name,
                         'id': container['Id'][:12],
                         'role': container['Labels'].get(guest.LABEL_ROLE),
                         'uuid': uuid, 'host': self._host})
            try:
                guests.remove_container(container['Id'], uuid)
            except Exception as exc:
                ok = False
                LOG.warning('Reaper: removing container %(name)s failed, '
                            'retried next pass: %(exc)s',
                            {'name': name, 'exc': exc})
        if ok:
            try:
                removed = self._unplug_leftovers(uuid)
                if removed:
                    LOG.warning('Reaper (%(why)s): removed the OVS ports '
                                '%(ports)s of instance %(uuid)s',
                                {'why': why, 'ports': ', '.join(removed),
                                 'uuid': uuid})
            except Exception as exc:
                LOG.warning('Reaper: removing the OVS ports of instance '
                            '%(uuid)s failed: %(exc)s',
                            {'uuid': uuid, 'exc': exc})
        return ok


class ReaperThread:
    """Runs ``run(why)`` every ``interval`` seconds (0: only when
    triggered) and when triggered, in one daemon thread.

    ``run`` returns a :class:`Pass`; when it left young containers for
    later, the next pass comes as soon as they are old enough.
    """

    def __init__(self, run: typing.Callable[[str], typing.Optional[Pass]],
                 interval: int, first_wait: typing.Optional[float] = None):
        self._run = run
        self._interval = interval
        self._first_wait = first_wait
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._why: typing.Optional[str] = None
        self._thread: typing.Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name='nova-docker-reaper')
        self._thread.start()

    def trigger(self, why: str) -> None:
        """Ask for a pass now (e.g. the engine is back)."""
        self._why = why
        self._wake.set()

    def stop(self, timeout: float = 10) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        wait: typing.Optional[float] = self._interval or None
        if self._first_wait is not None:
            wait = min(wait or self._first_wait, self._first_wait)
        while True:
            self._wake.wait(wait)
            if self._stopping.is_set():
                return
            self._wake.clear()
            why, self._why = self._why or 'periodic', None
            retry_in = None
            try:
                result = self._run(why)
                retry_in = result.retry_in if result else None
            except Exception:
                LOG.exception('Reaper pass (%s) failed', why)
            wait = self._interval or None
            if retry_in is not None:
                wait = retry_in if wait is None else min(wait, retry_in)
