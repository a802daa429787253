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

"""Glance images into the real Docker store: identity, formats, caching,
and clean-up after bad input."""

import concurrent.futures
import hashlib
import io
import json
import tarfile
import threading
import uuid

import docker.errors
import fixtures
from nova.compute import power_state
from nova import exception
from nova.virt import fake as fake_virt

from novadocker.virt.docker import driver as docker_driver
from novadocker.virt.docker import guest
from novadocker.virt.docker import images
from tests.fixtures import images as image_fixtures
from tests.functional import base


def unique_tarball(cmd='["/bin/sleep", "2147483647"]', repo_tag=None):
    """A freshly built image: its Docker ID and its layer are this test's
    alone (Docker skips importing a layer it already has)."""
    unique = uuid.uuid4().hex
    return image_fixtures.build_saved_image(
        changes=('CMD %s' % cmd, 'ENV NOVA_DOCKER_UNIQUE=%s' % unique),
        repo_tag=repo_tag, extra_files={'etc/unique': unique.encode()})


def image_id_of(tarball: bytes) -> str:
    """The Docker image ID a docker save tarball holds (its config
    digest), read from the tarball itself."""
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        config = json.load(tar.extractfile('manifest.json'))[0]['Config']
    return 'sha256:' + config.split('/')[-1].replace('.json', '')


class ImageTestCase(base.DriverTestCase):

    def assertImageAbsent(self, docker_id):
        self.assertRaises(docker.errors.ImageNotFound,
                          self.api.inspect_image, docker_id)

    def assertLoadedAs(self, instance, meta, tarball):
        """The workload runs the tarball's image, known by Glance ID."""
        expected = image_id_of(tarball)
        self.assertEqual(expected, self.inspect(instance)['Image'])
        loaded = self.api.inspect_image(images.glance_tag(meta.id))
        self.assertEqual(expected, loaded['Id'])
        self.assertEqual([images.glance_tag(meta.id)], loaded['RepoTags'])
        self.assertEqual(power_state.RUNNING,
                         self.driver.get_info(instance).state)


class ImageIdentityTest(ImageTestCase):

    def test_glance_id_not_names(self):
        """A misleading Glance name, and a tarball claiming a tag the host
        uses for another image: the host's tag must not move."""
        host_tag = 'ndtest-host/app-%s:1' % uuid.uuid4().hex[:8]
        tarball = unique_tarball(repo_tag=host_tag)   # removed after save
        repository, tag = host_tag.split(':')
        self.api.import_image_from_data(
            image_fixtures.busybox_rootfs(), repository=repository, tag=tag,
            changes=['CMD ["/bin/sleep", "1"]'])
        self.addCleanup(self.api.remove_image, host_tag, force=True)
        host_image = self.api.inspect_image(host_tag)['Id']
        self.assertNotEqual(host_image, image_id_of(tarball))

        meta = self.add_image(tarball, name=host_tag)
        instance = self.spawn(meta)
        self.assertLoadedAs(instance, meta, tarball)
        self.assertEqual(host_image, self.api.inspect_image(host_tag)['Id'])
        self.assertEqual([host_tag],
                         self.api.inspect_image(host_tag)['RepoTags'])

    def test_glance_name_of_another_glance_image(self):
        first_tar, second_tar = unique_tarball(), unique_tarball()
        first = self.add_image(first_tar)
        second = self.add_image(second_tar,
                                name=images.glance_tag(first.id))
        one = self.spawn(first)
        two = self.spawn(second)
        self.assertLoadedAs(one, first, first_tar)
        self.assertLoadedAs(two, second, second_tar)


class ImageFormatTest(ImageTestCase):

    def _boots(self, transform):
        tarball = unique_tarball()
        meta = self.add_image(transform(tarball))
        instance = self.spawn(meta)
        self.assertLoadedAs(instance, meta, tarball)

    def test_plain_tarball(self):
        self._boots(lambda t: t)

    def test_gzip_tarball(self):
        self._boots(image_fixtures.gzipped)

    def test_oci_layout(self):
        self._boots(image_fixtures.to_oci_layout)

    def test_oci_layout_gzip(self):
        self._boots(lambda t: image_fixtures.gzipped(
            image_fixtures.to_oci_layout(t)))


class ImageCacheTest(ImageTestCase):

    def test_cached_image_is_reused(self):
        meta = self.add_image(unique_tarball())
        first = self.spawn(meta)
        second = self.spawn(meta)
        self.driver.destroy(self.context, first, [])
        third = self.spawn(meta)
        self.assertEqual(1, self.glance.download_count[meta.id])
        self.assertEqual(self.inspect(second)['Image'],
                         self.inspect(third)['Image'])

    def test_concurrent_boots_download_once(self):
        meta = self.add_image(unique_tarball())
        count = 3
        instances = [self.make_instance(meta) for _ in range(count)]
        for instance in instances:
            self.addCleanup(self.driver.destroy, self.context, instance, [])
        # Hold every boot at the door until all have arrived, so they
        # really ask for the image at the same time.
        barrier = threading.Barrier(count, timeout=60)
        check = images.check_image_acceptable

        def together(image_meta):
            barrier.wait()
            return check(image_meta)
        self.useFixture(fixtures.MonkeyPatch(
            'novadocker.virt.docker.images.check_image_acceptable',
            together))

        def boot(instance):
            self.driver.spawn(self.context, instance, meta, [], None, {},
                              network_info=[])
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            for future in [pool.submit(boot, i) for i in instances]:
                future.result()
        self.assertEqual(1, self.glance.download_count[meta.id])
        self.assertEqual(sorted(i.uuid for i in instances),
                         self.driver.list_instance_uuids())
        for instance in instances:
            self.assertEqual(power_state.RUNNING,
                             self.driver.get_info(instance).state)


class ImageFailureTest(ImageTestCase):
    """Bad images: a clear Nova error, and nothing left on the host."""

    def setUp(self):
        super().setUp()
        self.leaks.forbid_images()

    def _fails(self, data, expected=exception.ImageUnacceptable, **kwargs):
        meta = self.add_image(data, **kwargs)
        instance = self.make_instance(meta)
        exc = self.assertRaises(
            expected, self.driver.spawn, self.context, instance, meta, [],
            None, {}, network_info=[])
        self.assertEqual([], self.leaks.containers())
        self.assertEqual([], self.api.images(
            name=images.glance_tag(meta.id)))
        self.assertFalse(self.driver.instance_exists(instance))
        return exc, meta

    def test_non_docker_container_format(self):
        exc, meta = self._fails(b'\x00' * 4096, container_format='bare',
                                disk_format='qcow2')
        self.assertIn('--container-format docker', str(exc))
        self.assertIn('docker save', str(exc))
        self.assertNotIn(meta.id, self.glance.download_count)

    def test_corrupt_tarball(self):
        exc, _meta = self._fails(b'this is not a tarball at all\n' * 4000)
        self.assertIn('docker save', str(exc))

    def test_truncated_tarball(self):
        tarball = unique_tarball()
        self._fails(tarball[:int(len(tarball) * 0.6)])
        self.assertImageAbsent(image_id_of(tarball))

    def test_truncated_gzip_tarball(self):
        tarball = unique_tarball()
        data = image_fixtures.gzipped(tarball)
        self._fails(data[:len(data) // 2])
        self.assertImageAbsent(image_id_of(tarball))

    def test_corrupt_layer(self):
        """A well-formed docker save whose layer is garbage: Docker itself
        refuses it."""
        tarball = unique_tarball()
        src = tarfile.open(fileobj=io.BytesIO(tarball))
        layer = json.load(src.extractfile('manifest.json'))[0]['Layers'][0]
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode='w') as tar:
            for member in src:
                data = src.extractfile(member) if member.isreg() else None
                if member.name == layer:
                    data = io.BytesIO(b'\x13' * member.size)
                tar.addfile(member, data)
        exc, _meta = self._fails(out.getvalue())
        self.assertIn('docker load failed', str(exc))
        self.assertImageAbsent(image_id_of(tarball))

    def test_not_a_docker_save(self):
        self._fails(image_fixtures.busybox_rootfs())

    def test_multi_image_tarball(self):
        """Two images (two configs) in one tarball: refused. (Several
        entries or tags of one config are one image: MultiTagTarballTest.)
        """
        tarball = unique_tarball()
        src = tarfile.open(fileobj=io.BytesIO(tarball))
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode='w') as tar:
            for member in src:
                data = src.extractfile(member) if member.isreg() else None
                if member.name == 'manifest.json':
                    entry = json.load(data)[0]
                    other = tarfile.TarInfo('other.json')
                    other.size = 2
                    tar.addfile(other, io.BytesIO(b'{}'))
                    twice = json.dumps([entry, dict(
                        entry, Config='other.json',
                        RepoTags=['second:image'])]).encode()
                    member.size = len(twice)
                    data = io.BytesIO(twice)
                tar.addfile(member, data)
        exc, _meta = self._fails(out.getvalue())
        self.assertIn('exactly one', str(exc))
        self.assertImageAbsent(image_id_of(tarball))
        self.assertRaises(docker.errors.ImageNotFound,
                          self.api.inspect_image, 'second:image')

    def test_download_breaks_mid_stream(self):
        """Glance drops the connection half way: docker load has received
        part of the tarball when the stream fails."""
        tarball = unique_tarball()
        meta = self.add_image(tarball)
        real_download = self.glance.download

        def broken(context, image_id, **kwargs):
            for n, chunk in enumerate(real_download(context, image_id)):
                if n == 2:
                    raise IOError('Glance connection reset')
                yield chunk
        self.useFixture(fixtures.MonkeyPatch(
            'tests.fixtures.glance.FakeGlance.download',
            lambda _self, context, image_id, **kw: broken(context,
                                                          image_id)))
        instance = self.make_instance(meta)
        exc = self.assertRaises(
            images.ImageTransferFailed, self.driver.spawn, self.context,
            instance, meta, [], None, {}, network_info=[])
        self.assertIn('Glance connection reset', str(exc))
        self.assertEqual([], self.leaks.containers())
        self.assertEqual([], self.api.images(
            name=images.glance_tag(meta.id)))
        self.assertImageAbsent(image_id_of(tarball))

    def test_checksum_mismatch(self):
        tarball = unique_tarball()
        exc, meta = self._fails(tarball, corrupt_hash=True)
        self.assertIn('checksum mismatch', str(exc))
        self.assertEqual(1, self.glance.download_count[meta.id])
        self.assertImageAbsent(image_id_of(tarball))

    def test_command_does_not_exist(self):
        tarball = unique_tarball(cmd='["/no/such/command"]')
        exc, _meta = self._fails(tarball)
        self.assertIn('/no/such/command', str(exc))
        self.assertImageAbsent(image_id_of(tarball))

    def test_os_command_line_does_not_exist(self):
        tarball = unique_tarball()
        exc, _meta = self._fails(tarball, properties={
            'os_command_line': 'nosuchbinary --flag'})
        self.assertIn('nosuchbinary', str(exc))
        self.assertImageAbsent(image_id_of(tarball))


def _member(name, data=None, kind=tarfile.REGTYPE, linkname='', pax=None):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o644
    if pax:
        info.pax_headers = dict(pax)
    if data is not None:
        info.size = len(data)
    return info, data


def rebuilt(tarball: bytes, extra=(), drop=()) -> bytes:
    """The tarball's members (minus ``drop``), then ``extra`` ones."""
    src = tarfile.open(fileobj=io.BytesIO(tarball))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w',
                      format=tarfile.PAX_FORMAT) as tar:
        for member in src:
            if member.name in drop:
                continue
            tar.addfile(member,
                        src.extractfile(member) if member.isreg() else None)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def manifest_of(tarball: bytes) -> list:
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        return json.load(tar.extractfile('manifest.json'))


class HostileTarballTest(ImageTestCase):
    """Crafted tarballs: refused with a fault, no host tag moved, nothing
    left behind (issue 9: a second manifest re-pointed host tags)."""

    def setUp(self):
        super().setUp()
        self.leaks.forbid_images()
        self.victim = self.make_victim('ndtest-victim-%s:1' %
                                       uuid.uuid4().hex[:12])

    def make_victim(self, name: str) -> str:
        """A host image tag that a tarball must never move."""
        repository, tag = name.rsplit(':', 1)
        self.api.import_image_from_data(
            image_fixtures.busybox_rootfs({'etc/victim': name.encode()}),
            repository=repository, tag=tag,
            changes=['CMD ["/bin/sleep", "2147483647"]'])
        self.addCleanup(self._remove_quietly, name)
        victim_id = self.api.inspect_image(name)['Id']
        self.addCleanup(self.assertVictimKept, name, victim_id)
        return name

    def _remove_quietly(self, name):
        try:
            self.api.remove_image(name, force=True)
        except docker.errors.NotFound:
            pass

    def assertVictimKept(self, name, victim_id):
        self.assertEqual(victim_id, self.api.inspect_image(name)['Id'])

    def add_crafted(self, build):
        """A Glance image whose data knows its own Glance ID (as a real
        attacker's can: upload, read the ID, upload the crafted data)."""
        meta = self.add_image(b'placeholder')
        data = build(images.glance_tag(meta.id))
        record = self.glance.images[meta.id]
        record.update(size=len(data),
                      os_hash_value=hashlib.sha512(data).hexdigest())
        self.glance.data[meta.id] = data
        return meta

    def evil_manifest(self, tarball, own_tag, *names) -> bytes:
        """The tarball's own manifest, claiming our tag and the victim's."""
        entry = manifest_of(tarball)[0]
        return json.dumps([dict(entry, RepoTags=[own_tag] + list(
            names or [self.victim]))]).encode()

    def assertRefused(self, build, message, tarball):
        meta = self.add_crafted(build)
        instance = self.make_instance(meta)
        exc = self.assertRaises(
            exception.ImageUnacceptable, self.driver.spawn, self.context,
            instance, meta, [], None, {}, network_info=[])
        self.assertIn(message, str(exc))
        self.assertEqual([], self.leaks.containers())
        self.assertEqual([], self.api.images(
            name=images.glance_tag(meta.id)))
        self.assertImageAbsent(image_id_of(tarball))
        self.assertFalse(self.driver.instance_exists(instance))
        return exc

    def test_dot_dot_second_manifest(self):
        tarball = unique_tarball()
        self.assertRefused(lambda own: rebuilt(tarball, [_member(
            'x/../manifest.json', self.evil_manifest(tarball, own))]),
            '".."', tarball)

    def test_manifest_through_symlinked_directory(self):
        tarball = unique_tarball()
        self.assertRefused(lambda own: rebuilt(tarball, [
            _member('d', kind=tarfile.SYMTYPE, linkname='.'),
            _member('d/manifest.json', self.evil_manifest(tarball, own))]),
            'passes through d', tarball)

    def test_pax_size_smuggling(self):
        """A member whose PAX size is not its header size: the next
        header, where Go and Python could disagree, hides a manifest."""
        tarball = unique_tarball()

        def build(own):
            hidden = io.BytesIO()
            with tarfile.open(fileobj=hidden, mode='w',
                              format=tarfile.USTAR_FORMAT) as tar:
                info, data = _member('manifest.json',
                                     self.evil_manifest(tarball, own))
                tar.addfile(info, io.BytesIO(data))
            carrier = hidden.getvalue()
            return rebuilt(tarball, [_member(
                'carrier', b'\0' * 512 + carrier,
                pax={'size': '512'})])
        self.assertRefused(build, 'contradicts', tarball)

    def test_stale_pax_size_not_passed_to_docker(self):
        """The manifest carries a PAX size record (consistent in the
        upload). Had the rewrite kept it for its shorter manifest, Go would
        read past it into the next member, whose data hides a manifest
        naming the victim. Fresh headers: Docker sees what was checked."""
        tarball = unique_tarball()
        entry = manifest_of(tarball)[0]

        def build(own):
            rewritten = json.dumps([dict(entry, RepoTags=[own])]).encode()
            blocks = -(-len(rewritten) // 512)
            size = 512 * (blocks + 1) + 100    # Go would skip one block more
            padded = json.dumps([entry]).encode().ljust(size)
            hidden = io.BytesIO()
            with tarfile.open(fileobj=hidden, mode='w',
                              format=tarfile.USTAR_FORMAT) as tar:
                info, data = _member('manifest.json', self.evil_manifest(
                    tarball, own))
                tar.addfile(info, io.BytesIO(data))
            carrier = b'\0' * 512 + hidden.getvalue()
            return rebuilt(tarball, [
                _member('manifest.json', padded, pax={'size': str(size)}),
                _member('carrier', carrier)],
                drop=('manifest.json', 'repositories'))
        meta = self.add_crafted(build)
        instance = self.spawn(meta)
        self.assertLoadedAs(instance, meta, tarball)
        self.leaks.images_forbidden = False   # a good boot's image stays

    def test_duplicate_manifest(self):
        tarball = unique_tarball()
        self.assertRefused(lambda own: rebuilt(tarball, [_member(
            'manifest.json', self.evil_manifest(tarball, own))]),
            'manifest.json appears twice', tarball)

    def test_duplicate_index(self):
        tarball = unique_tarball()
        oci = image_fixtures.to_oci_layout(tarball)

        def build(own):
            with tarfile.open(fileobj=io.BytesIO(oci)) as tar:
                index = json.load(tar.extractfile('index.json'))
            index['manifests'][0]['annotations'] = {
                'io.containerd.image.name': 'docker.io/' + self.victim,
                'org.opencontainers.image.ref.name': '1'}
            return rebuilt(oci, [_member('index.json',
                                         json.dumps(index).encode())])
        self.assertRefused(build, 'index.json appears twice', tarball)

    def test_absolute_name(self):
        tarball = unique_tarball()
        self.assertRefused(lambda own: rebuilt(tarball, [_member(
            '/manifest.json', self.evil_manifest(tarball, own))]),
            'absolute', tarball)

    def test_dot_dot_name(self):
        tarball = unique_tarball()
        self.assertRefused(lambda own: rebuilt(tarball, [_member(
            '../../../../tmp/ndtest-escape-%s' % uuid.uuid4().hex, b'x')]),
            '".."', tarball)

    def test_hard_link_outside(self):
        tarball = unique_tarball()
        self.assertRefused(lambda own: rebuilt(tarball, [_member(
            'passwd', kind=tarfile.LNKTYPE, linkname='/etc/passwd')]),
            'absolute', tarball)
        self.assertRefused(lambda own: rebuilt(tarball, [_member(
            'config.json', kind=tarfile.LNKTYPE, linkname='missing')]),
            'not an earlier file', tarball)

    def test_gzip_bomb_over_the_cap(self):
        """1.1 GiB of zeros in a few MB of gzip, over the default cap
        (1 GiB for this 1 GB root disk flavor and small image)."""
        tarball = unique_tarball()

        class Zeros(io.RawIOBase):
            def __init__(self, size):
                self.left = size

            def readinto(self, buf):
                n = min(len(buf), self.left)
                buf[:n] = bytes(n)
                self.left -= n
                return n

        def build(own):
            size = 1100 * 1024 * 1024
            out = io.BytesIO()
            src = tarfile.open(fileobj=io.BytesIO(tarball))
            with tarfile.open(fileobj=out, mode='w:gz',
                              compresslevel=1) as tar:
                info, _data = _member('zeros', b'')
                info.size = size
                tar.addfile(info, Zeros(size))
                for member in src:
                    tar.addfile(member, src.extractfile(member)
                                if member.isreg() else None)
            return out.getvalue()
        exc = self.assertRefused(build, 'image_max_unpacked_gb', tarball)
        self.assertIn('1.00 GiB', str(exc))

    def test_sandbox_image_tag_cannot_be_claimed(self):
        """The attack of issue 9 on the sandbox image, and a sandbox name
        re-pointed after start-up: sandboxes keep the init-time image."""
        name = 'ndtest-sandbox-%s:1' % uuid.uuid4().hex[:12]
        self.conf.config(sandbox_image=name, group='docker')
        self.addCleanup(self._remove_quietly, name)
        driver = docker_driver.DockerDriver(fake_virt.FakeVirtAPI())
        driver.init_host(self.host)
        self.addCleanup(driver.cleanup_host, self.host)
        self.driver = driver
        sandbox_id = self.api.inspect_image(name)['Id']
        self.assertEqual(sandbox_id, driver._sandbox_image_id)
        self.addCleanup(self.assertVictimKept, name, sandbox_id)
        tarball = unique_tarball()
        self.assertRefused(lambda own: rebuilt(tarball, [_member(
            'x/../manifest.json', self.evil_manifest(tarball, own, name))]),
            '".."', tarball)
        self.assertVictimKept(name, sandbox_id)

        # Whoever re-points the name later, new sandboxes use the ID.
        repository, tag = name.rsplit(':', 1)
        self.api.tag(self.victim, repository, tag=tag, force=True)
        self.addCleanup(self.api.tag, sandbox_id, repository, tag=tag,
                        force=True)
        meta = self.add_image()
        # Runs after the destroy: a good boot's image stays cached.
        self.addCleanup(self._remove_quietly, images.glance_tag(meta.id))
        instance = self.spawn(meta)
        self.assertEqual(sandbox_id,
                         self.inspect(instance, guest.ROLE_SANDBOX)['Image'])

    def test_foreign_name_in_load_report_is_undone(self):
        """Fault injection: a rewrite that let a name through. Docker moves
        the victim tag; the driver puts it back and refuses the image."""
        victim = self.victim

        def leaky(data, new_tag):
            entries = json.loads(data)
            entries[0]['RepoTags'] = [new_tag, victim]
            return json.dumps(entries[:1]).encode()
        self.useFixture(fixtures.MonkeyPatch(
            'novadocker.virt.docker.tarball._rename_manifest', leaky))
        tarball = unique_tarball()
        exc = self.assertRefused(lambda own: tarball, 'undone', tarball)
        self.assertIn(victim, str(exc))


class MultiTagTarballTest(ImageTestCase):
    """One image saved under several names (docker save app:1 app:latest)
    still boots, in both layouts."""

    def test_docker_layout_two_tags(self):
        tarball = unique_tarball()
        entry = manifest_of(tarball)[0]
        data = rebuilt(tarball, [_member('manifest.json', json.dumps([
            dict(entry, RepoTags=['app:1', 'app:latest']),
            dict(entry, RepoTags=['app:2'])]).encode())],
            drop=('manifest.json',))
        meta = self.add_image(data)
        self.assertLoadedAs(self.spawn(meta), meta, tarball)

    def test_oci_layout_two_tags_same_digest(self):
        tarball = unique_tarball()
        oci = image_fixtures.to_oci_layout(tarball)
        with tarfile.open(fileobj=io.BytesIO(oci)) as tar:
            index = json.load(tar.extractfile('index.json'))
        entry = index['manifests'][0]
        index['manifests'] = [dict(entry, annotations={
            'io.containerd.image.name': 'docker.io/library/app:%s' % ref,
            'org.opencontainers.image.ref.name': ref})
            for ref in ('1', 'latest')]
        data = rebuilt(oci, [_member('index.json',
                                     json.dumps(index).encode())],
                       drop=('index.json',))
        meta = self.add_image(data)
        self.assertLoadedAs(self.spawn(meta), meta, tarball)
