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

"""Docker container events as Nova lifecycle events.

When a workload exits by itself (its process ends, the OOM killer, someone
runs ``docker stop``), Nova should learn it at once rather than at the next
power-state sync (every 10 minutes by default); libvirt does the same with
its domain events. A daemon thread follows ``docker events`` for this host's
workload containers and hands each transition to the compute manager.

The same stream tells the driver's cached container states (guest.
StateCache) which instances changed, whatever the container's role and
whoever changed it, so the power-state sync never reads a stale state.
"""

import threading
import time
import typing

from nova.virt import event as virtevent
from oslo_log import log as logging

from novadocker.virt.docker import guest

LOG = logging.getLogger(__name__)

# Docker event action -> Nova lifecycle transition.
TRANSITIONS = {
    'start': virtevent.EVENT_LIFECYCLE_STARTED,
    'die': virtevent.EVENT_LIFECYCLE_STOPPED,
    'pause': virtevent.EVENT_LIFECYCLE_PAUSED,
    'unpause': virtevent.EVENT_LIFECYCLE_RESUMED,
}

# Docker container event actions after which a container's state (or its
# existence) may differ: exec_*, attach, top, archive reads do not count.
STATE_CHANGES = frozenset((
    'create', 'start', 'restart', 'die', 'kill', 'oom', 'stop', 'pause',
    'unpause', 'destroy', 'rename', 'update'))


def changed_instance(message: dict) -> typing.Optional[str]:
    """The instance UUID whose containers a Docker event changed, or
    None."""
    if message.get('Type') != 'container' or \
            (message.get('Action') or message.get('status')) \
            not in STATE_CHANGES:
        return None
    attributes = (message.get('Actor') or {}).get('Attributes') or {}
    # A claimed pool sandbox names its instance by its name only.
    return guest.instance_of(attributes, [attributes.get('name') or ''])


def to_lifecycle_event(message: dict) -> typing.Optional[
        virtevent.LifecycleEvent]:
    """The Nova event for one decoded Docker event, or None to ignore it."""
    if message.get('Type') != 'container':
        return None
    transition = TRANSITIONS.get(message.get('Action') or
                                 message.get('status'))
    attributes = (message.get('Actor') or {}).get('Attributes') or {}
    uuid = attributes.get(guest.LABEL_INSTANCE)
    if transition is None or not uuid or \
            attributes.get(guest.LABEL_ROLE) != guest.ROLE_WORKLOAD:
        return None
    return virtevent.LifecycleEvent(uuid, transition)


def docker_time(nanoseconds: int) -> str:
    """A time for the events API's ``since``: seconds and a nanosecond
    fraction, which Docker parses to the nanosecond."""
    return '%d.%09d' % divmod(nanoseconds, 10 ** 9)


def event_time_ns(message: dict) -> int:
    """When an event happened, in nanoseconds (``timeNano``; Docker sends
    it since API 1.22, ``time`` has whole seconds only)."""
    try:
        return int(message['timeNano'])
    except (KeyError, TypeError, ValueError):
        return int(message.get('time', 0)) * 10 ** 9


class EventListener:
    """Follows ``docker events`` and calls ``emit`` for each transition
    of a workload, and ``on_change(uuid)`` for each change of any
    container of this host.

    Reconnects with a short back-off when the engine goes away (a dockerd
    restart), so events resume without a nova-compute restart.
    """

    def __init__(self, api_factory: typing.Callable, host: str,
                 emit: typing.Callable[[virtevent.Event], None],
                 on_reconnect: typing.Optional[
                     typing.Callable[[], None]] = None,
                 on_change: typing.Optional[
                     typing.Callable[[str], None]] = None):
        self._api_factory = api_factory
        self._host = host
        self._emit = emit
        # Called when the stream is back after the engine was away: work
        # that could not reach the engine meanwhile can be finished.
        self._on_reconnect = on_reconnect
        self._on_change = on_change
        self._stopping = threading.Event()
        self._stream = None
        self._thread = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='nova-docker-events')
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:   # closing a dead stream may fail; irrelevant
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        # Every role: a sandbox or rescue container's change matters to
        # the cached states; only workloads' make lifecycle events.
        filters = {'type': 'container',
                   'label': ['%s=%s' % (guest.LABEL_HOST, self._host)]}
        # After a reconnect, replay from just after the last event seen so
        # no transition is lost (Docker keeps a short event history). In
        # nanoseconds: from a whole second, a fresh listener would replay
        # what happened earlier in that second, e.g. a stop made while
        # nova-compute was down, after init_host had already handled it.
        since = time.time_ns()
        lost = False
        while not self._stopping.is_set():
            try:
                api = self._api_factory()
                self._stream = api.events(filters=filters, decode=True,
                                          since=docker_time(since))
                if lost:
                    lost = False
                    LOG.info('Docker event stream reconnected')
                    self._reconnected()
                for message in self._stream:
                    since = max(since, event_time_ns(message) + 1)
                    changed = changed_instance(message)
                    if changed and self._on_change is not None:
                        self._on_change(changed)
                    lifecycle = to_lifecycle_event(message)
                    if lifecycle is not None:
                        LOG.debug('Docker event %s for instance %s',
                                  message.get('Action'),
                                  lifecycle.get_instance_uuid())
                        self._emit(lifecycle)
                # The engine ended the stream: it is going away.
                lost = True
            except Exception as exc:
                if self._stopping.is_set():
                    break
                LOG.warning('Lost the Docker event stream (%s); '
                            'reconnecting', exc)
                lost = True
            self._stopping.wait(2)

    def _reconnected(self) -> None:
        if self._on_reconnect is None:
            return
        try:
            self._on_reconnect()
        except Exception:   # never let it stop the event stream
            LOG.exception('Reconnect handler failed')
