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

"""Where a benchmark's time goes: the ``--profile`` of every benchmark.

The driver's code is left as it is: the benchmark wraps, from outside,
the functions the time can go to (Docker API requests, privsep calls,
OVSDB transactions, waits, the Glance stream, hashing) and every wrapper
adds its *own* time to its category: a wait inside a Docker request counts
as a wait, not twice. What no category claims in a thread is that thread's
Python work. Totals are per thread, so overlapping threads (the image
rewrite and the upload to Docker) each get their own lines.
"""

import collections
import functools
import threading
import time
import typing

DOCKER = 'Docker API requests'
PRIVSEP = 'privsep calls'
OVSDB = 'OVSDB transactions'
WAIT = 'waits (sleep, events)'
PYTHON = 'Python work (the rest)'


class Breakdown:
    """Self time per (thread role, category), from wrapped callables."""

    def __init__(self):
        self.seconds = collections.defaultdict(float)
        self.calls = collections.Counter()
        self.thread_seconds = collections.defaultdict(float)
        self._local = threading.local()
        # Off: wrappers only pass the call on (warm-ups, the raw floor).
        self.enabled = True
        self._undo: typing.List[typing.Callable[[], None]] = []

    # -- recording ---------------------------------------------------------

    def role(self) -> str:
        """The role the calling thread counts under."""
        return getattr(self._local, 'role', threading.current_thread().name)

    def _stack(self) -> list:
        if not hasattr(self._local, 'stack'):
            self._local.stack = []
        return self._local.stack

    def _enter(self) -> None:
        self._stack().append(0.0)   # time of the callees

    def _leave(self, category: str, elapsed: float) -> None:
        stack = self._stack()
        children = stack.pop()
        self.seconds[self.role(), category] += elapsed - children
        self.calls[self.role(), category] += 1
        if stack:
            stack[-1] += elapsed

    def timed(self, category: str, func: typing.Callable) -> typing.Callable:
        """``func``, its self time counted under ``category``."""
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            if not self.enabled:
                return func(*args, **kwargs)
            self._enter()
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self._leave(category, time.perf_counter() - start)
        wrapper.breakdown_wrapped = func
        return wrapper

    def timed_iter(self, category: str,
                   chunks: typing.Iterable) -> typing.Iterator:
        """Each ``next()`` of ``chunks`` counted under ``category``."""
        iterator = iter(chunks)
        step = self.timed(category, lambda: next(iterator, _END))
        try:
            while True:
                chunk = step()
                if chunk is _END:
                    return
                yield chunk
        finally:
            close = getattr(iterator, 'close', None)
            if close is not None:
                close()

    def name_thread(self, role: str) -> None:
        """Count what the calling thread does under ``role``."""
        self._local.role = role

    def thread(self, role: str, func: typing.Callable) -> typing.Callable:
        """``func`` as the whole of a thread's measured work, named."""
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            self._local.role = role
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.thread_seconds[role] += time.perf_counter() - start
        return wrapper

    def patch(self, owner, name: str, category: str) -> None:
        """Wrap ``owner.name`` (a class or module attribute) until undo."""
        original = owner.__dict__[name] if isinstance(owner, type) \
            else getattr(owner, name)
        setattr(owner, name, self.timed(category, original))
        self._undo.append(lambda: setattr(owner, name, original))

    def replace(self, owner, name: str, value) -> None:
        original = getattr(owner, name)
        setattr(owner, name, value)
        self._undo.append(lambda: setattr(owner, name, original))

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()

    # -- the usual suspects ------------------------------------------------

    def patch_docker(self) -> None:
        """Every HTTP request of docker-py's APIClient (the response body
        of a streamed request is read later, outside)."""
        import docker
        for name in ('_get', '_post', '_put', '_delete', '_head'):
            if name in docker.APIClient.__dict__:
                self.patch(docker.APIClient, name, DOCKER)

    def patch_privsep(self, *modules) -> None:
        """privsep entrypoints of ``modules`` (the call, in-process or a
        round trip to the daemon) and the daemon's round trips."""
        from oslo_privsep import daemon
        from oslo_privsep import priv_context
        for module in modules:
            for name, value in list(vars(module).items()):
                if isinstance(value, functools.partial) and isinstance(
                        getattr(value.func, '__self__', None),
                        priv_context.PrivContext):
                    self.patch(module, name, PRIVSEP)
        self.patch(daemon._ClientChannel, 'remote_call', PRIVSEP)

    def patch_ovsdb(self) -> None:
        from ovsdbapp.backend.ovs_idl import transaction
        self.patch(transaction.Transaction, 'commit', OVSDB)

    def patch_waits(self) -> None:
        self.replace(time, 'sleep', self.timed(WAIT, time.sleep))
        self.patch(threading.Event, 'wait', WAIT)

    # -- report ------------------------------------------------------------

    def report(self, title: str, runs: int, totals: typing.Dict[str, float],
               floor: typing.Sequence[typing.Tuple[str, float]] = (),
               roles: typing.Optional[typing.Sequence[str]] = None
               ) -> None:
        """Print seconds (or ms) per run by thread role and category;
        ``totals`` gives each role's measured wall time (all runs), the
        roles without one take the time their threads ran. ``roles``:
        only these."""
        totals = dict(self.thread_seconds, **totals)
        if roles is None:
            roles = sorted({role for role, _cat in self.seconds} |
                           set(totals))
        print('\n%s: where the time goes, per run (n=%d)' % (title, runs))
        for role in roles:
            total = totals.get(role)
            rows = sorted(((cat, sec) for (r, cat), sec in
                           self.seconds.items() if r == role),
                          key=lambda row: -row[1])
            claimed = sum(sec for _cat, sec in rows)
            if total is None:
                total = claimed
            print('  %-44s %9s' % (role, _fmt(total / runs)))
            for category, sec in rows:
                print('    %-42s %9s %5.1f%%  %5.1f calls' % (
                    category, _fmt(sec / runs), 100 * sec / total,
                    self.calls[role, category] / runs))
            rest = total - claimed
            if rest > 0:
                print('    %-42s %9s %5.1f%%' % (
                    PYTHON, _fmt(rest / runs), 100 * rest / total))
        if floor:
            print('  raw floor of the same steps, per run:')
            for label, seconds in floor:
                print('    %-42s %9s' % (label, _fmt(seconds)))


_END = object()


def _fmt(seconds: float) -> str:
    return '%.2f s' % seconds if seconds >= 1 else \
        '%.1f ms' % (seconds * 1000)
