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
"""Why each failed test failed, in a few lines, for the end of .ci/run.

CI keeps only the tail of the run's output: the test names alone left a
flaky failure undiagnosable. For each ``... FAILED`` line of the logs this
prints the test, the line of the test that failed, the last frame and the
error of its first captured traceback.

  python3 -m ndtools.failures LOG...
"""

import re
import sys

FAILED = re.compile(r'^(?:\{\d+\} )?(\S+)(?: \[[0-9.]+s\])? \.\.\. FAILED')
FRAME = re.compile(r'^\s+File "([^"]+)", line (\d+), in (\S+)')
# Tempest and stestr indent the error line by four spaces.
ERROR = re.compile(r'^\s{0,4}([A-Za-z_][\w.]*(?:Error|Exception|Failure|'
                   r'Timeout|Exit)\w*)(?::|$)')
LOOKAHEAD = 400      # lines after the FAILED marker to search
WIDTH = 400          # characters of the error kept


def summarise(lines):
    """[(test, frames, error)] for every failed test in ``lines``: frames
    are the test method's own line and the last frame, when they differ."""
    found = []
    for index, line in enumerate(lines):
        match = FAILED.match(line)
        if not match:
            continue
        method = match.group(1).rsplit('.', 1)[-1]
        own = frame = error = ''
        in_traceback = False
        for follow in lines[index + 1:index + LOOKAHEAD]:
            if FAILED.match(follow) or re.match(r'^\{\d+\} \S+ ', follow):
                break
            if 'Traceback (most recent call last)' in follow:
                if error:
                    break           # only the first traceback
                in_traceback = True
                continue
            if not in_traceback:
                continue
            frame_match = FRAME.match(follow)
            if frame_match:
                frame = '%s:%s in %s' % frame_match.groups()
                if frame_match.group(3) == method:
                    own = frame
            elif ERROR.match(follow):
                error = follow.strip()[:WIDTH]
                break
        frames = [f for f in (own, frame) if f]
        found.append((match.group(1), list(dict.fromkeys(frames)), error))
    return found


def main(paths):
    seen = set()
    for path in paths:
        try:
            with open(path, errors='replace') as log:
                lines = log.read().splitlines()
        except OSError:
            continue
        for test, frames, error in summarise(lines):
            if test in seen:
                continue
            seen.add(test)
            print('  %s' % test)
            for frame in frames:
                print('      at %s' % frame)
            if error:
                print('      %s' % error)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
