from nova.compute import power_state

from tests.functional import base


class SmokeTest(base.DriverTestCase):
    def test_spawn_destroy(self):
        instance = self.spawn()
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(instance).state)
        self.assertEqual([instance.uuid], self.driver.list_instance_uuids())
        self.driver.destroy(self.context, instance, [])
        self.assertEqual([], self.driver.list_instance_uuids())
