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
#
# `tools/aio tempest [REGEX]` (sourced by tools/aio): Tempest, the
# community's test suite for OpenStack clouds, against the running
# all-in-one. Tempest has a venv of its own (its pins differ from the
# services'): $AIO_DIR/tempest-venv, pinned by tools/tempest/constraints.txt.
# The selection is tools/tempest/include.txt minus tools/tempest/exclude.txt
# (or REGEX instead of include.txt); the configuration is written from the
# cloud itself by tools/aio.d/tempest.py on every run.

TEMPEST_VENV=$AIO_DIR/tempest-venv
TEMPEST_WS=$AIO_DIR/tempest
TEMPEST_DIR=$TOP/tools/tempest

install_tempest() {
    local want stamp=$TEMPEST_VENV/.aio-stamp
    want=$(sha256sum <"$TEMPEST_DIR/constraints.txt" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        [ -x "$TEMPEST_VENV/bin/python" ] || "$AIO_PYTHON" -m venv "$TEMPEST_VENV"
        "$TEMPEST_VENV/bin/pip" install -q -U pip
        "$TEMPEST_VENV/bin/pip" install -c "$TEMPEST_DIR/constraints.txt" tempest
        echo "$want" >"$stamp"
    else
        echo "tempest venv up to date"
    fi
    "$TEMPEST_VENV/bin/tempest" --version
}

write_tempest_conf() {
    if [ ! -f "$TEMPEST_WS/.stestr.conf" ]; then
        rm -rf "$TEMPEST_WS"
        "$TEMPEST_VENV/bin/tempest" init --workspace-path "$AIO_DIR/tempest-workspace.yaml" "$TEMPEST_WS"
    fi
    mkdir -p "$TEMPEST_WS/logs"
    aio_py_script tempest.py --output "$TEMPEST_WS/etc/tempest.conf" --password "$PW" \
        --nova-conf "$ETC/nova/nova.conf" --log-dir "$TEMPEST_WS/logs"
    cat "$TEMPEST_WS/etc/tempest.conf"
}

aio_py_script() {
    local script=$1; shift
    OS_CLIENT_CONFIG_FILE=$AIO_DIR/clouds.yaml "$V/python" "$TOP/tools/aio.d/$script" "$@"
}

# tempest_count LABEL FILE: N from stestr's " - LABEL: N" totals line.
tempest_count() {
    grep -E "^ - $1: [0-9]+" "$2" | tail -1 | grep -oE '[0-9]+$' || echo 0
}

cmd_tempest() {
    [ -f "$AIO_DIR/clouds.yaml" ] || die "the all-in-one is not up ('tools/aio up')"
    http_ok http://127.0.0.1:8774/ || die "Nova's API does not answer: is the all-in-one up? ('tools/aio status')"
    mkdir -p "$LOGS"
    run_step tempest-install "Tempest in $TEMPEST_VENV (pinned by tools/tempest/constraints.txt)" install_tempest
    run_step tempest-config "$TEMPEST_WS/etc/tempest.conf, written from the running cloud" write_tempest_conf
    local select=(--include-list "$TEMPEST_DIR/include.txt")
    [ $# -gt 0 ] && select=(--regex "$1")
    local out=$LOGS/tempest-run.log start
    start=$(date +%s)
    say "tempest: running ${*:-tools/tempest/include.txt} minus tools/tempest/exclude.txt, concurrency ${AIO_TEMPEST_CONCURRENCY:-2}"
    (cd "$TEMPEST_WS" && "$TEMPEST_VENV/bin/tempest" run "${select[@]}" \
        --exclude-list "$TEMPEST_DIR/exclude.txt" \
        --concurrency "${AIO_TEMPEST_CONCURRENCY:-2}") 2>&1 | tee "$out"
    local secs=$(( $(date +%s) - start ))
    local p s f u
    p=$(tempest_count Passed "$out")
    s=$(tempest_count Skipped "$out")
    f=$(tempest_count Failed "$out")
    u=$(tempest_count "Unexpected Success" "$out")
    f=$(( f + u ))
    # No totals at all (Tempest crashed, nothing selected) is a failure.
    grep -qE '^ - Passed: ' "$out" || f=$(( f + 1 ))
    echo
    echo "Tempest summary: $p passed, $s skipped, $f failed in $((secs / 60))m$((secs % 60))s" \
         "(config $TEMPEST_WS/etc/tempest.conf, log $TEMPEST_WS/logs/tempest.log, output $out)"
    if [ "$f" -gt 0 ]; then
        echo "Failed tests:"
        (cd "$TEMPEST_WS" && "$TEMPEST_VENV/bin/stestr" failing --list 2>/dev/null | sed 's/^/    /')
    fi
    echo "$p passed, $f failed"
    [ "$f" -eq 0 ] && [ "$p" -gt 0 ]
}
