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

"""What a user does with this driver's instances in the dashboard: the
instance list, the launch dialog, the Console tab (the serial console,
through nova-serialproxy), the Log tab (the console log), delete."""

import re

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from tests.browser import base
from tests.fixtures import docker as docker_fixtures

LABEL_INSTANCE = 'org.openstack.nova.instance-uuid'
# The shell's answer, which the typed command itself does not contain.
COMMAND, ANSWER = 'echo browser-$((6*7))', 'browser-42'
# The root shell's prompt ends a line ("~ # "; WebDriver's text drops the
# trailing space).
PROMPT = re.compile(r'#\s*$', re.MULTILINE)


class InstanceListTest(base.BrowserTestCase):

    shots_prefix = 'list'

    def test_demo_server_active_with_its_addresses(self):
        server = self.demo_server()
        with self.step('login'):
            self.login('demo')
        with self.step('instance-list'):
            self.open('/project/instances/')
            row = self.wait_row_text('demo1', 'Active')
            for address in (server['fixed_ip'], server['floating_ip']):
                self.assertIn(address, row.text)


class LaunchConsoleLogDeleteTest(base.BrowserTestCase):

    shots_prefix = 'launch'

    def test_launch_console_log_delete(self):
        name = self.unique_name('launch')
        self.addCleanup(self.delete_if_left, name)
        with self.step('login'):
            self.login('demo')
        with self.step('launch-dialog'):
            self.fill_launch_dialog(name)
        with self.step('launch-finish'):
            self.angular_idle()
            self.clickable(By.CSS_SELECTOR,
                           'wizard button.btn-primary.finish').click()
            self.wait().until(lambda d: not d.find_elements(
                By.CSS_SELECTOR, 'wizard'))
        with self.step('active'):
            row = self.wait_row_text(name, 'Active')
            server_id = row.get_attribute('data-object-id')
            fixed_ip = self.fixed_ip(server_id)
            self.assertIn(fixed_ip, row.text)
        with self.step('console-tab'):
            self.console_round_trip(server_id)
        with self.step('log-tab'):
            self.open('/project/instances/%s/?tab=instance_details__log'
                      % server_id)
            self.wait(base.PAGE_TIMEOUT).until(
                lambda d: fixed_ip in self.log_text())
            self.assertIn(ANSWER, self.log_text())
        with self.step('delete'):
            self.delete_from_list(name)
            self.wait_gone(server_id)
            self.assertEqual([], docker_fixtures.docker_api().containers(
                all=True, filters={'label': '%s=%s' % (LABEL_INSTANCE,
                                                       server_id)}))

    # -- the launch dialog (Horizon's own selenium tests' selectors) ------

    def fill_launch_dialog(self, name: str) -> None:
        self.open('/project/instances/')
        self.clickable(By.LINK_TEXT, 'Launch Instance').click()
        wizard = self.visible(By.CSS_SELECTOR, 'wizard')
        nav = wizard.find_element(By.CSS_SELECTOR, 'div.wizard-nav')
        self.angular_idle()
        self.visible(By.XPATH, ".//*[@id='name']").send_keys(name)
        for step, form, label in (
                ('Source', 'launchInstanceSourceForm', 'busybox'),
                ('Flavor', 'launchInstanceFlavorForm', 'm1.tiny'),
                ('Networks', 'launchInstanceNetworkForm', 'private')):
            nav.find_element(By.LINK_TEXT, step).click()
            self.angular_idle()
            self.allocate(wizard, form, label)

    def allocate(self, wizard, form: str, label: str) -> None:
        """Move ``label`` from the step's Available table to Allocated
        (already there when it is the only choice)."""
        row = ".//*[text()='%s']//ancestor::tr/td//*" % label
        table = wizard.find_element(By.CSS_SELECTOR,
                                    'ng-include[ng-form=%s]' % form)
        self.wait().until(lambda d: table.find_elements(By.XPATH, row))
        buttons = table.find_elements(
            By.XPATH, row + "[@class='btn btn-default fa fa-arrow-up']")
        if buttons:
            buttons[0].click()
        self.wait().until(lambda d: table.find_elements(
            By.XPATH, row + "[@class='btn btn-default fa fa-arrow-down']"))

    # -- the instance's tabs -------------------------------------------------

    def console_round_trip(self, server_id: str) -> None:
        """The Console tab's serial console: the shell's prompt, a typed
        command, its answer."""
        self.open('/project/instances/%s/?tab=instance_details__console'
                  % server_id)
        self.driver.switch_to.frame(self.visible(By.ID, 'console_embed'))
        try:
            self.wait().until(lambda d: 'Status: Open' in d.find_element(
                By.TAG_NAME, 'body').text)
            terminal = self.visible(By.CSS_SELECTOR, '.terminal')
            self.wait().until(lambda d: PROMPT.search(self.text_of(terminal)))
            terminal.click()
            ActionChains(self.driver).send_keys(COMMAND + '\n').perform()
            self.wait().until(lambda d: ANSWER in self.text_of(terminal))
        finally:
            self.driver.switch_to.default_content()

    @staticmethod
    def text_of(element) -> str:
        return element.text.replace('\xa0', ' ')

    def log_text(self) -> str:
        logs = self.driver.find_elements(By.CSS_SELECTOR, 'pre.logs')
        return logs[0].text if logs else ''

    def delete_from_list(self, name: str) -> None:
        self.open('/project/instances/')
        row = self.wait_row_text(name, 'Active')
        actions = row.find_element(By.CSS_SELECTOR, 'td.actions_column')
        actions.find_element(By.CSS_SELECTOR, '.dropdown-toggle').click()
        actions.find_element(
            By.XPATH, ".//ul[contains(@class, 'dropdown-menu')]//*"
            "[normalize-space()='Delete Instance']").click()
        self.clickable(By.CSS_SELECTOR, '.modal-dialog .btn-danger').click()
        self.wait(base.BOOT_TIMEOUT).until(
            self.reloading(lambda: self.instance_row(name) is None))

    def fixed_ip(self, server_id: str) -> str:
        server = self.conn.compute.get_server(server_id)
        return next(a['addr'] for addrs in server.addresses.values()
                    for a in addrs if a.get('OS-EXT-IPS:type') == 'fixed')
