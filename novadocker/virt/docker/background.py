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

"""One step run alongside a block of code, on a native thread of its own.

A spawn makes its workload while its ports are plugged and Neutron binds
them, as libvirt defines the guest paused while it waits for
``network-vif-plugged``. The step is always finished (joined) when the block
ends, whichever of the two failed, so a clean-up never runs while the step
still creates something.

Its own thread, not nova's shared executor: a spawn already runs on that
executor, and waiting there for a task queued behind it could deadlock a
full pool.
"""

import threading
import typing

from oslo_context import context as oslo_context
from oslo_log import log as logging

LOG = logging.getLogger(__name__)


class Alongside:
    """``with Alongside(step, *args) as step: ...``, then ``step.result()``.

    The block's exception wins over the step's (which is logged); if only
    the step failed, leaving the block raises the step's exception.
    """

    def __init__(self, func: typing.Callable, *args, name: str = 'step'):
        self._func = func
        self._args = args
        self._result = None
        self._error: typing.Optional[BaseException] = None
        # The request context, so the step's log lines carry its ID.
        self._context = oslo_context.get_current()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=name)

    def _run(self) -> None:
        if self._context is not None:
            self._context.update_store()
        try:
            self._result = self._func(*self._args)
        except BaseException as exc:   # re-raised by the waiting thread
            self._error = exc

    def __enter__(self) -> 'Alongside':
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._thread.join()
        if exc is not None:
            if self._error is not None:
                LOG.info('%s failed too: %s', self._thread.name,
                         self._error)
            return False
        if self._error is not None:
            raise self._error
        return False

    def result(self) -> typing.Any:
        """What the step returned (once the block has ended)."""
        return self._result
