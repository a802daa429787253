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

"""The warm sandbox pool (``[docker]sandbox_pool_size``): sandboxes created
and started ahead of the spawns that take them, so a spawn makes and starts
only its workload.

A free member is named ``nova-pool-<random>`` and labelled with this host,
the sandbox role and ``LABEL_POOL``, never with an instance: nothing that
counts or reaps instances sees it. A spawn claims one by renaming it to the
instance's sandbox name (``guest.instance_of`` reads the owner back from
that name; ``identity`` gives it the instance's hostname and DNS); a claimed
member is the instance's sandbox from then on, removed with it (or by the
reaper).

One native thread keeps the pool at its size: it refills after each claim,
removes members beyond the size (the option lowered) and free members it
does not know (one whose creation answered with an error, a member left by
an earlier run), and backs off while the engine is away. ``reconcile`` runs
the same pass at start-up, before the first spawn.
"""

import collections
import os
import threading
import time
import typing
import uuid as uuid_mod

from oslo_log import log as logging

from novadocker import conf
from novadocker.virt.docker import guest as guest_mod

CONF = conf.CONF
LOG = logging.getLogger(__name__)

POOL_PREFIX = 'nova-pool-'
# Seconds between two refill attempts while they fail (engine away).
RETRY_INTERVAL = 10.0


class Member(typing.NamedTuple):
    """A free pool sandbox: its ID and the directory of its hostname and
    resolv.conf files (where ``identity.write_files`` writes)."""
    container_id: str
    files_dir: str


def _name(container: dict) -> str:
    return (container.get('Names') or ['/'])[0].lstrip('/')


def is_free(container: dict) -> bool:
    """A listed pool sandbox nobody claimed (still named as the pool's)."""
    return _name(container).startswith(POOL_PREFIX) and \
        guest_mod.instance_of(container.get('Labels'),
                              container.get('Names')) is None


def member_of(inspected: dict) -> Member:
    return Member(inspected['Id'],
                  os.path.dirname(inspected['HostnamePath']))


class SandboxPool:
    """The pool of one driver. Thread-safe: spawns claim from any thread.

    :param guests: returns the host's ``guest.Guests``
    :param image_id: returns the sandbox image's Docker ID
    :param size: returns the wanted size (default: the option, read at
        each pass, so a lowered option shrinks the pool)
    """

    def __init__(self, guests: typing.Callable[[], guest_mod.Guests],
                 image_id: typing.Callable[[], str],
                 size: typing.Optional[typing.Callable[[], int]] = None):
        self._guests = guests
        self._image_id = image_id
        self._size = size or (lambda: CONF.docker.sandbox_pool_size)
        self._lock = threading.Lock()
        self._free: typing.Deque[Member] = collections.deque()
        # Members being claimed (renamed): listed as free, not strays.
        self._busy: typing.Set[str] = set()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: typing.Optional[threading.Thread] = None

    @property
    def free(self) -> int:
        with self._lock:
            return len(self._free)

    # -- claiming ----------------------------------------------------------

    def claim(self) -> typing.Optional[Member]:
        """A free member for a spawn, or None (pool off or empty: the
        spawn creates its sandbox). The caller renames it (``claimed``
        after, whatever happened) and the pool refills behind it."""
        if self._size() <= 0:
            return None
        with self._lock:
            if not self._free:
                member = None
            else:
                member = self._free.popleft()
                self._busy.add(member.container_id)
        self._wake.set()
        return member

    def refill(self) -> None:
        """Ask the refill thread for a pass now (the engine is back, the
        size changed)."""
        self._wake.set()

    def wait_full(self, timeout: float = 60) -> bool:
        """Refill now and wait until the pool has its size (benchmarks,
        tests: boots spaced more than a refill apart); False on timeout."""
        self.refill()
        deadline = time.monotonic() + timeout
        while self.free < self._size():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def claimed(self, member: Member) -> None:
        """The rename of a claimed member is over (done or failed)."""
        with self._lock:
            self._busy.discard(member.container_id)

    # -- keeping it at its size --------------------------------------------

    def reconcile(self) -> None:
        """One pass: adopt the free members the engine has (running, from
        the current sandbox image) up to the size, remove the others,
        create what is missing. Raises what the engine raises."""
        guests = self._guests()
        image_id = self._image_id()
        size = self._size()
        # Known before listing: a member claimed (and renamed) meanwhile
        # is either in it or listed under its instance's name.
        with self._lock:
            known = {m.container_id for m in self._free} | self._busy
        listed = [c for c in guests.list_pool() if is_free(c)]
        doomed = []
        for container in listed:
            cid = container['Id']
            if cid in known:
                continue
            usable = (container.get('State') == 'running' and
                      container.get('ImageID') == image_id)
            with self._lock:
                adopt = usable and len(self._free) < size
            if adopt:
                try:
                    member = member_of(guests.inspect_pool_sandbox(cid))
                except Exception as exc:
                    LOG.info('Pool sandbox %s: cannot inspect it (%s); '
                             'removing it', _name(container), exc)
                    doomed.append(cid)
                    continue
                with self._lock:
                    self._free.append(member)
            else:
                doomed.append(cid)
        with self._lock:
            while len(self._free) > size:
                doomed.append(self._free.pop().container_id)
        for cid in doomed:
            guests.remove_pool_sandbox(cid)
        if doomed:
            LOG.info('Sandbox pool: removed %d stale or extra member(s)',
                     len(doomed))
        self._fill(guests, image_id, size)

    def _fill(self, guests, image_id: str, size: int) -> None:
        while not self._stopping.is_set():
            with self._lock:
                if len(self._free) >= size:
                    return
            member = member_of(guests.create_pool_sandbox(
                POOL_PREFIX + uuid_mod.uuid4().hex[:12], image_id))
            with self._lock:
                self._free.append(member)

    def start(self) -> None:
        """The refill thread (native: nova-compute runs native threads)."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name='nova-docker-sandbox-pool')
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Stop refilling; the free members stay, for the next start-up's
        ``reconcile`` (or ``drain``) to adopt or remove."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def drain(self) -> None:
        """Remove every free member (this driver's and strays)."""
        with self._lock:
            self._free.clear()
        guests = self._guests()
        for container in guests.list_pool():
            if is_free(container):
                guests.remove_pool_sandbox(container['Id'])

    def _loop(self) -> None:
        wait: typing.Optional[float] = None
        while True:
            self._wake.wait(wait)
            if self._stopping.is_set():
                return
            self._wake.clear()
            try:
                self.reconcile()
                wait = None
            except Exception as exc:
                LOG.warning('Sandbox pool: refill failed, retried in %ds: '
                            '%s', RETRY_INTERVAL, exc)
                wait = RETRY_INTERVAL
