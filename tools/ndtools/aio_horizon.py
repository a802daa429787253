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
"""The all-in-one's dashboard: Horizon in a venv of its own, served by the
services' uwsgi on a loopback port, its sessions in MariaDB (database
aio_horizon). Its static files are collected and compressed once, when the
venv is built (COMPRESS_OFFLINE), so a later ``up`` only writes the
settings, migrates the sessions table and starts uwsgi. Standard library
only.
"""

import os
import time
import urllib.request

from ndtools import aio_state
from ndtools.aio_state import sh
from ndtools import host

# Pinned by tools/aio-constraints.txt like the services; a venv of its own
# because Django and the XStatic packages have no business in theirs.
PIP = 'horizon==27.0.0 pymysql'
WSGI_MODULE = 'openstack_dashboard.wsgi:application'
# The instance's Console tab: the serial console (nova-serialproxy).
SETTINGS = '''# Written by tools/aio (ndtools.aio_horizon) on every up.
import pymysql

pymysql.install_as_MySQLdb()

DEBUG = False
ALLOWED_HOSTS = ['127.0.0.1', 'localhost']
WEBROOT = '/'
OPENSTACK_HOST = '127.0.0.1'
OPENSTACK_KEYSTONE_URL = 'http://127.0.0.1:5000/v3'
OPENSTACK_KEYSTONE_DEFAULT_DOMAIN = 'Default'
OPENSTACK_KEYSTONE_DEFAULT_ROLE = 'member'
CONSOLE_TYPE = 'SERIAL'
# The Console tab frames the dashboard's own serial console page
# (.../serial, which opens the websocket to nova-serialproxy); Django's
# default X-Frame-Options DENY makes the browser refuse that frame.
# SAMEORIGIN lets only the dashboard frame its own pages.
X_FRAME_OPTIONS = 'SAMEORIGIN'
# No Cinder in the all-in-one: launch from the image itself.
LAUNCH_INSTANCE_DEFAULTS = {'create_volume': False}
OPENSTACK_HYPERVISOR_FEATURES = {'can_set_mount_point': False,
                                 'can_set_password': False}
SESSION_ENGINE = 'django.contrib.sessions.backends.db'
DATABASES = {'default': {'ENGINE': 'django.db.backends.mysql',
                         'NAME': 'aio_horizon', 'USER': 'openstack',
                         'PASSWORD': %(password)r, 'HOST': '127.0.0.1'}}
CACHES = {'default': {
    'BACKEND': 'django.core.cache.backends.locmem.LocMemCache'}}
STATIC_ROOT = %(static)r
COMPRESS_ENABLED = True
COMPRESS_OFFLINE = True
LOGGING = {'version': 1, 'disable_existing_loggers': False,
           'handlers': {'file': {'class': 'logging.FileHandler',
                                 'filename': %(log)r}},
           'root': {'handlers': ['file'], 'level': 'WARNING'}}
'''


def venv_want(top: str) -> str:
    return '%s %s' % (host.files_digest([
        os.path.join(top, 'tools/aio-constraints.txt')]), PIP)


def site_packages(settings: aio_state.Settings) -> str:
    """openstack_dashboard's parent in the dashboard's venv."""
    lib = os.path.join(settings.horizon_venv, 'lib')
    names = [n for n in os.listdir(lib) if n.startswith('python')]
    return os.path.join(lib, names[0], 'site-packages')


def settings_path(settings: aio_state.Settings) -> str:
    """Horizon reads openstack_dashboard/local/local_settings.py only."""
    return os.path.join(site_packages(settings),
                        'openstack_dashboard/local/local_settings.py')


def static_root(settings: aio_state.Settings) -> str:
    return os.path.join(settings.horizon_venv, 'static')


def write_settings(settings: aio_state.Settings) -> None:
    with open(settings_path(settings), 'w') as f:
        f.write(SETTINGS % {'password': settings.password,
                            'static': static_root(settings),
                            'log': os.path.join(settings.logs,
                                                'horizon.log')})


def remove_settings(settings: aio_state.Settings) -> None:
    """``clean``: the settings hold the database password."""
    if os.path.isdir(os.path.join(settings.horizon_venv, 'lib')):
        try:
            os.unlink(settings_path(settings))
        except FileNotFoundError:
            pass


def manage(settings: aio_state.Settings, *args: str) -> None:
    sh(os.path.join(settings.horizon_venv, 'bin/python'), '-m', 'django',
       *args, env=dict(os.environ,
                       DJANGO_SETTINGS_MODULE='openstack_dashboard.settings'))


def install(settings: aio_state.Settings, top: str) -> None:
    """The venv, then collectstatic and compress: done again only when
    the pins change (most of the first install's minute is compress)."""
    stamp = os.path.join(settings.horizon_venv, '.aio-stamp')
    want = venv_want(top)
    if host.stamp_current(stamp, want):
        print('dashboard venv up to date', flush=True)
        return
    if not host.create_venv(settings.python, settings.horizon_venv):
        raise aio_state.StepFailed('could not create %s'
                                   % settings.horizon_venv)
    sh(os.path.join(settings.horizon_venv, 'bin/pip'), 'install', '-c',
       os.path.join(top, 'tools/aio-constraints.txt'), *PIP.split())
    os.makedirs(settings.logs, exist_ok=True)
    write_settings(settings)
    manage(settings, 'collectstatic', '--noinput', '--clear', '-v', '0')
    manage(settings, 'compress', '--force')
    host.write_stamp(stamp, want)


def url(settings: aio_state.Settings) -> str:
    return 'http://127.0.0.1:%d/' % settings.horizon_port


def page_ok(address: str) -> bool:
    """``address`` answers 200 (not an error page)."""
    try:
        with urllib.request.urlopen(address, timeout=10) as page:
            return page.status == 200
    except (OSError, ValueError):
        return False


def start(state: aio_state.State) -> None:
    """Settings, the sessions table, uwsgi (static files served by uwsgi
    itself); waits for the login page."""
    s = state.s
    write_settings(s)
    manage(s, 'migrate', '--noinput', '-v', '0')
    started = time.time()
    state.uwsgi_svc('horizon', s.horizon_port, WSGI_MODULE,
                    venv=s.horizon_venv,
                    options=('--static-map', '/static=%s' % static_root(s)))
    login = url(s) + 'auth/login/'
    if not host.wait_for(lambda: page_ok(login), 120):
        raise aio_state.StepFailed('timed out after 120s waiting for %s '
                                   '(log: %s/horizon.out)' % (login, s.logs))
    print('the login page answered %.1fs after uwsgi started'
          % (time.time() - started), flush=True)
