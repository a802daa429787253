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

"""A headless chromium on the all-in-one's dashboard, logged in as demo.

Debian's chromium and chromedriver (``tools/aio browser`` installs them),
never a browser downloaded at run time. Each test is a list of steps
(``with self.step('name'):``); every step ends with a screenshot
LOGS/browser/<test>-NN-<name>.png, and a failing step fails the test with
its name and its screenshot's path.
"""

import contextlib
import json
import os
import time
import uuid

import openstack
from selenium.common import exceptions
from selenium import webdriver
from selenium.webdriver.chrome import service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait
import testtools

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
PAGE_TIMEOUT = 60
BOOT_TIMEOUT = 240
RELOAD = 15


class BrowserTestCase(testtools.TestCase):
    """The dashboard at AIO_HORIZON_URL in a fresh browser, the demo
    user's API connection for what the browser cannot show (and for
    clean-up)."""

    shots_prefix = 'browser'

    def setUp(self):
        super().setUp()
        self.url = os.environ['AIO_HORIZON_URL'].rstrip('/')
        self.password = os.environ['AIO_PASSWORD']
        self.shots = os.environ['AIO_BROWSER_SHOTS']
        os.makedirs(self.shots, exist_ok=True)
        self.steps = 0
        self.conn = openstack.connect(cloud='aio')
        self.driver = self.start_browser()
        self.addCleanup(self.driver.quit)

    @staticmethod
    def start_browser() -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        # As root there is no user namespace sandbox; /dev/shm is small in
        # containers.
        for arg in ('--headless=new', '--no-sandbox',
                    '--disable-dev-shm-usage', '--disable-gpu',
                    '--window-size=1280,800', '--lang=en-US'):
            options.add_argument(arg)
        driver = webdriver.Chrome(
            options=options, service=service.Service(CHROMEDRIVER))
        driver.set_page_load_timeout(PAGE_TIMEOUT)
        return driver

    # -- steps ---------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, name: str):
        """One step of the test: a screenshot at its end, its name in the
        failure."""
        self.steps += 1
        base = os.path.join(self.shots, '%s-%02d-%s' % (
            self.shots_prefix, self.steps, name))
        try:
            yield
        except Exception as exc:
            self.screenshot(base + '-FAILED.png')
            raise AssertionError("step '%s' failed: %s: %s (screenshot %s)"
                                 % (name, type(exc).__name__, exc,
                                    base + '-FAILED.png')) from exc
        self.screenshot(base + '.png')

    def screenshot(self, path: str) -> None:
        try:
            self.driver.save_screenshot(path)
        except exceptions.WebDriverException:
            pass

    def wait(self, timeout: float = PAGE_TIMEOUT) -> WebDriverWait:
        return WebDriverWait(self.driver, timeout, poll_frequency=0.5)

    def visible(self, by: str, what: str, timeout: float = PAGE_TIMEOUT):
        return self.wait(timeout).until(
            expected_conditions.visibility_of_element_located((by, what)))

    def clickable(self, by: str, what: str, timeout: float = PAGE_TIMEOUT):
        return self.wait(timeout).until(
            expected_conditions.element_to_be_clickable((by, what)))

    def angular_idle(self, timeout: float = PAGE_TIMEOUT) -> None:
        """Wait until the dashboard's AngularJS has no HTTP request in
        flight: the launch dialog checks each step against data (limits,
        flavors, images) that arrive in any order, and on a busy host a
        step filled before its data arrived stays invalid."""
        self.wait(timeout).until(lambda d: d.execute_script(
            "var root = document.querySelector('[ng-app]') || document.body;"
            "var injector = window.angular && "
            "    angular.element(root).injector();"
            "return !!injector && "
            "    injector.get('$http').pendingRequests.length === 0;"))

    # -- the dashboard -------------------------------------------------------

    def open(self, path: str) -> None:
        self.driver.get(self.url + path)

    def login(self, user: str = 'demo') -> None:
        self.open('/auth/login/')
        self.visible(By.ID, 'id_username').send_keys(user)
        self.driver.find_element(By.ID, 'id_password').send_keys(
            self.password)
        self.driver.find_element(By.CSS_SELECTOR,
                                 'button.btn-primary').click()
        self.wait().until(lambda d: '/auth/login' not in d.current_url)
        # The project switcher shows who is logged in, to which project.
        self.visible(By.CSS_SELECTOR, 'nav.navbar')
        self.assertIn(user, self.driver.find_element(
            By.CSS_SELECTOR, 'nav.navbar').text)

    def instance_row(self, name: str):
        """The instance list's row for ``name`` (None if absent)."""
        rows = self.driver.find_elements(
            By.CSS_SELECTOR, "table#instances tr[data-display='%s']" % name)
        return rows[0] if rows else None

    def reloading(self, check):
        """``check`` for WebDriverWait.until, reloading the page every
        RELOAD seconds while it is false: the instance list polls only
        rows in transition itself."""
        loaded = [time.time()]

        def until(driver):
            try:
                found = check()
            except exceptions.StaleElementReferenceException:
                return None
            if not found and time.time() - loaded[0] > RELOAD:
                driver.refresh()
                loaded[0] = time.time()
            return found
        return until

    def wait_row_text(self, name: str, text: str,
                      timeout: float = BOOT_TIMEOUT):
        """The instance list's row for ``name`` once it shows ``text``
        (its status)."""
        def shows():
            row = self.instance_row(name)
            return row if row is not None and text in row.text else None
        try:
            return self.wait(timeout).until(self.reloading(shows))
        except exceptions.TimeoutException:
            row = self.instance_row(name)
            raise AssertionError('row %s does not show %r after %ds; it '
                                 'shows %r' % (name, text, timeout,
                                               row.text if row else None))

    # -- the cloud, through its API ------------------------------------------

    @staticmethod
    def demo_server() -> dict:
        """What ``tools/aio up`` recorded of demo1."""
        with open(os.path.join(os.environ['AIO_DIR'],
                               'demo-server.json')) as f:
            return json.load(f)

    def unique_name(self, what: str) -> str:
        return 'brw-%s-%s' % (what, uuid.uuid4().hex[:6])

    def delete_if_left(self, name: str) -> None:
        """Clean-up: the server the browser made, if a step failed before
        deleting it."""
        server = self.conn.compute.find_server(name)
        if server is not None:
            self.conn.compute.delete_server(server)
            self.conn.compute.wait_for_delete(server, wait=BOOT_TIMEOUT)

    def wait_gone(self, server_id: str, timeout: float = BOOT_TIMEOUT):
        deadline = time.time() + timeout
        while self.conn.compute.find_server(server_id) is not None:
            if time.time() > deadline:
                raise AssertionError('server %s still exists %ds after the '
                                     'delete' % (server_id, timeout))
            time.sleep(2)
