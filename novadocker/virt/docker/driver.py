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

"""DockerDriver: Nova instances as Docker containers.

A thin translation of Nova calls. The Docker I/O lives in ``images``
(Glance tarballs in the Docker store), ``guest`` (the sandbox and workload
containers of an instance), ``vifs`` (Neutron ports in the sandbox's network
namespace) and ``hostinfo`` (what the host offers).
"""

import collections
import contextlib
import os
import tempfile
import threading
import typing

from nova.compute import power_state
from nova.compute import utils as compute_utils
from nova.console import type as ctype
from nova import exception
from nova.i18n import _
from nova.virt import driver
from nova.virt import hardware
from oslo_log import log as logging
from oslo_utils import excutils

from novadocker import conf
from novadocker.virt.docker import background
from novadocker.virt.docker import client as docker_client
from novadocker.virt.docker import configdrive
from novadocker.virt.docker import console
from novadocker.virt.docker import events
from novadocker.virt.docker import guest as guest_mod
from novadocker.virt.docker import hostinfo
from novadocker.virt.docker import identity
from novadocker.virt.docker import imagecache
from novadocker.virt.docker import images
from novadocker.virt.docker import migrate as migrate_mod
from novadocker.virt.docker import ovsdb
from novadocker.virt.docker import pool as pool_mod
from novadocker.virt.docker import reaper
from novadocker.virt.docker import rescue as rescue_mod
from novadocker.virt.docker import resize as resize_mod
from novadocker.virt.docker import snapshot as snapshot_mod
from novadocker.virt.docker import vifs

CONF = conf.CONF
LOG = logging.getLogger(__name__)


def shutdown_timeout(instance) -> int:
    """The clean-shutdown budget Nova gives power_off: the image's
    os_shutdown_timeout, else [DEFAULT]shutdown_timeout (as
    ComputeManager._get_power_off_values computes it)."""
    return compute_utils.get_value_from_system_metadata(
        instance, key='image_os_shutdown_timeout', type=int,
        default=CONF.shutdown_timeout)


# What nova-compute's _destroy_evacuated_instances looks for.
EVACUATION_PENDING = ('accepted', 'pre-migrating', 'done')


def evacuated_from(context, host: str) -> typing.List[str]:
    """UUIDs of the (not deleted) instances evacuated away from ``host``
    whose clean-up on ``host`` is still to come: nova-compute's init_host
    destroys them and marks the evacuation completed."""
    from nova import objects
    from nova.objects import fields
    found = objects.MigrationList.get_by_filters(context, {
        'source_compute': host,
        'status': list(EVACUATION_PENDING),
        'migration_type': fields.MigrationType.EVACUATION})
    uuids = sorted({migration.instance_uuid for migration in found})
    if not uuids:
        return []
    # A deleted instance's evacuation is never marked completed: its
    # containers are the reaper's.
    alive = objects.InstanceList.get_by_filters(
        context, {'uuid': uuids, 'deleted': False}, expected_attrs=[])
    return [instance.uuid for instance in alive]


def _moved_to_another_host(migration) -> bool:
    """A cross-host migration or resize (None: a same-host caller)."""
    return (migration is not None and
            migration.source_compute != migration.dest_compute)


class DockerDriver(driver.ComputeDriver):
    """Runs each Nova instance as a Docker container."""

    # Start from the base dict so every key is present: the resource
    # tracker removes a trait only for keys set to False.
    capabilities = dict(
        driver.ComputeDriver.capabilities,
        has_imagecache=True,
        supports_attach_interface=True,
        # Rebuilt from the image on another host (Nova's default rebuild
        # calls spawn there); the source cleans up at its next start.
        supports_evacuate=True,
        supports_image_type_raw=True,
        # supports_stateless_firmware is not in the base dict but in
        # CAPABILITY_TRAITS_MAP: listed so a stale trait would be removed.
        **dict.fromkeys((
            'supports_migrate_to_same_host',
            'supports_device_tagging', 'supports_tagged_attach_interface',
            'supports_tagged_attach_volume', 'supports_extend_volume',
            'supports_multiattach', 'supports_trusted_certs',
            'supports_stateless_firmware'), False),
    )

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi)
        # The engine's URL; None: [docker]api_url. (Tests running two
        # compute services in one process give each its own engine.)
        self.api_url = None
        self._api = None
        self._host = self._nodename = None
        # The per-process state of the driver's helpers lives on objects
        # it owns, not in module globals: one OVSDB connection, os-vif set
        # up once, the log-once flags, the snapshots being taken.
        self._ovsdb = ovsdb.OVSDB()
        self._vifs = vifs.VIFPlugger(self._ovsdb)
        self._lxcfs = guest_mod.LxcfsBinds()
        # The containers' states from one listing, for the power-state
        # sync (get_info with use_cache): told of every change.
        self._states = guest_mod.StateCache()
        # docker info, once per resource-tracker pass.
        self._engine_info = hostinfo.EngineInfo(lambda: self.api)
        self._snapshotter = None
        # The serial console listeners, each on its own API client without
        # a call timeout (a console may be idle for hours).
        self._consoles = console.SerialConsoles(
            lambda: self._connect(timeout=None))
        self._live_restore_warned = False
        self._events = None
        self._root_quota = False
        # Which instances this process is spawning, and which the reaper
        # is working on: neither starts while the other runs.
        self._busy = threading.Condition()
        self._spawning: collections.Counter = collections.Counter()
        self._reaping: set = set()
        # Unplugs that failed during a delete (OVSDB down), retried by
        # every reaper pass: uuid -> (instance, network_info).
        self._unplug_later: dict = {}
        self._reaper = None
        self._reaper_thread = None
        # How the reaper learns the instances Nova has on this host
        # (functional tests, which have no database, replace it).
        self.nova_instance_uuids = self._nova_instance_uuids
        # The sandbox image's Docker ID, resolved once at init_host.
        self._sandbox_image_id = None
        # Sandboxes made ahead of the spawns ([docker]sandbox_pool_size).
        self._pool = pool_mod.SandboxPool(lambda: self._guests,
                                          lambda: self._sandbox_image_id)

    # -- plumbing ----------------------------------------------------------

    @property
    def api(self):
        """The Docker API client, opened on first use."""
        if self._api is None:
            self._api = self._connect()
        return self._api

    def _connect(self, timeout: typing.Optional[float] = -1):
        """A new API client (each listener has its own)."""
        return docker_client.connect(timeout=timeout, url=self.api_url)

    @property
    def _guests(self) -> guest_mod.Guests:
        return guest_mod.Guests(self.api, self._host or CONF.host,
                                root_quota=self._root_quota,
                                lxcfs=self._lxcfs, states=self._states)

    @property
    def _snapshots(self) -> snapshot_mod.Snapshotter:
        """The one Snapshotter: it knows which snapshots are running."""
        if self._snapshotter is None:
            self._snapshotter = snapshot_mod.Snapshotter(
                self.api, self._guests, self._host or CONF.host)
        return self._snapshotter

    @property
    def _images(self) -> images.ImageStore:
        return images.ImageStore(self.api)

    # -- host --------------------------------------------------------------

    def init_host(self, host):
        """Check the engine, build the sandbox image, note the node name."""
        self._host = host
        self._nodename = host
        docker_client.check_available(lambda: self.api)
        self._sandbox_image_id = images.ensure_sandbox_image(self.api)
        self._check_hardening()
        self._check_root_quota()
        self._warn_without_live_restore()
        self._vifs.initialize()
        self._make_reaper(host)
        first = self.reap('start-up')
        self._reaper_thread = reaper.ReaperThread(
            self.reap, CONF.docker.reap_interval,
            first_wait=first.retry_in if first else None)
        self._reaper_thread.start()
        self._start_pool()
        if self._lxcfs.binds():   # else it logged why, once
            LOG.info('nova-docker: LXCFS at %s: instances see their flavor '
                     'in /proc', CONF.docker.lxcfs_path)
        self._events = events.EventListener(
            lambda: self._connect(timeout=None), host,
            self.emit_event, on_reconnect=self._engine_back,
            on_change=self._states.changed)
        self._events.start()
        LOG.info('nova-docker: Docker %s (API %s) at %s',
                 hostinfo.read_host(self.api).docker_version,
                 self.api.api_version, self.api_url or CONF.docker.api_url)

    def _start_pool(self) -> None:
        """Reconcile the warm pool with what the engine has (stale and
        extra members removed, refilled to its size; with size 0, every
        free member removed) and start its refill thread."""
        size = CONF.docker.sandbox_pool_size
        try:
            if size:
                self._pool.reconcile()
            else:
                self._pool.drain()
        except Exception as exc:
            # The refill thread retries; spawns create their sandboxes.
            LOG.warning('Sandbox pool: start-up pass failed: %s', exc)
        if size:
            self._pool.start()
            LOG.info('nova-docker: warm sandbox pool of %d (%d ready)',
                     size, self._pool.free)

    def _engine_back(self) -> None:
        """The event stream is back: changes may have gone unseen."""
        self._states.forget()
        self._engine_info.forget()
        self._reaper_thread.trigger('the Docker engine is back')
        self._pool.refill()

    def _check_hardening(self) -> None:
        """Invalid hardening options stop nova-compute here, not at the
        first boot; allowed runtimes the engine lacks are worth a warning."""
        guest_mod.cap_drop()
        guest_mod.log_config()
        engine = hostinfo.read_engine(self.api)
        missing = sorted(set(CONF.docker.allowed_runtimes) -
                         set(engine.runtimes))
        if missing:
            LOG.warning('[docker]allowed_runtimes names runtimes the engine '
                        'does not have: %(missing)s (it has %(has)s); '
                        'flavors asking for them will not boot here',
                        {'missing': ', '.join(missing),
                         'has': ', '.join(sorted(engine.runtimes))})
        if engine.userns_remap:
            LOG.info('nova-docker: the engine remaps user namespaces '
                     '(userns-remap)')

    def _check_root_quota(self) -> None:
        """Flavor root_gb is enforced only if the engine can; say once."""
        self._root_quota = resize_mod.probe_root_quota(self.api)
        if self._root_quota:
            LOG.info('nova-docker: root disks are limited to the flavor\'s '
                     'root_gb (storage_opt size)')
        else:
            LOG.warning('nova-docker: the Docker storage driver cannot '
                        'limit a container\'s disk (it needs overlay2 on '
                        'XFS with pquota, btrfs or zfs): flavor root_gb is '
                        'NOT enforced on this host')

    def cleanup_host(self, host):
        self._consoles.close_all()
        if self._events is not None:
            self._events.stop()
        if self._reaper_thread is not None:
            self._reaper_thread.stop()
        self._pool.stop()
        if self._api is not None:
            self._api.close()

    def _warn_without_live_restore(self) -> None:
        """Say once what running dockerd without live-restore costs."""
        try:
            enabled = hostinfo.read_engine(self.api).live_restore
        except exception.NovaException as exc:
            LOG.debug('Cannot read the engine info: %s', exc)
            return
        if enabled or self._live_restore_warned:
            return
        self._live_restore_warned = True
        LOG.warning('The Docker engine runs without live-restore: every '
                    'instance on this host stops whenever dockerd restarts '
                    '(an upgrade, a crash) and stays SHUTOFF until started '
                    'again. Turn it on: "live-restore": true in '
                    '/etc/docker/daemon.json (or dockerd --live-restore), '
                    'then reload dockerd (SIGHUP, systemctl reload docker); '
                    'a reload applies it without stopping containers.')

    # -- recovery ----------------------------------------------------------

    def _make_reaper(self, host: str) -> None:
        self._reaper = reaper.Reaper(
            host, lambda: self._guests, lambda: self.nova_instance_uuids(),
            self._claim_for_reaping, self._unplug_leftovers)

    def _nova_instance_uuids(self) -> typing.List[str]:
        """UUIDs of the instances Nova has on this host (not deleted),
        and of those evacuated away whose clean-up is Nova's.

        An instance evacuated while this host was down has the other host
        now; nova-compute's init_host destroys what is left of it here
        (``destroy`` with its ports and config drive) right after the
        driver's init_host, and marks the evacuation completed. Until then
        the reaper leaves it alone, or it would remove the containers
        first and Nova would no longer see the instance here.
        """
        from nova import context as nova_context
        from nova import objects
        context = nova_context.get_admin_context()
        host = self._host or CONF.host
        found = objects.InstanceList.get_by_host(context, host,
                                                 expected_attrs=[])
        return ([instance.uuid for instance in found] +
                evacuated_from(context, host))

    def reap(self, why: str) -> typing.Optional[reaper.Pass]:
        """One reaper pass: retry failed unplugs, then remove the
        containers of instances Nova no longer has here. Never raises."""
        try:
            self._retry_unplugs()
            result = self._reaper.run(why)
        except Exception:
            LOG.exception('Reaper pass (%s) failed', why)
            return None
        if result.reaped:
            LOG.warning('Reaper (%(why)s): removed the containers of '
                        '%(n)d instance(s) Nova no longer has on this host: '
                        '%(uuids)s', {'why': why, 'n': len(result.reaped),
                                      'uuids': ', '.join(result.reaped)})
        return result

    @contextlib.contextmanager
    def _spawn_guard(self, uuid: str):
        """Mark the instance as spawning; wait for the reaper to finish
        with it first. A new spawn also drops its pending unplugs: its
        ports are about to be plugged again."""
        with self._busy:
            self._busy.wait_for(lambda: uuid not in self._reaping)
            self._spawning[uuid] += 1
            self._unplug_later.pop(uuid, None)
        try:
            yield
        finally:
            with self._busy:
                self._spawning[uuid] -= 1
                if self._spawning[uuid] <= 0:
                    del self._spawning[uuid]

    @contextlib.contextmanager
    def _claim_for_reaping(self, uuid: str):
        """Yield False if the instance is being spawned; else keep spawns
        of it waiting while the reaper works on it."""
        with self._busy:
            claimed = not self._spawning[uuid]
            if claimed:
                self._reaping.add(uuid)
        try:
            yield claimed
        finally:
            if claimed:
                with self._busy:
                    self._reaping.discard(uuid)
                    self._busy.notify_all()

    def _unplug_leftovers(self, uuid: str) -> typing.List[str]:
        """The OVS ports a reaped instance left (ports os-vif tagged with
        its UUID)."""
        with self._busy:
            self._unplug_later.pop(uuid, None)
        return self._vifs.unplug_leftovers(uuid)

    def _retry_unplugs(self) -> None:
        """Unplug again the ports of deleted instances whose unplug failed
        (OVSDB was down): they are left on OVS until it works."""
        with self._busy:
            pending = list(self._unplug_later.items())
        for uuid, entry in pending:
            instance, network_info = entry
            with self._claim_for_reaping(uuid) as claimed:
                with self._busy:
                    current = self._unplug_later.get(uuid) is entry
                if not claimed or not current:
                    continue
                if self._guests.find(instance, guest_mod.ROLE_SANDBOX):
                    # Spawned again meanwhile: its ports are in use.
                    with self._busy:
                        self._unplug_later.pop(uuid, None)
                    continue
                try:
                    self._vifs.unplug(instance, network_info)
                except Exception as exc:
                    LOG.info('Unplugging the ports of deleted instance %s '
                             'failed again: %s', uuid, exc)
                    continue
                with self._busy:
                    self._unplug_later.pop(uuid, None)
                LOG.info('Ports of deleted instance %s unplugged after an '
                         'earlier failure', uuid)

    def get_available_nodes(self, refresh=False):
        return [self._nodename or CONF.host]

    def get_nodenames_by_uuid(self, refresh=False):
        from nova.virt import node
        return {node.get_local_node_uuid(): self.get_available_nodes()[0]}

    def node_is_available(self, nodename):
        return nodename in self.get_available_nodes()

    def get_host_ip_addr(self):
        return CONF.my_ip

    def get_host_uptime(self):
        return hostinfo.uptime()

    def get_available_resource(self, nodename):
        """The periodic pass: docker info read afresh."""
        info = self._engine_info.get(fresh=True)
        return hostinfo.resource_dict(hostinfo.read_host(self.api, info),
                                      nodename)

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        """After get_available_resource and on every claim: the docker
        info of the pass."""
        info = self._engine_info.get()
        host = hostinfo.read_host(self.api, info)
        inventory = provider_tree.data(nodename).inventory
        ratios = self._get_allocation_ratios(inventory)
        provider_tree.update_inventory(nodename, hostinfo.inventory(
            host, ratios, self._get_reserved_host_disk_gb_from_config()))
        self._update_runtime_traits(provider_tree, nodename, info)

    def _update_runtime_traits(self, provider_tree, nodename,
                               info: dict) -> None:
        """CUSTOM_DOCKER_RUNTIME_<NAME> for each runtime a flavor may ask
        for here, so ``trait:CUSTOM_DOCKER_RUNTIME_RUNSC=required`` next
        to ``docker:runtime=runsc`` schedules only to hosts that have it."""
        wanted = hostinfo.runtime_traits(self.api, info)
        have = {t for t in provider_tree.data(nodename).traits
                if t.startswith(guest_mod.RUNTIME_TRAIT_PREFIX)}
        if have - wanted:
            provider_tree.remove_traits(nodename, *(have - wanted))
        if wanted - have:
            provider_tree.add_traits(nodename, *(wanted - have))

    # -- listing -----------------------------------------------------------

    def list_instances(self):
        return self._guests.list_names()

    def list_instance_uuids(self):
        return self._guests.list_instance_uuids()

    def instance_exists(self, instance):
        return self._guests.find(instance) is not None

    def get_info(self, instance, use_cache=True):
        """use_cache (the power-state sync): from one listing of the host's
        containers per sync, not two calls per instance."""
        # A rescued instance is as alive as its rescue container.
        state, container_id = self._guests.power_state(
            instance, (rescue_mod.ROLE_RESCUE, guest_mod.ROLE_WORKLOAD),
            use_cache=use_cache)
        return hardware.InstanceInfo(state=state, internal_id=container_id)

    # -- spawn and destroy -------------------------------------------------

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        with self._spawn_guard(instance.uuid):
            self._spawn(context, instance, image_meta, injected_files,
                        admin_password, network_info, power_on)

    def _spawn(self, context, instance, image_meta, injected_files,
               admin_password, network_info, power_on) -> None:
        # Reject bad input before anything is created on the host.
        images.check_image_acceptable(image_meta)

        def configure(guest: guest_mod.Guest) -> None:
            guest.check_command()
            guest.inject_keys()
            guest.inject_files(injected_files)

        self._create(context, instance, image_meta, network_info or [],
                     power_on, 'Spawn', workload_meta=image_meta,
                     configure=configure, injected_files=injected_files,
                     admin_password=admin_password)
        LOG.info('Instance spawned as container %s',
                 guest_mod.container_name(instance), instance=instance)

    def _create(self, context, instance, image_meta, network_info,
                power_on: bool, action: str, *, workload_meta, configure=None,
                injected_files=None, admin_password=None) -> None:
        """What spawn and a migration's arrival share: the image loaded
        and held, the config drive, the sandbox with its ports alongside
        the workload (``workload_meta`` gives it the image's command
        properties; ``configure`` finishes it before it starts), then
        started, or stopped without carrier. On failure everything it made
        is removed, and the image too if this call loaded it."""
        guest_mod.check_flavor(instance.flavor)
        self._vifs.validate(instance, network_info)
        guests = self._guests
        runtime = guests.check_runtime(instance)
        store = self._images
        held = False
        try:
            # Held to the end: a failed spawn of the same image never
            # removes it under this one.
            docker_image = store.ensure_image(
                context, image_meta, hold=True,
                root_gb=instance.flavor.root_gb)
            held = True
            configdrive.build(instance, injected_files or [],
                              admin_password, network_info)

            def make_workload(sandbox_id: str) -> guest_mod.Guest:
                guest = guests.handle(instance, sandbox_id,
                                      guests.create_workload(
                                          instance, docker_image,
                                          workload_meta, sandbox_id,
                                          runtime))
                if configure is not None:
                    configure(guest)
                return guest

            guest = self._build(instance, network_info, power_on,
                                make_workload)
            self._power_built(instance, guest, network_info, power_on)
        except Exception:
            with excutils.save_and_reraise_exception():
                LOG.warning('%s failed; removing what it created', action,
                            instance=instance)
                self._remove_instance(instance, network_info)
                if held:
                    held = False
                    self._release_image(store, image_meta.id,
                                        remove_if_unused=store.loaded)
        finally:
            if held:
                self._release_image(store, image_meta.id)

    def _build(self, instance, network_info, power_on,
               make_workload: typing.Callable[[str], guest_mod.Guest]
               ) -> guest_mod.Guest:
        """Create the sandbox, then start it, plug its ports and wait for
        Neutron while ``make_workload(sandbox_id)`` creates the workload
        alongside (it needs only the sandbox's ID). With a warm pool, a
        running sandbox is taken instead, made the instance's while the
        workload is created. Returns the workload's Guest; on failure both
        steps have ended (the caller cleans up)."""
        member = self._pool.claim()
        if member is not None:
            sandbox = self._guests.handle(instance, member.container_id,
                                          pooled=True)
        else:
            sandbox = self._create_sandbox(instance, network_info)
        with background.Alongside(
                make_workload, sandbox.sandbox_id,
                name='workload-%s' % instance.uuid) as workload:
            if member is not None:
                self._take_pool_sandbox(sandbox, member, network_info)
            self._plug_and_wait(sandbox, network_info, power_on)
        guest = workload.result()
        guest.pooled = sandbox.pooled
        return guest

    def _create_sandbox(self, instance, network_info) -> guest_mod.Guest:
        """Create (not start) the sandbox: the workload can be created
        with its ID while it starts."""
        dns, search = vifs.dns_config(network_info)
        if self._sandbox_image_id is None:   # a driver never initialised
            self._sandbox_image_id = images.ensure_sandbox_image(self.api)
        guests = self._guests
        return guests.handle(instance, guests.create_sandbox(
            instance, self._sandbox_image_id, dns, search, start=False))

    def _take_pool_sandbox(self, sandbox: guest_mod.Guest,
                           member: pool_mod.Member, network_info) -> None:
        """Make a claimed pool sandbox the instance's: renamed to its
        sandbox name (from then on it is found, reaped and removed as the
        instance's), its hostname and nameservers written. A failed rename
        removes it and fails the spawn."""
        instance = sandbox.instance
        try:
            self._guests.claim_pool_sandbox(instance, member.container_id)
        except Exception:
            with excutils.save_and_reraise_exception():
                try:
                    self._guests.remove_pool_sandbox(member.container_id)
                except Exception as exc:
                    # Still a free member's name: the pool's next pass
                    # removes it.
                    LOG.info('Removing pool sandbox %s failed: %s',
                             member.container_id[:12], exc,
                             instance=instance)
        finally:
            self._pool.claimed(member)
        identity.write_files(member.files_dir,
                             guest_mod.sandbox_hostname(instance),
                             vifs.dns_config(network_info)[0])

    def _pooled_files(self, guest: guest_mod.Guest, network_info) -> None:
        """Docker (re)started a pool sandbox: its hostname and resolv.conf
        files are the placeholder's again; make them the instance's."""
        if guest.pooled:
            identity.write_files(
                os.path.dirname(
                    guest.inspect(guest_mod.ROLE_SANDBOX)['HostnamePath']),
                guest_mod.sandbox_hostname(guest.instance),
                vifs.dns_config(network_info)[0])

    def _pooled_hostname(self, guest: guest_mod.Guest, role: str) -> None:
        """Docker started a container in a pool sandbox's namespace with
        the placeholder hostname: give it the instance's."""
        if guest.pooled:
            identity.set_hostname(guest.state(role).pid,
                                  guest_mod.sandbox_hostname(guest.instance))

    def _plug_and_wait(self, sandbox: guest_mod.Guest, network_info,
                       power_on) -> None:
        """Start the sandbox, plug the ports into it and wait for Neutron
        to bind them.

        Like libvirt, wait only for ports Neutron has not marked active, and
        only when the instance will run (the event comes on a status change).
        """
        instance = sandbox.instance
        events = []
        if power_on and CONF.vif_plugging_timeout:
            events = [('network-vif-plugged', vif['id'])
                      for vif in network_info if vif.get('active') is False]
        if not (sandbox.pooled and
                sandbox.state(guest_mod.ROLE_SANDBOX).running):
            sandbox.start(guest_mod.ROLE_SANDBOX)
            self._pooled_files(sandbox, network_info)
        if not network_info:
            return
        pid = sandbox.pid
        try:
            with self.virtapi.wait_for_instance_event(
                    instance, events, timeout=CONF.vif_plugging_timeout,
                    error_callback=self._neutron_failed_callback):
                self._vifs.plug(instance, network_info, pid, new_netns=True)
        except exception.InstanceEventTimeout:
            LOG.warning('Timeout waiting for %s', events, instance=instance)
            if CONF.vif_plugging_is_fatal:
                raise exception.VirtualInterfaceCreateException()

    @staticmethod
    def _neutron_failed_callback(event_name, instance):
        LOG.error('Neutron reported failure on event %s', event_name,
                  instance=instance)
        if CONF.vif_plugging_is_fatal:
            raise exception.VirtualInterfaceCreateException()

    def _power_built(self, instance, guest: guest_mod.Guest, network_info,
                     power_on: bool) -> None:
        """A just-built instance as Nova asked for it: running, or stopped
        with its links down (a powered-off VM's NICs carry nothing)."""
        if power_on:
            self._start_workload(guest)
        else:
            self._vifs.set_carrier(instance, network_info, up=False)

    def _start_workload(self, guest: guest_mod.Guest) -> None:
        """Start the workload; a refused start is a readable fault.

        A command that cannot run (CommandNotFound) is the image's fault
        and passes through as ImageUnacceptable; any other refusal is a
        deploy failure of this host.
        """
        # Never next to a rescue container mounting its filesystem.
        rescue_mod.Rescuer(self.api, self._guests).remove(guest)
        try:
            guest.start()
        except docker_client.DockerOperationFailed as exc:
            raise exception.InstanceDeployFailure(
                reason=_('the container did not start: %s') % exc.reason
            ) from exc
        self._pooled_hostname(guest, guest_mod.ROLE_WORKLOAD)

    def _remove_instance(self, instance, network_info,
                         unplug: bool = True,
                         remove_disks: bool = True) -> None:
        """Unplug the ports and remove both containers (and, with
        ``remove_disks``, the config drive directory). Idempotent.

        The containers always go: a failed unplug (OVSDB down, a privsep
        error) is logged and does not fail the delete, as libvirt ignores
        unplug errors on clean-up.
        """
        self._consoles.close(instance.uuid)
        if unplug:
            self._unplug_quietly(instance, network_info)
        self._guests.remove(instance)
        if remove_disks:
            configdrive.remove(instance)

    def _unplug_quietly(self, instance, network_info) -> None:
        try:
            self._vifs.unplug(instance, network_info)
        except Exception as exc:
            LOG.warning('Unplugging the ports failed (%s); removing the '
                        'containers anyway. The unplug is retried by the '
                        'reaper.', exc, instance=instance)
            if network_info:
                with self._busy:
                    self._unplug_later[instance.uuid] = (
                        instance, list(network_info))

    @staticmethod
    def _release_image(store, image_id, remove_if_unused=False) -> None:
        """End the spawn's hold; never fails the spawn's outcome."""
        try:
            store.release(image_id, remove_if_unused=remove_if_unused)
        except exception.NovaException as exc:
            LOG.warning('Image %s: releasing it after the spawn failed: %s',
                        image_id, exc)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True):
        self._remove_instance(instance, network_info or [],
                              remove_disks=destroy_disks)
        self._drop_resize_backup(instance)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True):
        self._remove_instance(instance, network_info or [],
                              unplug=destroy_vifs,
                              remove_disks=destroy_disks)

    # -- power -------------------------------------------------------------

    def power_off(self, instance, timeout=0, retry_interval=0):
        """Stop the workload: its stop signal, then SIGKILL after timeout.

        The sandbox keeps running, so the ports stay plugged and bound,
        but without carrier: a stopped server does not answer on its
        addresses (as a stopped VM). A rescue container goes too (as
        libvirt's rescue domain does).
        """
        guest = self._guests.lookup(instance)
        rescue_mod.Rescuer(self.api, self._guests).remove(guest)
        guest.stop(timeout)
        self._carrier_off(instance)

    def power_on(self, context, instance, network_info,
                 block_device_info=None, accel_info=None, share_info=None):
        guest = self._guests.lookup(instance)
        self._ensure_sandbox(guest, network_info or [])
        self._start_workload(guest)

    def reboot(self, context, instance, network_info, reboot_type,
               block_device_info=None, bad_volumes_callback=None,
               accel_info=None, share_info=None):
        """SOFT: graceful stop then start. HARD: kill then start."""
        timeout = shutdown_timeout(instance) if reboot_type == 'SOFT' else 0
        guest = self._guests.lookup(instance)
        guest.stop(timeout)
        self._ensure_sandbox(guest, network_info or [])
        self._start_workload(guest)

    def set_admin_password(self, instance, new_pass):
        """root's password, by the image's chpasswd (no guest agent)."""
        self._guests.get(instance).set_password('root', new_pass)

    def pause(self, instance):
        """Freeze the processes (cgroup freezer) and take the ports'
        carrier away: a frozen namespace's kernel would answer ping."""
        self._guests.get(instance).pause()
        self._carrier_off(instance)

    def unpause(self, instance):
        guest = self._guests.get(instance)
        self._vifs.set_carrier(instance, instance.get_network_info(),
                               up=True)
        guest.unpause()

    def suspend(self, context, instance):
        """As pause: memory stays allocated, as with nova-lxd. The power
        state reads PAUSED."""
        self.pause(instance)

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None):
        guest = self._guests.get(instance)
        self._vifs.set_carrier(instance, network_info, up=True)
        guest.unpause()

    def soft_delete(self, instance):
        self._guests.get(instance).stop(shutdown_timeout(instance))
        self._carrier_off(instance)

    def restore(self, instance):
        guest = self._guests.lookup(instance)
        self._ensure_sandbox(guest, None)
        self._vifs.set_carrier(instance, instance.get_network_info(),
                               up=True)
        self._start_workload(guest)

    def _carrier_off(self, instance) -> None:
        """Ports without carrier once the workload stopped or froze; a
        failure is logged, not raised: the workload is down either way."""
        try:
            self._vifs.set_carrier(instance, instance.get_network_info(),
                                   up=False)
        except exception.VirtualInterfacePlugException as exc:
            LOG.warning('The ports keep their carrier: %s', exc,
                        instance=instance)

    def resume_state_on_host_boot(self, context, instance, network_info,
                                  share_info, block_device_info=None):
        """After a host or dockerd restart: sandbox, ports, then workload."""
        guest = self._guests.lookup(instance)
        restarted = self._ensure_sandbox(guest, network_info or [])
        if guest.power_state != power_state.RUNNING:
            self._start_workload(guest)
        elif restarted:
            # Still running in the namespace of the old sandbox: move it
            # into the new one, which has the ports.
            guest.stop(CONF.shutdown_timeout)
            self._start_workload(guest)

    def _ensure_sandbox(self, guest: guest_mod.Guest, network_info) -> bool:
        """Make the sandbox run with every port plugged; True if it had to
        be restarted (dockerd or the host restarted).

        Plugging is idempotent, so correct ports are left alone. With
        network_info None (restore), the ports come from the instance's
        info cache, and only when the sandbox had to be restarted.
        """
        instance = guest.instance
        restarted = not guest.state(guest_mod.ROLE_SANDBOX).running
        if restarted:
            LOG.info('Sandbox was not running; restarting it and '
                     're-plugging the ports', instance=instance)
            guest.start(guest_mod.ROLE_SANDBOX)
            self._pooled_files(guest, network_info if network_info
                               is not None else instance.get_network_info())
        if network_info is None:
            if not restarted:
                return False
            network_info = instance.get_network_info()
        self._vifs.plug(instance, network_info, guest.pid)
        return restarted

    # -- networking --------------------------------------------------------

    def plug_vifs(self, instance, network_info):
        """Idempotent: (re)plug every port into the sandbox, starting it
        if dockerd or a host reboot stopped it (nova-compute calls this for
        every instance at start-up)."""
        guest = self._guests.find(instance, guest_mod.ROLE_SANDBOX)
        if guest is None:
            return
        try:
            self._ensure_sandbox(guest, network_info or [])
        except docker_client.DockerOperationFailed as exc:
            raise exception.VirtualInterfacePlugException(
                _('the network sandbox did not start: %s') % exc) from exc
        if not self._has_carrier(guest):
            # Plugging gave carrier; a stopped or frozen workload has none.
            self._vifs.set_carrier(instance, network_info, up=False)

    @staticmethod
    def _has_carrier(guest: guest_mod.Guest) -> bool:
        """Whether the instance's ports should have carrier: its workload
        runs unfrozen, or a rescue container runs in its place."""
        if guest.has(rescue_mod.ROLE_RESCUE):
            return True
        return (guest.has(guest_mod.ROLE_WORKLOAD) and guest.running
                and not guest.paused)

    def unplug_vifs(self, instance, network_info):
        self._vifs.unplug(instance, network_info or [])

    def attach_interface(self, context, instance, image_meta, vif):
        """Hot-plug a port as the next free ethN of the running sandbox;
        into a stopped or frozen instance it comes without carrier, like
        the instance's other ports."""
        guest = self._guests.get(instance, guest_mod.ROLE_SANDBOX)
        ifname = self._vifs.attach(instance, vif, guest.pid)
        if not self._has_carrier(guest):
            try:
                self._vifs.set_carrier(instance, [vif], up=False)
            except exception.VirtualInterfacePlugException:
                with excutils.save_and_reraise_exception():
                    self._vifs.detach(instance, vif)
        LOG.info('Port %(port)s attached as %(ifname)s',
                 {'port': vif['id'], 'ifname': ifname}, instance=instance)

    def detach_interface(self, context, instance, vif):
        """Remove a port: both veth ends, its OVS port, any qbr layout."""
        self._vifs.detach(instance, vif)

    # -- reading -----------------------------------------------------------

    def get_console_output(self, context, instance):
        """The tail of the container log, at most console_log_bytes."""
        try:
            return self._guests.get(instance).console_log(
                CONF.docker.console_log_bytes)
        except docker_client.DockerOperationFailed as exc:
            # e.g. a logging driver Docker cannot read back (syslog, none)
            LOG.info('No console output: %s', exc, instance=instance)
            raise exception.ConsoleNotAvailable() from exc

    def get_serial_console(self, context, instance):
        """Where nova-serialproxy connects to reach the workload's TTY.

        Refused when disabled (as libvirt does), and while the workload is
        not running (stopped, or rescued: the rescue container has no
        console), which the API answers with 409.
        """
        if not CONF.serial_console.enabled:
            raise exception.ConsoleTypeUnavailable(console_type='serial')
        if not self._guests.get(instance).running:
            raise exception.InstanceNotReady(instance_id=instance.uuid)
        host, port = self._consoles.open(instance)
        return ctype.ConsoleSerial(host=host, port=port)

    def get_instance_diagnostics(self, instance):
        from novadocker.virt.docker import diagnostics
        return diagnostics.instance_diagnostics(self._guests.get(instance))

    def get_diagnostics(self, instance):
        from novadocker.virt.docker import diagnostics
        return diagnostics.legacy_diagnostics(
            self._guests.get(instance).stats())

    # -- snapshots and the image cache -------------------------------------

    def snapshot(self, context, instance, image_id, update_task_state):
        """docker commit (paused) streamed by docker save into Glance."""
        if self._guests.find(instance) is None:
            # Nova's driver contract (test_virt_drivers, as libvirt does):
            # no container is InstanceNotRunning. The manager handles it
            # like InstanceNotFound ("deleted during the snapshot").
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        self._snapshots.take(context, instance, image_id, update_task_state)

    def manage_image_cache(self, context, all_instances):
        """Age out loaded Glance images no instance uses any more.

        Honours [image_cache]remove_unused_base_images and
        remove_unused_original_minimum_age_seconds; images the driver did
        not load, or that any container uses, are never removed.
        """
        result = imagecache.ImageCacheManager(self.api).update(
            context, all_instances)
        orphans = snapshot_mod.remove_orphans(self.api,
                                              self._host or CONF.host,
                                              self._snapshots.in_progress)
        LOG.debug('Image cache pass: %(n)d in use, removed %(removed)s, '
                  'kept %(kept)s, orphaned snapshot images removed '
                  '%(orphans)s', {'n': len(result['in_use']),
                                  'removed': result['removed'],
                                  'kept': result['kept'],
                                  'orphans': orphans})

    def cache_image(self, context, image_id):
        """Pre-cache an image (nova's cache_images API); True if loaded."""
        store = self._images
        if store.local_image_id(image_id) is not None:
            store.touch(image_id)
            return False
        from nova import objects
        image_meta = objects.ImageMeta.from_image_ref(
            context, images.IMAGE_API, image_id)
        store.ensure_image(context, image_meta)
        store.touch(image_id)   # docker load leaves the use time unset
        return True

    # -- resize and cold migration -----------------------------------------

    def _local_names(self):
        """What Nova may pass as ``dest`` for this host (its migration's
        dest_host is the destination's get_host_ip_addr)."""
        return (self.get_host_ip_addr(), CONF.my_ip, CONF.host, self._host)

    def migrate_disk_and_power_off(self, context, instance, dest,
                                   flavor, network_info,
                                   block_device_info=None,
                                   timeout=0, retry_interval=0):
        """Check the new flavor, stop the workload, commit it for revert;
        to another host, also send the commit through a hidden Glance
        image and remove the containers and ports here.

        Every failure is InstanceFaultRollback with the instance as it was
        (running again if it ran) and nothing of the attempt left.
        """
        same_host = resize_mod.is_local_destination(dest,
                                                    self._local_names())
        guest = self._guests.get(instance)
        container_id = guest.workload_id
        # Another host's capacity is the scheduler's to check.
        resize_mod.check_new_flavor(
            self.api, instance, flavor,
            hostinfo.read_host(self.api) if same_host else None,
            container_id)
        was_running = guest.power_state == power_state.RUNNING
        self.power_off(instance, timeout, retry_interval)
        step = _('committing the container')
        try:
            resize_mod.commit_backup(self.api, instance, container_id)
            if not same_host:
                step = _('sending the container to %s') % dest
                image_id = migrate_mod.send(self.api, context, instance)
        except Exception as exc:
            resize_mod.remove_backup(self.api, instance)
            if was_running:
                self._start_workload(self._guests.lookup(instance))
            raise exception.InstanceFaultRollback(
                inner_exception=exception.ResizeError(
                    reason=_('%(step)s failed: %(exc)s') % {
                        'step': step, 'exc': exc}))
        if same_host:
            return '[]'
        self._leave_host(instance, network_info)
        return migrate_mod.disk_info(image_id)

    def _leave_host(self, instance, network_info) -> None:
        """The instance now lives in Glance and its commit: unplug its
        ports (their device names must not exist on two hosts), remove its
        containers and config drive (a revert writes it again). A failure
        is logged: confirm and revert remove what is left."""
        try:
            self._remove_instance(instance, network_info or [])
        except Exception as exc:
            LOG.warning('Removing the migrated containers failed (%s); '
                        'confirm or revert removes them', exc,
                        instance=instance)

    def finish_migration(self, context, migration, instance, disk_info,
                         network_info, image_meta, resize_instance,
                         allocations, block_device_info=None, power_on=True,
                         share_info=None):
        """Give the workload the new flavor (instance.flavor by now); from
        another host, build it from the transfer image."""
        image_id = migrate_mod.image_of(disk_info)
        if image_id is not None:
            try:
                with self._spawn_guard(instance.uuid):
                    self._arrive(context, instance, image_id,
                                 network_info or [], power_on)
            finally:
                # Used or not, the copy is no longer needed: a failed
                # arrival is reverted from the commit on the source.
                migrate_mod.delete_image(context, image_id)
            return
        guests = self._guests
        guest = guests.get(instance)
        container_id = guest.workload_id
        sandbox_id = guest.sandbox_id
        size = ('%dG' % instance.flavor.root_gb
                if self._root_quota and instance.flavor.root_gb else None)
        if size != resize_mod.storage_size(self.api, container_id):
            LOG.info('Root disk becomes %s: recreating the workload from '
                     'its commit', size or 'unlimited', instance=instance)
            resize_mod.recreate_workload(
                self.api, guests, instance, sandbox_id,
                guests.check_runtime(instance))
        else:
            resize_mod.update_limits(self.api, guests, instance,
                                     container_id, sandbox_id)
        if power_on:
            guest = guests.lookup(instance)   # a recreated workload
            self._ensure_sandbox(guest, network_info or [])
            self._start_workload(guest)

    def _arrive(self, context, instance, image_id: str, network_info,
                power_on: bool) -> None:
        """Build the migrated instance as spawn does, from the transfer
        image: sandbox, the same ports, the workload with its files (no
        image_meta: the commit keeps the command it ran).

        The loaded image keeps its Glance tag: the image cache ages it
        out once no container uses it, as any loaded image.
        """
        self._create(context, instance, migrate_mod.image_meta(image_id),
                     network_info, power_on, 'Migration to this host',
                     workload_meta=None)
        LOG.info('Instance migrated here as container %s',
                 guest_mod.container_name(instance), instance=instance)

    def confirm_migration(self, context, migration, instance, network_info):
        """The old copy is the commit: drop it. After a move to another
        host, also whatever else of the instance is still here
        (containers, ports, config drive)."""
        if _moved_to_another_host(migration):
            self._remove_instance(instance, network_info or [])
        resize_mod.remove_backup(self.api, instance)

    def finish_revert_migration(self, context, instance, network_info,
                                migration, block_device_info=None,
                                power_on=True, share_info=None):
        """Bring the pre-resize workload back from its commit.

        Nova destroyed the resized containers first (revert_resize, on the
        destination); instance.flavor is the old flavor again. The same
        ports are plugged into a new sandbox; the config drive is written
        again from Nova's metadata.
        """
        network_info = network_info or []
        guests = self._guests
        runtime = guests.check_runtime(instance)
        try:
            # Idempotent if destroy left anything (it does not).
            self._remove_instance(instance, network_info)
            # Nova's destroy (same host) or the move away removed it.
            configdrive.build(instance, [], None, network_info)

            def make_workload(sandbox_id: str) -> guest_mod.Guest:
                return guests.handle(instance, sandbox_id,
                                     guests.create_workload(
                                         instance,
                                         resize_mod.backup_tag(instance),
                                         None, sandbox_id, runtime))

            guest = self._build(instance, network_info, False, make_workload)
            self._power_built(instance, guest, network_info, power_on)
        except Exception:
            with excutils.save_and_reraise_exception():
                LOG.warning('Revert failed; the resize commit %s is kept',
                            resize_mod.backup_tag(instance),
                            instance=instance)
                self._remove_instance(instance, network_info)

    def _drop_resize_backup(self, instance) -> None:
        """destroy: the resize commit goes with the instance, except in the
        destroy Nova runs before finish_revert_migration, which needs it."""
        from nova.compute import task_states
        try:
            task_state = instance.task_state
        except Exception:   # not loaded, or not a full Instance object
            task_state = None
        if task_state == task_states.RESIZE_REVERTING:
            return
        resize_mod.remove_backup(self.api, instance)

    # -- evacuate ----------------------------------------------------------

    # Evacuate is Nova's default rebuild: spawn on the new host from the
    # instance's image (instance_on_disk is False: a container's writable
    # layer never sits on shared storage), with the same ports. When the
    # old host starts again, nova-compute's init_host calls destroy for
    # the containers still there; the two checks below tell it whether
    # the instance's directory (the config drive) is shared with the new
    # host, so it is removed only if it is the old host's own.

    def check_instance_shared_storage_local(self, context, instance):
        """A file in the instance's directory for the other host to look
        for; None if there is no directory (nothing to remove)."""
        path = os.path.join(CONF.instances_path, instance.uuid)
        if not os.path.isdir(path):
            return None
        handle, name = tempfile.mkstemp(dir=path, prefix='.shared-check-')
        os.close(handle)
        return {'filename': name}

    def check_instance_shared_storage_remote(self, context, data):
        return os.path.exists(data['filename'])

    def check_instance_shared_storage_cleanup(self, context, data):
        try:
            os.unlink(data['filename'])
        except FileNotFoundError:
            pass

    # -- live migration ----------------------------------------------------

    @staticmethod
    def _no_live_migration():
        return exception.MigrationPreCheckError(
            reason=_('live migration is not supported by nova-docker; use '
                     'cold migration'))

    def check_can_live_migrate_destination(self, context, instance,
                                           src_compute_info,
                                           dst_compute_info,
                                           block_migration=False,
                                           disk_over_commit=False):
        raise self._no_live_migration()

    def check_can_live_migrate_source(self, context, instance,
                                      dest_check_data,
                                      block_device_info=None):
        raise self._no_live_migration()

    # -- rescue ------------------------------------------------------------

    def rescue(self, context, instance, network_info, image_meta,
               rescue_password, block_device_info, share_info):
        """Stop the workload; run the rescue image in the same sandbox
        (same ports and addresses) with the workload's filesystem mounted
        read-write at rescue.MOUNT_POINT."""
        guests = self._guests
        guest = guests.get(instance)   # InstanceNotFound before anything
        if image_meta is not None and image_meta.obj_attr_is_set('id'):
            images.check_image_acceptable(image_meta)
            docker_image = self._images.ensure_image(context, image_meta)
        else:
            # No rescue image (the driver contract allows it): the image
            # the workload was made from.
            docker_image = guest.image_id
            image_meta = None
        self._ensure_sandbox(guest, network_info or [])
        was_running = guest.power_state == power_state.RUNNING
        guest.stop(CONF.shutdown_timeout)
        try:
            rescue_mod.Rescuer(self.api, guests).start(
                guest, docker_image, image_meta)
            guest.reload()
            self._pooled_hostname(guest, rescue_mod.ROLE_RESCUE)
        except Exception:
            with excutils.save_and_reraise_exception():
                if was_running:
                    self._start_workload(guest)

    def unrescue(self, context, instance):
        """Remove the rescue container; start the workload, with whatever
        the rescue changed in its filesystem."""
        guest = self._guests.lookup(instance)
        rescue_mod.Rescuer(self.api, self._guests).remove(guest)
        self._start_workload(guest)
