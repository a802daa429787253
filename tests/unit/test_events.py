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

import threading
from unittest import mock

import docker
from nova.virt import event as virtevent
import testtools

from novadocker.virt.docker import events
from novadocker.virt.docker import guest


def docker_event(action, role=guest.ROLE_WORKLOAD, uuid='u-1',
                 kind='container'):
    return {'Type': kind, 'Action': action, 'time': 1700000000,
            'timeNano': 1700000000123456789,
            'Actor': {'ID': 'c1', 'Attributes': {
                guest.LABEL_INSTANCE: uuid, guest.LABEL_ROLE: role}}}


class EventTimeTest(testtools.TestCase):

    def test_docker_time_keeps_nanoseconds(self):
        self.assertEqual('1700000000.000000001',
                         events.docker_time(1700000000000000001))
        self.assertEqual('5.120000000', events.docker_time(5120000000))

    def test_event_time_from_time_nano_else_seconds(self):
        self.assertEqual(1700000000123456789,
                         events.event_time_ns(docker_event('start')))
        self.assertEqual(7 * 10 ** 9, events.event_time_ns({'time': 7}))
        self.assertEqual(0, events.event_time_ns({}))


class ToLifecycleEventTest(testtools.TestCase):

    def test_transitions(self):
        for action, transition in (
                ('start', virtevent.EVENT_LIFECYCLE_STARTED),
                ('die', virtevent.EVENT_LIFECYCLE_STOPPED),
                ('pause', virtevent.EVENT_LIFECYCLE_PAUSED),
                ('unpause', virtevent.EVENT_LIFECYCLE_RESUMED)):
            event = events.to_lifecycle_event(docker_event(action))
            self.assertEqual(('u-1', transition),
                             (event.get_instance_uuid(),
                              event.get_transition()))

    def test_ignored(self):
        for message in (docker_event('create'), docker_event('exec_start'),
                        docker_event('die', role=guest.ROLE_SANDBOX),
                        docker_event('die', kind='image'),
                        docker_event('die', uuid=None)):
            self.assertIsNone(events.to_lifecycle_event(message), message)


class ChangedInstanceTest(testtools.TestCase):

    def test_state_changes_of_any_role(self):
        for action in ('create', 'start', 'die', 'oom', 'pause', 'unpause',
                       'destroy'):
            for role in (guest.ROLE_WORKLOAD, guest.ROLE_SANDBOX, 'rescue'):
                self.assertEqual('u-1', events.changed_instance(
                    docker_event(action, role=role)), (action, role))

    def test_not_a_state_change(self):
        for message in (docker_event('exec_start'), docker_event('attach'),
                        docker_event('archive-path'),
                        docker_event('start', kind='image'),
                        docker_event('start', uuid=None)):
            self.assertIsNone(events.changed_instance(message), message)


class EventListenerTest(testtools.TestCase):

    def test_every_change_of_the_host_reaches_on_change(self):
        """The cached states hear of sandbox and rescue containers too;
        only the workload's transitions become lifecycle events."""
        api = mock.create_autospec(docker.APIClient, instance=True)
        emitted, changed = [], []
        api.events.side_effect = [iter([
            docker_event('die', role=guest.ROLE_SANDBOX, uuid='u-1'),
            docker_event('exec_die', uuid='u-2'),
            docker_event('pause', uuid='u-3')])]
        listener = events.EventListener(lambda: api, 'host-1',
                                        emitted.append,
                                        on_change=changed.append)
        listener._stopping.wait = lambda t: listener._stopping.set()
        listener._run()
        self.assertEqual(['u-1', 'u-3'], changed)
        self.assertEqual([('u-3', virtevent.EVENT_LIFECYCLE_PAUSED)],
                         [(e.get_instance_uuid(), e.get_transition())
                          for e in emitted])
        self.assertEqual({'type': 'container',
                          'label': ['org.openstack.nova.host=host-1']},
                         api.events.call_args.kwargs['filters'])

    def test_reconnects_and_replays_from_last_event(self):
        """A broken stream (dockerd restart) is reopened from the time of
        the last event seen, so transitions in the gap are not lost."""
        api = mock.create_autospec(docker.APIClient, instance=True)
        emitted = []
        done = threading.Event()

        def first_stream(**kwargs):
            yield docker_event('die')
            raise docker.errors.APIError('engine went away')

        def second_stream(**kwargs):
            yield docker_event('start')
            done.set()
            return
            yield

        api.events.side_effect = [first_stream(), second_stream(),
                                  iter(())]
        listener = events.EventListener(lambda: api, 'host-1', emitted.append)
        with mock.patch.object(events.time, 'time_ns',
                               return_value=1600000000000000042):
            listener._stopping.wait = lambda t: done.is_set() and \
                listener._stopping.set()
            listener._run()
        self.assertEqual([virtevent.EVENT_LIFECYCLE_STOPPED,
                          virtevent.EVENT_LIFECYCLE_STARTED],
                         [e.get_transition() for e in emitted])
        first, second = api.events.call_args_list[:2]
        # To the nanosecond: the start, then just after the last event.
        self.assertEqual('1600000000.000000042', first.kwargs['since'])
        self.assertEqual('1700000000.123456790', second.kwargs['since'])
        self.assertIn('org.openstack.nova.host=host-1',
                      first.kwargs['filters']['label'])
