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

"""ovsdb.OVSDB: its lookups, one connection per object, and the real
thing against the host's OVSDB on a bridge of the test's own."""

import time
from unittest import mock
import uuid

import fixtures
from oslo_config import fixture as config_fixture
from ovsdbapp.backend.ovs_idl import connection
from ovsdbapp.schema.open_vswitch import impl_idl
import testtools

from novadocker import conf
from novadocker.virt.docker import ovsdb
from tests.fixtures import docker as docker_fixtures
from tests.fixtures import network as net_fixtures

CONF = conf.CONF


def _result(value):
    """An ovsdbapp command whose execute() returns value."""
    command = mock.Mock(spec=['execute'])
    command.execute.return_value = value
    return command


class LookupTest(testtools.TestCase):
    """The lookups over a specced ovsdbapp API."""

    def setUp(self):
        super().setUp()
        self.cfg = self.useFixture(config_fixture.Config(CONF))
        self.cfg.config(ovsdb_connection='unix:/run/unit-a.sock',
                        group='docker')
        self.api = mock.create_autospec(impl_idl.OvsdbIdl, instance=True)
        self.from_server = self.useFixture(fixtures.MockPatchObject(
            connection.OvsdbIdl, 'from_server', autospec=True)).mock
        self.connection = self.useFixture(fixtures.MockPatchObject(
            connection, 'Connection', autospec=True)).mock
        self.useFixture(fixtures.MockPatchObject(
            impl_idl, 'OvsdbIdl', autospec=True, return_value=self.api))
        self.ovsdb = ovsdb.OVSDB()

    def test_port_exists(self):
        self.api.db_find.return_value = _result([{'name': 'tap1'}])
        self.assertTrue(self.ovsdb.port_exists('tap1'))
        self.api.db_find.assert_called_once_with(
            'Port', ('name', '=', 'tap1'), columns=['name'])
        self.api.db_find.return_value = _result([])
        self.assertFalse(self.ovsdb.port_exists('tap2'))

    def test_instance_interfaces(self):
        self.api.db_find.return_value = _result([
            {'name': 'tap1', 'external_ids': {
                'vm-uuid': 'u', 'iface-id': 'p1',
                'attached-mac': 'fa:16:3e:00:00:01'}},
            {'name': 'tap2', 'external_ids': {'vm-uuid': 'u'}}])
        self.api.port_to_br.side_effect = lambda name: _result(
            'br-int' if name == 'tap1' else None)
        self.api.db_get.return_value = _result('netdev')
        self.assertEqual(
            [{'name': 'tap1', 'bridge': 'br-int', 'datapath_type': 'netdev',
              'iface_id': 'p1', 'mac': 'fa:16:3e:00:00:01'},
             {'name': 'tap2', 'bridge': None, 'datapath_type': 'system',
              'iface_id': None, 'mac': None}],
            self.ovsdb.instance_interfaces('u'))
        self.api.db_find.assert_called_once_with(
            'Interface', ('external_ids', '=', {'vm-uuid': 'u'}),
            columns=['name', 'external_ids'])
        self.api.db_get.assert_called_once_with('Bridge', 'br-int',
                                                'datapath_type')

    def test_failures_name_the_connection(self):
        self.api.db_find.side_effect = RuntimeError('connection refused')
        for lookup in (lambda: self.ovsdb.port_exists('tap1'),
                       lambda: self.ovsdb.instance_interfaces('u')):
            exc = self.assertRaises(ovsdb.OVSDBError, lookup)
            self.assertIn('unix:/run/unit-a.sock', str(exc))
            self.assertIn('connection refused', str(exc))

    def test_add_port_is_one_transaction(self):
        txn = self.api.transaction.return_value.__enter__.return_value
        ids = {'iface-id': 'p1', 'iface-status': 'active',
               'attached-mac': 'fa:16:3e:00:00:01', 'vm-uuid': 'u'}
        self.ovsdb.add_port('br-int', 'tap1', ids)
        self.api.transaction.assert_called_once_with(check_error=True)
        self.api.add_port.assert_called_once_with('br-int', 'tap1',
                                                  may_exist=True)
        self.api.db_set.assert_called_once_with(
            'Interface', 'tap1', ('external_ids', ids))
        self.assertEqual([mock.call(self.api.add_port.return_value),
                          mock.call(self.api.db_set.return_value)],
                         txn.add.call_args_list)

    def test_add_port_failure_names_the_connection(self):
        self.api.transaction.return_value.__exit__.side_effect = \
            RuntimeError('Bridge br-x does not exist')
        exc = self.assertRaises(ovsdb.OVSDBError, self.ovsdb.add_port,
                                'br-x', 'tap1', {'iface-id': 'p1'})
        self.assertIn('unix:/run/unit-a.sock', str(exc))
        self.assertIn('br-x does not exist', str(exc))

    def test_one_connection_opened_on_first_use(self):
        self.from_server.assert_not_called()
        self.api.db_find.return_value = _result([])
        for _ in range(3):
            self.ovsdb.port_exists('tap1')
            self.ovsdb.instance_interfaces('u')
        self.from_server.assert_called_once_with(
            'unix:/run/unit-a.sock', 'Open_vSwitch',
            helper_tables=ovsdb.TABLES)
        self.assertEqual(1, self.connection.call_count)

    def test_a_changed_option_opens_a_new_connection(self):
        self.api.db_find.return_value = _result([])
        self.ovsdb.port_exists('tap1')
        self.cfg.config(ovsdb_connection='unix:/run/unit-b.sock',
                        group='docker')
        self.ovsdb.port_exists('tap1')
        self.ovsdb.port_exists('tap1')
        self.assertEqual(['unix:/run/unit-a.sock', 'unix:/run/unit-b.sock'],
                         [c.args[0] for c in self.from_server.call_args_list])

    def test_each_owner_has_its_own_state(self):
        self.api.db_find.return_value = _result([])
        self.ovsdb.port_exists('tap1')
        ovsdb.OVSDB().port_exists('tap1')
        self.assertEqual(2, self.from_server.call_count)


class RealOVSDBTest(testtools.TestCase):
    """The lookups against the host's OVSDB, on a netdev bridge of the
    test's own with a port os-vif would have tagged."""

    def setUp(self):
        super().setUp()
        docker_fixtures.require_functional(self, ovs=True)
        self.bridge = self.useFixture(net_fixtures.OVSBridge()).name
        self.port = 'ndo%s' % uuid.uuid4().hex[:8]
        self.instance_uuid = str(uuid.uuid4())
        # A port record without a device: OVSDB keeps it (and marks the
        # interface in error); nothing reaches the host's links.
        net_fixtures.ovs_vsctl(
            'add-port', self.bridge, self.port, '--', 'set', 'Interface',
            self.port, 'external_ids:vm-uuid=%s' % self.instance_uuid,
            'external_ids:iface-id=port-1',
            'external_ids:attached-mac=fa:16:3e:00:00:09')
        self.addCleanup(net_fixtures.ovs_vsctl, '--if-exists', 'del-port',
                        self.bridge, self.port)
        self.ovsdb = ovsdb.OVSDB()

    def wait_for(self, check, what: str, timeout: float = 10):
        """The IDL replica follows ovsdb-server asynchronously."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                self.fail('OVSDB replica never showed %s' % what)
            time.sleep(0.05)

    def test_lookups(self):
        self.wait_for(lambda: self.ovsdb.port_exists(self.port),
                      'the port')
        self.assertFalse(self.ovsdb.port_exists(self.port + 'x'))
        self.assertEqual(
            [{'name': self.port, 'bridge': self.bridge,
              'datapath_type': 'netdev', 'iface_id': 'port-1',
              'mac': 'fa:16:3e:00:00:09'}],
            self.ovsdb.instance_interfaces(self.instance_uuid))
        self.assertEqual([], self.ovsdb.instance_interfaces(
            str(uuid.uuid4())))
        net_fixtures.ovs_vsctl('del-port', self.bridge, self.port)
        self.wait_for(lambda: not self.ovsdb.port_exists(self.port),
                      'the port gone')

    def columns(self, name: str) -> dict:
        rows = self.ovsdb.api().db_find(
            'Interface', ('name', '=', name),
            columns=['name', 'external_ids']).execute(check_error=True)
        return rows[0]['external_ids'] if rows else None

    def test_add_port(self):
        name = 'ndo%s' % uuid.uuid4().hex[:8]
        self.addCleanup(net_fixtures.ovs_vsctl, '--if-exists', 'del-port',
                        self.bridge, name)
        ids = {'iface-id': 'port-2', 'iface-status': 'active',
               'attached-mac': 'fa:16:3e:00:00:0a',
               'vm-uuid': self.instance_uuid}
        self.ovsdb.add_port(self.bridge, name, ids)
        # What ovs-vsctl reads from ovsdb-server, not the replica.
        self.assertIn(name, net_fixtures.bridge_ports(self.bridge))
        self.assertEqual(self.bridge, net_fixtures.ovs_vsctl(
            'port-to-br', name).strip())
        self.assertEqual(ids, self.columns(name))
        # Again (a re-plug): the port is kept, its ids replaced.
        ids['iface-id'] = 'port-3'
        self.ovsdb.add_port(self.bridge, name, ids)
        self.assertEqual(1, net_fixtures.bridge_ports(self.bridge).count(
            name))
        self.assertEqual(ids, self.columns(name))

    def test_add_port_to_a_missing_bridge_creates_nothing(self):
        name = 'ndo%s' % uuid.uuid4().hex[:8]
        bridge = 'ndb%s' % uuid.uuid4().hex[:8]
        self.assertRaises(ovsdb.OVSDBError, self.ovsdb.add_port, bridge,
                          name, {'iface-id': 'port-4'})
        self.assertNotIn(bridge, net_fixtures.ovs_vsctl('list-br').split())
        self.assertEqual('', net_fixtures.ovs_vsctl(
            '--columns=name', 'find', 'Interface', 'name=%s' % name).strip())

    def test_connection_is_kept(self):
        first = self.ovsdb.api()
        self.wait_for(lambda: self.ovsdb.port_exists(self.port),
                      'the port')
        self.assertIs(first, self.ovsdb.api())

    def test_unreachable_ovsdb_is_a_nova_exception(self):
        self.useFixture(config_fixture.Config(CONF)).config(
            ovsdb_connection='unix:/run/nd-no-ovsdb-%s.sock'
            % uuid.uuid4().hex[:8], ovsdb_timeout=2, group='docker')
        exc = self.assertRaises(ovsdb.OVSDBError, ovsdb.OVSDB().port_exists,
                                self.port)
        self.assertIn('nd-no-ovsdb', str(exc))
