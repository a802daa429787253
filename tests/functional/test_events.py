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

"""Docker events reach Nova as lifecycle events."""

import queue
import time

from nova.virt import event as virtevent

from novadocker.virt.docker import events
from tests.functional import base


class LifecycleEventTest(base.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.received = queue.Queue()
        self.driver.register_event_listener(self.received.put)
        self.addCleanup(self.driver.register_event_listener, None)

    def wait_for(self, uuid, transition):
        """Next event for uuid with the transition (others are skipped)."""
        seen = []
        while True:
            try:
                event = self.received.get(timeout=30)
            except queue.Empty:
                self.fail('no %s event for %s; saw %s' % (
                    virtevent.NAMES[transition], uuid, seen))
            seen.append((event.get_instance_uuid(), event.get_name()))
            if event.get_instance_uuid() == uuid and \
                    event.get_transition() == transition:
                return event

    def wait_for_past_event(self, container, action, since_ns):
        def logged():
            now = time.time_ns()
            return any(
                event.get('Action') == action
                for event in self.api.events(
                    since='%d.%09d' % divmod(since_ns, 10 ** 9),
                    until='%d.%09d' % divmod(now, 10 ** 9), decode=True,
                    filters={'type': 'container', 'container': container}))
        deadline = time.monotonic() + 10
        while not logged():
            self.assertLess(time.monotonic(), deadline,
                            'no %s event for %s' % (action, container))
            time.sleep(0.01)

    def test_workload_killed_outside_nova_emits_stopped(self):
        instance = self.spawn()
        container = self.driver._guests.get(instance).workload_id
        self.api.kill(container)   # behind Nova's back
        self.wait_for(instance.uuid, virtevent.EVENT_LIFECYCLE_STOPPED)

    def test_pause_and_start_are_reported(self):
        instance = self.spawn()
        self.driver.pause(instance)
        self.wait_for(instance.uuid, virtevent.EVENT_LIFECYCLE_PAUSED)
        self.driver.unpause(instance)
        self.wait_for(instance.uuid, virtevent.EVENT_LIFECYCLE_RESUMED)
        self.driver.power_off(instance, timeout=0)
        self.wait_for(instance.uuid, virtevent.EVENT_LIFECYCLE_STOPPED)
        self.driver.power_on(self.context, instance, [])
        self.wait_for(instance.uuid, virtevent.EVENT_LIFECYCLE_STARTED)

    def test_a_new_listener_does_not_replay_what_happened_before_it(self):
        # nova-compute restarting: a container stopped while it was down,
        # in the same second as the new listener starts. init_host deals
        # with that state; a replayed "stopped" event would make Nova stop
        # the server init_host is bringing back (seen in CI).
        instance = self.spawn()
        workload = self.driver._guests.get(instance).workload_id
        received = queue.Queue()
        time.sleep(1 - time.time() % 1)    # just after a second begins
        before = time.time_ns()
        self.api.stop(workload, timeout=0)
        # Docker 26 logs the "die" a few ms after stop returned (measured:
        # 1 to 43 ms): the listener must start after it happened.
        self.wait_for_past_event(workload, 'die', before)
        listener = events.EventListener(lambda: self.api, self.host,
                                        received.put)
        listener.start()
        self.addCleanup(listener.stop)
        time.sleep(0.5)      # the stream is open; still the same second
        self.api.start(workload)
        event = received.get(timeout=30)
        self.assertEqual(instance.uuid, event.get_instance_uuid())
        self.assertEqual(virtevent.EVENT_LIFECYCLE_STARTED,
                         event.get_transition(),
                         'the stop made before the listener was replayed')
