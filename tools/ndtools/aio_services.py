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
"""Installing, configuring, starting and stopping the all-in-one's
services. Each step is idempotent and fast when there is nothing to do;
every process started here is recorded (aio_state.State) so that ``down``
stops those and only those. Standard library only.
"""

import os
import re
import shutil
import signal
import subprocess
import threading
import typing

from ndtools import aio_state
from ndtools.aio_state import sh
from ndtools import engine
from ndtools import host

# Debian packages: the services that do not come from PyPI.
DEBS = ('mariadb-server', 'rabbitmq-server', 'ovn-central', 'ovn-host',
        'openvswitch-switch', 'docker.io', 'busybox-static', 'lxcfs',
        'iproute2', 'iptables', 'iputils-ping', 'curl', 'python3-venv',
        'python3-dev', 'gcc', 'btrfs-progs', 'haproxy',
        # The SSH server of the busybox-ssh image (no service of its own).
        'dropbear-bin')

# The OpenStack services, all in one venv (no conflicts between them);
# versions are pinned by tools/aio-constraints.txt. Spelled as the venv
# stamp has always recorded it (two lines), so an existing venv stays.
# websocket-client: the scenario tests' serial console client; selenium:
# the browser tests' (tests/browser) driver of Debian's chromium.
PIP = ('nova==34.0.0 neutron==29.0.0 glance==33.0.0 keystone==30.0.0\n'
       'openstack-placement==16.0.0 python-openstackclient osc-placement '
       'openstacksdk\nuwsgi pymysql stestr testtools websocket-client '
       'selenium')

OVS_SOCK = '/var/run/openvswitch/db.sock'
OVN_CTL = '/usr/share/ovn/scripts/ovn-ctl'
DATABASES = ('keystone', 'placement', 'glance', 'neutron', 'nova_api',
             'nova_cell0', 'nova', 'horizon')
MARIADB_CNF = '/etc/mysql/mariadb.conf.d/99-nova-docker-aio.cnf'
OVN_DBS = ('/var/lib/ovn/ovnnb_db.db', '/var/lib/ovn/ovnsb_db.db')
SERIALPROXY_PORT = 6083
METADATA_PORT = 8775


# -- install ----------------------------------------------------------------

def install_debs(settings: aio_state.Settings,
                 installed: typing.Callable[[str], bool] = host.dpkg_installed,
                 apt_install: typing.Callable = host.apt_install) -> bool:
    """The Debian packages that are missing; docker-cli where docker.io
    (trixie's) does not bring the docker command."""
    missing = apt_missing(DEBS, installed, apt_install)
    if missing is None:
        return False
    if not os.access(settings.docker_cli, os.X_OK):
        print('installing: docker-cli (docker.io has no %s)'
              % settings.docker_cli, flush=True)
        return apt_install(['docker-cli'], recommends=False)
    if not missing:
        print('all present', flush=True)
    return True


def apt_missing(packages: typing.Sequence[str],
                installed: typing.Callable[[str], bool],
                apt_install: typing.Callable) -> typing.Optional[
                    typing.List[str]]:
    """Install those of ``packages`` that are missing (no recommends);
    the list of them, None when apt failed."""
    missing = host.missing_packages(
        (p, lambda p=p: installed(p)) for p in packages)
    if missing:
        print('installing: %s' % ' '.join(missing), flush=True)
        if not apt_install(missing, recommends=False):
            return None
    return missing


def venv_want(top: str) -> str:
    """What the services' venv is built for: the pins, the driver's
    requirements and the packages."""
    return '%s %s' % (host.files_digest([
        os.path.join(top, 'tools/aio-constraints.txt'),
        os.path.join(top, 'requirements.txt')]), PIP)


def install_venv(settings: aio_state.Settings, top: str) -> None:
    """Rebuilt only when the pins or the driver's requirements change;
    pip's cache (~/.cache/pip) makes a rebuild cheap."""
    stamp = os.path.join(settings.venv, '.aio-stamp')
    want = venv_want(top)
    pip = settings.exe('pip')
    if not host.stamp_current(stamp, want):
        if not host.create_venv(settings.python, settings.venv):
            raise aio_state.StepFailed('could not create %s' % settings.venv)
        constraints = os.path.join(top, 'tools/aio-constraints.txt')
        cons = ['-c', constraints] if os.path.getsize(constraints) else []
        sh(pip, 'install', *cons, *PIP.split(), '-r',
           os.path.join(top, 'requirements.txt'))
        if subprocess.run([pip, 'check']).returncode:
            print('pip check reported the above (not fatal)', flush=True)
        host.write_stamp(stamp, want)
    else:
        print('venv up to date', flush=True)
    if not host.pip_install_checkout(settings.venv, top):
        raise aio_state.StepFailed('pip install of %s failed' % top)
    sh(settings.exe('python'), '-c',
       'import nova.virt.docker, novadocker.virt.docker.driver')


def install_tempest(settings: aio_state.Settings, top: str) -> None:
    """Tempest in a venv of its own (its pins differ from the
    services')."""
    constraints = os.path.join(top, 'tools/tempest/constraints.txt')
    stamp = os.path.join(settings.tempest_venv, '.aio-stamp')
    want = host.files_digest([constraints])
    if not host.stamp_current(stamp, want):
        if not host.create_venv(settings.python, settings.tempest_venv):
            raise aio_state.StepFailed('could not create %s'
                                       % settings.tempest_venv)
        sh(os.path.join(settings.tempest_venv, 'bin/pip'), 'install', '-c',
           constraints, 'tempest')
        host.write_stamp(stamp, want)
    else:
        print('tempest venv up to date', flush=True)
    sh(os.path.join(settings.tempest_venv, 'bin/tempest'), '--version')


# -- base services ----------------------------------------------------------

class Services:
    """The all-in-one's services over one aio_state.State."""

    def __init__(self, state: aio_state.State, top: str):
        self.state = state
        self.s = state.s
        self.top = top
        self.dbsyncs: typing.List[typing.Tuple[str, threading.Thread,
                                               typing.List[int]]] = []

    def wait(self, desc: str, seconds: int, check: typing.Callable) -> None:
        if not host.wait_for(check, seconds):
            raise aio_state.StepFailed('timed out after %ds waiting for %s'
                                       % (seconds, desc))

    def start_docker_ovs(self) -> None:
        engine.Engine(self.state).start()
        if host.ovs_ok():
            print('Open vSwitch already running: using it', flush=True)
        else:
            host.start_ovs()
            self.state.mark('ovs')

    def start_lxcfs(self) -> None:
        """LXCFS: instances see their flavor's RAM, vCPUs (CFS quota) and
        uptime."""
        if host.lxcfs_ok():
            print('lxcfs already running: using it', flush=True)
            return
        host.prepare_lxcfs_dir()
        self.state.start_svc('lxcfs', *host.lxcfs_argv())
        self.wait('lxcfs', 30, host.lxcfs_ok)

    def start_mysqld(self) -> None:
        os.makedirs('/run/mysqld', exist_ok=True)
        shutil.chown('/run/mysqld', 'mysql', 'mysql')
        self.state.start_svc('mysqld_safe', '/usr/bin/mysqld_safe')

    def start_mariadb(self) -> None:
        if host.succeeds('mysqladmin', 'ping')():
            print('MariaDB already running: using it', flush=True)
        else:
            with open(MARIADB_CNF, 'w') as cnf:
                cnf.write('[mysqld]\nbind-address = 127.0.0.1\n'
                          'max_connections = 1024\n'
                          'innodb_buffer_pool_size = 64M\n'
                          'performance_schema = off\n'
                          'character-set-server = utf8\n'
                          'collation-server = utf8_general_ci\n')
            self.state.mark('mariadb-cnf')
            self.start_mysqld()
            self.state.mark('mariadb')
            self.wait('MariaDB', 60, host.succeeds('mysqladmin', 'ping'))
        for where in ('localhost', '127.0.0.1'):
            sh('mysql', '-e', "CREATE USER IF NOT EXISTS 'openstack'@'%s' "
               "IDENTIFIED BY '%s'; GRANT ALL ON *.* TO 'openstack'@'%s';"
               % (where, self.s.password, where))
        self.state.mark('db-user')
        for name in DATABASES:
            sh('mysql', '-e', 'DROP DATABASE IF EXISTS aio_%s; '
               'CREATE DATABASE aio_%s' % (name, name))
        self.state.mark('databases')

    def start_rabbitmq(self) -> None:
        if host.succeeds('rabbitmq-diagnostics', '-q', 'ping')():
            print('RabbitMQ already running: using it', flush=True)
            return
        sh('rabbitmq-server', '-detached')
        self.state.mark('rabbitmq')
        # await_startup fails at once while the node is not yet known to
        # epmd: ask again until it waits for real.
        self.wait('RabbitMQ', 120, host.succeeds(
            'rabbitmqctl', '--timeout', '120', 'await_startup'))
        # rabbitmq-server forks epmd (Erlang port mapper), which outlives
        # it.
        found = re.search(r'pid=(\d+)', aio_state.output(
            'ss', '-ltnpH', 'sport = :4369'))
        with open(os.path.join(self.s.run, 'epmd.pid'), 'w') as f:
            f.write(found.group(1) + '\n' if found else '')

    def start_base(self) -> None:
        self.start_docker_ovs()
        self.start_lxcfs()
        self.start_mariadb()
        self.start_rabbitmq()

    # -- OVN -----------------------------------------------------------------

    def start_ovn(self) -> None:
        if host.succeeds('ovn-appctl', '-t', 'ovn-northd', 'version')():
            print('ovn-northd already running: using it', flush=True)
        else:
            # Fresh northbound/southbound databases: Neutron's database is
            # new.
            for path in OVN_DBS + ('/var/lib/ovn/.ovnnb_db.db.~lock~',
                                   '/var/lib/ovn/.ovnsb_db.db.~lock~'):
                if os.path.exists(path):
                    os.unlink(path)
            sh(OVN_CTL, 'start_northd', '--db-nb-addr=127.0.0.1',
               '--db-sb-addr=127.0.0.1', '--db-nb-create-insecure-remote=yes',
               '--db-sb-create-insecure-remote=yes', '--ovn-northd-priority=0')
            self.state.mark('ovn-central')
        # The external network's bridge, with the host's address on it.
        bridge = self.s.ext_bridge
        if not host.succeeds('ovs-vsctl', 'br-exists', bridge)():
            sh('ovs-vsctl', 'add-br', bridge, '--', 'set', 'bridge', bridge,
               'datapath_type=netdev')
            self.state.mark('bridge:' + bridge)
        sh('ip', 'link', 'set', bridge, 'up')
        sh('ip', 'addr', 'replace', '%s/%s' % (
            self.s.ext_host_ip, self.s.ext_cidr.split('/', 1)[1]),
            'dev', bridge)
        # The host is the external subnet's gateway (routers' default
        # route) but forwards nothing that arrives on the bridge: tenant
        # traffic ends here, whatever the host's firewall says.
        sh('sysctl', '-qw', 'net.ipv4.conf.%s.forwarding=0' % bridge)
        if not host.succeeds('ovs-vsctl', 'br-exists', 'br-int')():
            self.state.mark('bridge:br-int')
        # ovn-controller creates br-int itself (userspace datapath); this
        # chassis is also the gateway for routers and floating IPs.
        sh('ovs-vsctl', 'set', 'open_vswitch', '.',
           'external_ids:ovn-remote=tcp:127.0.0.1:6642',
           'external_ids:ovn-encap-type=geneve',
           'external_ids:ovn-encap-ip=127.0.0.1',
           'external_ids:ovn-bridge-datapath-type=netdev',
           'external_ids:ovn-bridge-mappings=public:%s' % bridge,
           'external_ids:ovn-cms-options=enable-chassis-as-gw')
        self.state.mark('ovs-external-ids')
        if host.succeeds('ovn-appctl', '-t', 'ovn-controller', 'version')():
            print('ovn-controller already running: using it', flush=True)
        else:
            sh(OVN_CTL, 'start_controller', '--ovn-controller-priority=0')
            self.state.mark('ovn-controller')
        self.wait('ovn-controller to create br-int', 60,
                  host.succeeds('ovs-vsctl', 'br-exists', 'br-int'))

    # -- Keystone ------------------------------------------------------------

    def setup_keystone(self) -> None:
        conf_dir = os.path.join(self.s.etc, 'keystone')
        os.makedirs(conf_dir, exist_ok=True)
        conf = os.path.join(conf_dir, 'keystone.conf')
        write(conf, '[DEFAULT]\nlog_file = %(logs)s/keystone.log\n'
              '[database]\nconnection = %(db)s/aio_keystone\n'
              '[token]\nprovider = fernet\n'
              '[fernet_tokens]\nkey_repository = %(dir)s/fernet-keys\n'
              '[fernet_receipts]\nkey_repository = %(dir)s/fernet-keys\n'
              '[credential]\nkey_repository = %(dir)s/credential-keys\n'
              # A test cloud's passwords: bcrypt at its default 12 rounds
              # costs 0.4 s of CPU per password login or user made, and
              # Tempest makes about 1300 on 2 cores. Production keeps 12.
              '[identity]\npassword_hash_rounds = 4\n'
              # Validations cached in keystone's one uwsgi process (so no
              # other process can miss a revocation): one uncached
              # validation took 0.42 s on average under Tempest.
              '[cache]\nenabled = true\nbackend = dogpile.cache.memory\n'
              % {'logs': self.s.logs, 'db': self.s.db_url, 'dir': conf_dir})
        manage = [self.s.exe('keystone-manage'), '--config-file', conf]
        sh(*manage, 'db_sync')
        sh(*manage, 'fernet_setup', '--keystone-user', 'root',
           '--keystone-group', 'root')
        sh(*manage, 'credential_setup', '--keystone-user', 'root',
           '--keystone-group', 'root')
        url = 'http://127.0.0.1:5000/v3'
        sh(*manage, 'bootstrap', '--bootstrap-password', self.s.password,
           '--bootstrap-region-id', 'RegionOne', '--bootstrap-admin-url', url,
           '--bootstrap-public-url', url, '--bootstrap-internal-url', url)
        self.state.uwsgi_svc('keystone', 5000, 'keystone.wsgi.api:application',
                             'OS_KEYSTONE_CONFIG_FILES=' + conf)

    # -- configuration files -------------------------------------------------

    def auth_section(self, section: str, user: str) -> str:
        return ('[%s]\nauth_url = http://127.0.0.1:5000/v3\n'
                'auth_type = password\nproject_domain_name = Default\n'
                'user_domain_name = Default\nproject_name = service\n'
                'username = %s\npassword = %s\nregion_name = RegionOne\n'
                % (section, user, self.s.password))

    def authtoken_section(self, user: str) -> str:
        return (self.auth_section('keystone_authtoken', user)
                + 'www_authenticate_uri = http://127.0.0.1:5000/v3\n')

    def privsep_sections(self) -> typing.List[str]:
        """The driver's own privsep contexts, whatever they are named."""
        found = set()
        pattern = re.compile(r'''cfg_section=['"]([a-z_]+)['"]''')
        for root, _, files in os.walk(os.path.join(self.top, 'novadocker')):
            for name in files:
                try:
                    with open(os.path.join(root, name),
                              errors='replace') as f:
                        found.update(pattern.findall(f.read()))
                except OSError:
                    pass
        return sorted(found)

    def write_configs(self) -> None:
        s = self.s
        nova_host = aio_state.chassis_hostname()
        for sub in ('placement', 'glance', 'nova', 'neutron/plugins/ml2'):
            os.makedirs(os.path.join(s.etc, sub), exist_ok=True)
        for sub in ('images', 'nova', 'lock'):
            os.makedirs(os.path.join(s.data, sub), exist_ok=True)
        values = {'logs': s.logs, 'db': s.db_url, 'etc': s.etc,
                  'data': s.data, 'rabbit': s.rabbit, 'host': nova_host,
                  'driver': s.compute_driver, 'sock': OVS_SOCK,
                  'docker_host': s.docker_host}
        write(os.path.join(s.etc, 'placement/placement.conf'),
              '[DEFAULT]\nlog_file = %(logs)s/placement.log\n[api]\n'
              'auth_strategy = keystone\n[placement_database]\n'
              'connection = %(db)s/aio_placement\n' % values
              + self.authtoken_section('placement'))

        shutil.copy(os.path.join(s.venv, 'etc/glance/glance-api-paste.ini'),
                    os.path.join(s.etc, 'glance'))
        write(os.path.join(s.etc, 'glance/glance-api.conf'), GLANCE_CONF
              % values + self.authtoken_section('glance'))

        shutil.copy(os.path.join(s.venv, 'etc/neutron/api-paste.ini'),
                    os.path.join(s.etc, 'neutron'))
        write(os.path.join(s.etc, 'neutron/neutron.conf'), NEUTRON_CONF
              % values + self.authtoken_section('neutron')
              + self.auth_section('nova', 'nova'))
        write(os.path.join(s.etc, 'neutron/plugins/ml2/ml2_conf.ini'),
              ML2_CONF)

        shutil.copy(os.path.join(s.venv, 'etc/nova/api-paste.ini'),
                    os.path.join(s.etc, 'nova'))
        values['helper'] = '%s --config-file %s/nova/nova.conf' % (
            s.exe('privsep-helper'), s.etc)
        write(os.path.join(s.etc, 'nova/nova.conf'), NOVA_CONF % values
              + ''.join('[%s]\nhelper_command = %s\n' % (section,
                                                         values['helper'])
                        for section in self.privsep_sections())
              + self.authtoken_section('nova')
              + self.auth_section('placement', 'placement')
              + self.auth_section('neutron', 'neutron')
              + self.auth_section('service_user', 'nova')
              + 'send_service_user_token = true\n')
        self.write_metadata_configs(values)
        print('nova host = %s, compute_driver = %s' % (nova_host,
                                                       s.compute_driver))

    # -- the metadata service ------------------------------------------------

    def metadata_secret(self) -> str:
        return 'metadata-' + self.s.password

    def write_metadata_configs(self, values: dict) -> None:
        """Nova's metadata API behind Neutron's OVN metadata agent (and
        its haproxy in a namespace per network): nova.conf's half and the
        agent's own file."""
        values = dict(values, secret=self.metadata_secret(),
                      port=METADATA_PORT)
        with open(os.path.join(self.s.etc, 'nova/nova.conf'), 'a') as f:
            f.write(NOVA_METADATA_CONF % values)
        write(os.path.join(self.s.etc, 'neutron/ovn_metadata_agent.ini'),
              OVN_METADATA_AGENT_CONF % values
              + ''.join('[%s]\nhelper_command = %s\n' % (
                  section, self.metadata_agent_helper())
                        for section in NEUTRON_PRIVSEP_SECTIONS))

    def metadata_agent_args(self) -> typing.List[str]:
        return ['--config-file', os.path.join(self.s.etc,
                                              'neutron/neutron.conf'),
                '--config-file', os.path.join(
                    self.s.etc, 'neutron/ovn_metadata_agent.ini')]

    def metadata_agent_helper(self) -> str:
        return ' '.join([self.s.exe('privsep-helper')]
                        + self.metadata_agent_args())

    def start_metadata(self) -> None:
        """Nova's metadata API (uwsgi, as nova-api) and the OVN metadata
        agent, which serves 169.254.169.254 in every network with a
        port on this chassis."""
        self.state.uwsgi_svc('nova-api-metadata', METADATA_PORT,
                             'nova.wsgi.metadata:application',
                             'OS_NOVA_CONFIG_DIR=%s/nova' % self.s.etc)
        self.state.start_svc('neutron-ovn-metadata-agent',
                             self.s.exe('neutron-ovn-metadata-agent'),
                             *self.metadata_agent_args())
        url = 'http://127.0.0.1:%d/' % METADATA_PORT
        self.wait('the metadata API on port %d' % METADATA_PORT, 180,
                  lambda: aio_state.http_ok(url))

    def stop_metadata_proxies(self) -> None:
        """What the agent leaves behind when it stops: its haproxies, the
        ovnmeta-<network> namespaces and their veths' OVS ports."""
        pids = os.path.join(self.s.data, 'neutron/external/pids')
        for name in sorted(os.listdir(pids)) if os.path.isdir(pids) else []:
            path = os.path.join(pids, name)
            try:
                with open(path) as f:
                    pid = int(f.read().strip())
                with open('/proc/%d/comm' % pid) as f:
                    comm = f.read().strip()
            except (OSError, ValueError):
                comm = None
            if comm == 'haproxy':
                os.kill(pid, signal.SIGTERM)
                print('stopped haproxy (pid %d)' % pid, flush=True)
            remove(path)
        for line in aio_state.output('ip', 'netns', 'list').splitlines():
            namespace = line.split()[0] if line.split() else ''
            if not namespace.startswith(METADATA_NETNS_PREFIX):
                continue
            # The agent's veth: tap<network id[:10]>0 on the host side.
            veth = 'tap%s0' % namespace[len(METADATA_NETNS_PREFIX):][:10]
            subprocess.run(['ovs-vsctl', '--if-exists', 'del-port', veth])
            subprocess.run(['ip', 'netns', 'delete', namespace])
            subprocess.run(['ip', 'link', 'delete', veth],
                           stderr=subprocess.DEVNULL)
            print('removed namespace %s and %s' % (namespace, veth),
                  flush=True)

    def neutron_conf_args(self) -> typing.List[str]:
        return ['--config-file', os.path.join(self.s.etc,
                                              'neutron/neutron.conf'),
                '--config-file', os.path.join(
                    self.s.etc, 'neutron/plugins/ml2/ml2_conf.ini')]

    def nova_manage(self) -> typing.List[str]:
        return [self.s.exe('nova-manage'), '--config-file',
                os.path.join(self.s.etc, 'nova/nova.conf')]

    # -- database migrations, in the background ---------------------------

    def start_dbsyncs(self) -> None:
        """The four schema migrations run in threads while Keystone's
        catalog is made; wait_dbsyncs collects them."""
        s = self.s
        manage = self.nova_manage()
        jobs = {
            'placement': [[s.exe('placement-manage'), '--config-file',
                           os.path.join(s.etc, 'placement/placement.conf'),
                           'db', 'sync']],
            'glance': [[s.exe('glance-manage'), '--config-file',
                        os.path.join(s.etc, 'glance/glance-api.conf'),
                        'db_sync']],
            'neutron': [[s.exe('neutron-db-manage')]
                        + self.neutron_conf_args() + ['upgrade', 'heads']],
            'nova': [manage + ['api_db', 'sync'],
                     manage + ['cell_v2', 'map_cell0', '--database_connection',
                               s.db_url + '/aio_nova_cell0'],
                     manage + ['db', 'sync'],
                     manage + ['cell_v2', 'create_cell', '--name', 'cell1']],
        }
        for name, commands in jobs.items():
            result = [1]
            log = os.path.join(s.logs, 'dbsync-%s.log' % name)
            # A daemon thread: a step failing before wait_dbsyncs exits
            # at once (the migrations go on, as background jobs did).
            thread = threading.Thread(target=run_in_order, daemon=True,
                                      args=(commands, log, result))
            thread.start()
            self.dbsyncs.append((name, thread, result))
        print('started: %s' % ' '.join(n for n, _, _ in self.dbsyncs))

    def wait_dbsyncs(self) -> bool:
        ok = True
        for name, thread, result in self.dbsyncs:
            thread.join()
            log = os.path.join(self.s.logs, 'dbsync-%s.log' % name)
            if result[0] == 0:
                print('%s: ok' % name)
            else:
                print('%s: FAILED, see %s' % (name, log))
                with open(log, errors='replace') as f:
                    print(''.join(f.readlines()[-15:]), end='')
                ok = False
        return ok

    def write_rc_files(self) -> None:
        s = self.s
        for user in ('admin', 'demo'):
            write(os.path.join(s.aio_dir, user + 'rc'), RC_FILE % {
                'user': user, 'pw': s.password, 'bin': s.bin})
        write(s.clouds_yaml, CLOUDS_YAML % {'path': s.clouds_yaml} + ''.join(
            CLOUD % {'cloud': cloud, 'user': user, 'pw': s.password}
            for cloud, user in (('aio', 'demo'), ('aio-admin', 'admin'))))

    # -- OpenStack services --------------------------------------------------

    def start_apis(self) -> None:
        etc = self.s.etc
        self.state.uwsgi_svc('placement', 8778, 'placement.wsgi.api:'
                             'application', 'OS_PLACEMENT_CONFIG_DIR=%s/'
                             'placement' % etc)
        self.state.uwsgi_svc('glance', 9292, 'glance.wsgi.api:application',
                             'OS_GLANCE_CONFIG_DIR=%s/glance' % etc)
        self.state.uwsgi_svc('neutron-api', 9696,
                             'neutron.wsgi.api:application',
                             'OS_NEUTRON_CONFIG_DIR=%s/neutron' % etc,
                             'OS_NEUTRON_CONFIG_FILES=neutron.conf;'
                             'plugins/ml2/ml2_conf.ini')
        self.state.start_svc('neutron-ovn-maint',
                             self.s.exe('neutron-ovn-maintenance-worker'),
                             *self.neutron_conf_args())
        self.state.start_svc('neutron-periodic',
                             self.s.exe('neutron-periodic-workers'),
                             *self.neutron_conf_args())
        self.state.uwsgi_svc('nova-api', 8774,
                             'nova.wsgi.osapi_compute:application',
                             'OS_NOVA_CONFIG_DIR=%s/nova' % etc)
        self.start_metadata()
        for port in (8778, 9292, 9696, 8774):
            url = 'http://127.0.0.1:%d/' % port
            self.wait('the API on port %d (logs: %s/*.out)' % (
                port, self.s.logs), 180, lambda url=url: aio_state.http_ok(
                    url))
        print('APIs answer')

    def start_serialproxy(self) -> None:
        """nova-serialproxy: the websocket of ``openstack console url show
        --serial``, relayed to the driver's TCP listener."""
        self.state.start_svc('nova-serialproxy',
                             self.s.exe('nova-serialproxy'), '--config-file',
                             os.path.join(self.s.etc, 'nova/nova.conf'))
        self.wait('nova-serialproxy on port %d' % SERIALPROXY_PORT, 60,
                  lambda: aio_state.port_open('127.0.0.1', SERIALPROXY_PORT))

    def start_nova_services(self, cloud: typing.Callable) -> None:
        nova_conf = os.path.join(self.s.etc, 'nova/nova.conf')
        self.start_serialproxy()
        for name in ('conductor', 'scheduler', 'compute'):
            self.state.start_svc('nova-' + name, self.s.exe('nova-' + name),
                                 '--config-file', nova_conf)
        if cloud('wait-compute', '--timeout', '180', '--pid',
                 str(self.state.pid('nova-compute'))) != 0:
            print('--- %s/nova-compute.out:' % self.s.logs)
            with open(os.path.join(self.s.logs, 'nova-compute.out'),
                      errors='replace') as f:
                print(''.join(f.readlines()[-15:]), end='')
            print('--- errors in %s/nova.log:' % self.s.logs)
            with open(os.path.join(self.s.logs, 'nova.log'),
                      errors='replace') as f:
                errors = [line for line in f
                          if re.search(' (ERROR|CRITICAL) ', line)]
            print(''.join(errors[-8:]), end='', flush=True)
            raise aio_state.StepFailed('nova-compute did not come up')
        sh(*self.nova_manage(), 'cell_v2', 'discover_hosts', '--verbose')

    # -- stop ----------------------------------------------------------------

    def stop_openstack(self) -> None:
        """All at once (each takes a few seconds to drain), compute
        first."""
        threads = [threading.Thread(target=self.state.stop_pid, args=(name,))
                   for name in reversed(aio_state.SERVICES)
                   if self.state.marked('svc:' + name)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.stop_metadata_proxies()

    def stop_base(self) -> None:
        state = self.state
        if state.marked('ovn-controller'):
            if host.succeeds('ovn-appctl', '-t', 'ovn-controller', 'exit')():
                print('stopped ovn-controller', flush=True)
        if state.marked('ovn-central'):
            if subprocess.run([OVN_CTL, 'stop_northd']).returncode == 0:
                print('stopped OVN central (northd, NB and SB databases)',
                      flush=True)
        if state.marked('rabbitmq'):
            if subprocess.run(['rabbitmqctl', '-q', 'shutdown']
                              ).returncode == 0:
                print('stopped RabbitMQ', flush=True)
            epmd = state.pid('epmd')
            if host.pid_alive(epmd):
                os.kill(epmd, signal.SIGTERM)
                print('stopped epmd (pid %d)' % epmd, flush=True)
            remove(os.path.join(self.s.run, 'epmd.pid'))
        if state.marked('mariadb'):
            if subprocess.run(['mysqladmin', 'shutdown']).returncode == 0:
                print('stopped MariaDB', flush=True)
            state.stop_pid('mysqld_safe')
        engine.Engine(state).stop()
        # lxcfs unmounts on SIGTERM; containers started since see a dead
        # view.
        if state.marked('svc:lxcfs'):
            state.stop_pid('lxcfs')
        if state.marked('ovs'):
            subprocess.run([host.OVS_CTL, 'stop'])
        state.unmark_processes()


def run_in_order(commands: typing.List[typing.List[str]], log_path: str,
                 result: typing.List[int]) -> None:
    """Commands one after the other into one log, until one fails; its
    exit code in result[0]."""
    with open(log_path, 'w') as log:
        for argv in commands:
            code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL).returncode
            if code:
                result[0] = code
                return
    result[0] = 0


def write(path: str, text: str) -> None:
    with open(path, 'w') as f:
        f.write(text)


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


GLANCE_CONF = '''[DEFAULT]
log_file = %(logs)s/glance.log
enabled_backends = fs:file
[database]
connection = %(db)s/aio_glance
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = %(data)s/images
[image_format]
container_formats = bare,docker,ovf,ova,compressed
disk_formats = raw,qcow2
[paste_deploy]
flavor = keystone
config_file = %(etc)s/glance/glance-api-paste.ini
[oslo_concurrency]
lock_path = %(data)s/lock
'''

NEUTRON_CONF = '''[DEFAULT]
log_file = %(logs)s/neutron.log
core_plugin = ml2
service_plugins = ovn-router,auto_allocate
auth_strategy = keystone
api_paste_config = %(etc)s/neutron/api-paste.ini
transport_url = %(rabbit)s
# Neutron sends Nova's events in batches, sleeping this long after each: a
# port's network-vif-plugged, soon after its network-changed, waited out the
# default 2 s (a container is up well before). 1 is the least it takes.
send_events_interval = 1
[database]
connection = %(db)s/aio_neutron
[oslo_concurrency]
lock_path = %(data)s/lock
'''

ML2_CONF = '''[ml2]
mechanism_drivers = ovn
type_drivers = local,flat,geneve
tenant_network_types = geneve
extension_drivers = port_security
overlay_ip_version = 4
[ml2_type_geneve]
vni_ranges = 1:4096
max_header_size = 38
[ml2_type_flat]
flat_networks = public
[ovn]
ovn_nb_connection = tcp:127.0.0.1:6641
ovn_sb_connection = tcp:127.0.0.1:6642
ovn_metadata_enabled = true
'''

NOVA_CONF = '''[DEFAULT]
# Must be the OVN chassis hostname, or OVN does not bind the ports.
host = %(host)s
my_ip = 127.0.0.1
state_path = %(data)s/nova
instances_path = %(data)s/nova/instances
log_file = %(logs)s/nova.log
transport_url = %(rabbit)s
compute_driver = %(driver)s
allow_resize_to_same_host = true
vif_plugging_timeout = 60
# Container-sized capacity (README "Capacity"): a vCPU is a CFS quota,
# not a reserved core; RAM is a hard limit, kept 1:1 above what the
# cloud's own services take; root_gb is a quota on the writable layer
# (image layers are shared), so a tiny instance uses far less disk.
cpu_allocation_ratio = 64.0
ram_allocation_ratio = 1.0
reserved_host_memory_mb = 4096
disk_allocation_ratio = 4.0
reserved_host_disk_mb = 2048
[wsgi]
api_paste_config = %(etc)s/nova/api-paste.ini
[api_database]
connection = %(db)s/aio_nova_api
[database]
connection = %(db)s/aio_nova
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 5
[filter_scheduler]
# Nova's defaults plus the scheduler hints same_host/different_host: what
# places servers on distinct nodes (tests, Tempest's multi-node tests).
enabled_filters = ComputeFilter,ComputeCapabilitiesFilter,
    ImagePropertiesFilter,ServerGroupAntiAffinityFilter,
    ServerGroupAffinityFilter,SameHostFilter,DifferentHostFilter
[oslo_concurrency]
lock_path = %(data)s/lock
[vnc]
enabled = false
[serial_console]
# The driver's per-instance TCP listeners, which nova-serialproxy (the
# websocket side, :6083) connects to.
enabled = true
base_url = ws://127.0.0.1:6083/
proxyclient_address = 127.0.0.1
serialproxy_host = 127.0.0.1
[workarounds]
# The services run as root: no sudo, no rootwrap. privsep daemons start
# from the venv directly (helper_command below).
disable_rootwrap = true
[docker]
api_url = %(docker_host)s
ovsdb_connection = unix:%(sock)s
[os_vif_ovs]
ovsdb_connection = unix:%(sock)s
[vif_plug_ovs_privileged]
helper_command = %(helper)s
[vif_plug_linux_bridge_privileged]
helper_command = %(helper)s
[nova_sys_admin]
helper_command = %(helper)s
'''

# Appended to nova.conf (oslo.config merges a repeated section).
NOVA_METADATA_CONF = '''[neutron]
service_metadata_proxy = true
metadata_proxy_shared_secret = %(secret)s
'''

OVN_METADATA_AGENT_CONF = '''[DEFAULT]
log_file = %(logs)s/neutron-ovn-metadata-agent.log
state_path = %(data)s/neutron
nova_metadata_host = 127.0.0.1
nova_metadata_port = %(port)d
metadata_proxy_shared_secret = %(secret)s
[agent]
# The agent runs as root: haproxy and ip netns without sudo.
root_helper =
[ovs]
ovsdb_connection = unix:%(sock)s
[ovn]
ovn_sb_connection = tcp:127.0.0.1:6642
[oslo_concurrency]
lock_path = %(data)s/lock
'''

# neutron.privileged's contexts, which the agent starts from the venv.
NEUTRON_PRIVSEP_SECTIONS = ('privsep', 'privsep_dhcp_release',
                            'privsep_ovs_vsctl', 'privsep_namespace',
                            'privsep_conntrack', 'privsep_link')
METADATA_NETNS_PREFIX = 'ovnmeta-'

RC_FILE = '''export OS_AUTH_URL=http://127.0.0.1:5000/v3 OS_USERNAME=%(user)s \
OS_PASSWORD=%(pw)s OS_PROJECT_NAME=%(user)s
export OS_USER_DOMAIN_ID=default OS_PROJECT_DOMAIN_ID=default \
OS_IDENTITY_API_VERSION=3 OS_REGION_NAME=RegionOne
export PATH=%(bin)s:$PATH
'''

CLOUDS_YAML = '''\
# export OS_CLIENT_CONFIG_FILE=%(path)s OS_CLOUD=aio   (or aio-admin)
clouds:
'''

CLOUD = '''\
  %(cloud)s:
    auth: {auth_url: 'http://127.0.0.1:5000/v3', username: %(user)s, \
password: '%(pw)s',
           project_name: %(user)s, user_domain_id: default, \
project_domain_id: default}
    region_name: RegionOne
    identity_api_version: 3
'''
