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

"""Hold a :class:`tests.fixtures.PrivateDockerd` for a whole test run.

``tools/run-tests --docker=26`` runs the suites against another Docker
version, beside the host's engine. It starts this in the background::

    python -m tests.private_dockerd --dockerd PATH --url-file FILE \\
        [-- DOCKERD ARGS...]

which sets the fixture up (the same code the tests use), writes the
engine's URL to FILE once it answers, and cleans the fixture up (its
containers, dockerd, containerd, mounts and directories) on SIGTERM,
SIGINT or SIGHUP, or when the process that started it is gone.
"""

import argparse
import os
import signal
import sys
import threading

from tests import fixtures as nd_fixtures

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dockerd', required=True)
    parser.add_argument('--url-file', required=True)
    parser.add_argument('dockerd_args', nargs='*')
    args = parser.parse_args(argv)
    parent = os.getppid()
    # Noted, not acted on, while the engine is still starting. (Handlers,
    # not a blocked mask: dockerd and containerd would inherit the mask.)
    stop = threading.Event()
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_args: stop.set())
    engine = nd_fixtures.PrivateDockerd(*args.dockerd_args,
                                        dockerd=args.dockerd)
    try:
        engine.setUp()
    except Exception as exc:
        print('private dockerd did not start: %s' % exc, file=sys.stderr)
        return 1
    try:
        tmp = args.url_file + '.tmp'
        with open(tmp, 'w') as handle:
            handle.write(engine.url + '\n')
        os.rename(tmp, args.url_file)
        while not stop.is_set() and os.getppid() == parent:
            stop.wait(1)
            # Reap a dockerd a test stopped (to restart it): a zombie
            # would look like a dockerd that does not stop.
            for process in (engine.process, engine.containerd_process):
                if process is not None:
                    process.poll()
    finally:
        engine.cleanUp()
        try:
            os.unlink(args.url_file)
        except FileNotFoundError:
            pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
