#!/bin/bash
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
# Stand-ins for the devstack functions devstack/plugin.sh uses, for
# tests/devstack/test_plugin.py. The ini functions edit the files for real
# (through Python's configparser, as devstack's sed edits them); everything
# that would install, start or upload something only records its call, one
# line per call, in $STUB_LOG. Commands that read stdin save it under
# $STUB_OUT. With STUB_REAL_DOCKER=1 the real docker CLI is used.
#
# Inputs: STUB_LOG, STUB_OUT, STUB_PYTHON, STUB_DISTRO (deb or rpm),
# ENABLED_SERVICES (comma separated), STUB_IMAGE_EXISTS (1: Glance has it),
# STUB_DOCKER_PS and STUB_DOCKER_IMAGES (ids "docker ps" and "docker images"
# print), STUB_LOCAL_IMAGE (0: "docker image inspect" finds nothing).

: "${STUB_LOG:?}" "${STUB_OUT:?}" "${STUB_PYTHON:?}"

function stub_record {
    printf '%s\n' "$*" >> "$STUB_LOG"
}

function _stub_ini {
    "$STUB_PYTHON" - "$@" <<'EOF'
import configparser
import sys

action, path, section, option = sys.argv[1:5]
parser = configparser.RawConfigParser(strict=False)
parser.optionxform = str
parser.read(path)
has = (parser.has_option(section, option) if section != 'DEFAULT'
       else option in parser.defaults())
if action == 'get':
    print(parser.get(section, option) if has else '')
    sys.exit(0)
if action == 'set':
    if section != 'DEFAULT' and not parser.has_section(section):
        parser.add_section(section)
    parser.set(section, option, sys.argv[5])
elif action == 'delete':
    if section == 'DEFAULT':
        parser.defaults().pop(option, None)
    elif parser.has_section(section):
        parser.remove_option(section, option)
with open(path, 'w') as f:
    parser.write(f)
EOF
}

# iniset [-sudo] file section option value
function iniset {
    [[ "$1" == "-sudo" ]] && shift
    _stub_ini set "$1" "$2" "$3" "$4"
}

# iniget file section option
function iniget {
    _stub_ini get "$1" "$2" "$3"
}

# inidelete [-sudo] file section option
function inidelete {
    [[ "$1" == "-sudo" ]] && shift
    _stub_ini delete "$1" "$2" "$3"
}

function is_service_enabled {
    local service
    for service in "$@"; do
        if [[ ",$ENABLED_SERVICES," == *",$service,"* ]]; then
            return 0
        fi
    done
    return 1
}

function is_ubuntu {
    [[ "${STUB_DISTRO:-deb}" == "deb" ]]
}

function trueorfalse {
    local default=$1 value=${!2:-}
    case "${value,,}" in
        1|yes|true|on) echo True ;;
        0|no|false|off) echo False ;;
        *) echo "$default" ;;
    esac
}

function echo_summary {
    echo "summary: $*"
}

function die {
    shift
    echo "die: $*" >&2
    exit 1
}

function exit_distro_not_supported {
    stub_record "exit_distro_not_supported $*"
    exit 1
}

function install_package {
    stub_record "install_package $*"
}

function start_service {
    stub_record "start_service $*"
}

function restart_service {
    stub_record "restart_service $*"
}

function systemctl {
    stub_record "systemctl $*"
}

function setup_install {
    stub_record "setup_install $*"
}

function setup_develop {
    stub_record "setup_develop $*"
}

function pip_install {
    stub_record "pip_install $*"
    if [[ "$1" == "-r" ]]; then
        cp "$2" "$STUB_OUT/pip-requirements.txt"
    fi
}

function add_user_to_group {
    stub_record "add_user_to_group $*"
}

function sudo {
    stub_record "sudo $*"
    "$@"
}

if [[ $EUID -ne 0 ]]; then
    # "sudo install -o root" as a normal user: install without chown.
    function install {
        local args=()
        while [[ $# -gt 0 ]]; do
            case "$1" in
                -o|-g) shift 2 ;;
                *) args+=("$1"); shift ;;
            esac
        done
        command install "${args[@]}"
    }
fi

if [[ "${STUB_REAL_DOCKER:-0}" != "1" ]]; then
    function docker {
        stub_record "docker $*"
        case "$1" in
            import)
                printf '%s\0' "$@" > "$STUB_OUT/docker-import.args"
                cat > "$STUB_OUT/docker-import.tar"
                ;;
            save)
                if [[ "$2" == "-o" ]]; then
                    printf 'FAKE-DOCKER-SAVE %s\n' "$4" > "$3"
                else
                    printf 'FAKE-DOCKER-SAVE %s\n' "$2"
                fi
                ;;
            image) [[ "$2" != inspect || "${STUB_LOCAL_IMAGE:-1}" == 1 ]] ;;
            ps) echo "${STUB_DOCKER_PS:-}" ;;
            images) echo "${STUB_DOCKER_IMAGES:-}" ;;
            *) return 0 ;;
        esac
    }
fi

function openstack {
    stub_record "openstack $*"
    case " $* " in
        *" image show "*) [[ "${STUB_IMAGE_EXISTS:-0}" == "1" ]] ;;
        *" image create "*)
            printf '%s\0' "$@" > "$STUB_OUT/image-create.args"
            cat > "$STUB_OUT/image-upload.bin"
            ;;
    esac
}
