# shellcheck shell=bash
# tests/vm/lib.sh: shell functions for the VM test bed, sourced by test scripts and by
# build-image/launch themselves.
#
# A test script does:
#     source "$(dirname "$0")/lib.sh"
#     vm_start --image-dir "$images"      # boots, waits for ssh, arms cleanup on EXIT
#     vm_ssh 'getent passwd root'         # command string, as with ssh(1)
#     vm_ssh_as alice 'id'                # ssh login as alice (key must be in her record)
#     vm_stop                             # optional: the EXIT hook does it anyway
#
# Cleanup: vm_start registers an EXIT hook that always stops QEMU and any virtiofsd whose
# command line points into the VM directory, even when the script fails. Scripts that need
# their own cleanup add it with `vm_on_exit CMD` instead of `trap ... EXIT`, which would
# replace ours. Hooks run in reverse order of registration.
#
# Variables (set by vm_start, usable afterwards): VM_DIR, VM_SSH_PORT, VM_SSH_KEY.
# Knobs: VMUSER_CACHE_DIR (debootstrap cache, default /var/cache/vmuser-test),
# VMUSER_KEEP_VM_DIR=1 (keep a VM directory that vm_start created itself),
# VMUSER_STOP_TIMEOUT (seconds to wait for poweroff, default 60).

VM_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# ---- small helpers shared by build-image, launch and the tests --------------------------

vm_log() { printf '%s: %s\n' "${VM_LOG_TAG:-vm}" "$*" >&2; }
vm_die() { printf '%s: error: %s\n' "${VM_LOG_TAG:-vm}" "$*" >&2; exit 1; }

# Seconds since the epoch, with one decimal, and the difference of two such stamps.
vm_now() { local t; t=$(date +%s.%N); printf '%s\n' "${t:0:-8}"; }
vm_elapsed() { awk -v a="$1" -v b="${2:-$(vm_now)}" 'BEGIN { printf "%.1f\n", b - a }'; }

# Install the named Debian packages if any of them is missing; apt-get update only then.
vm_ensure_packages() {
    local missing=() p
    for p in "$@"; do
        if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
            missing+=("$p")
        fi
    done
    ((${#missing[@]})) || return 0
    [[ $EUID -eq 0 ]] || vm_die "host packages missing (${missing[*]}) and not root to install them"
    vm_log "installing host packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
        vm_die "apt-get update failed (needed to install ${missing[*]})"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
        vm_die "apt-get install failed for: ${missing[*]}"
}

# ---- exit hooks ---------------------------------------------------------------------------

_VM_EXIT_HOOKS=()

_vm_run_exit_hooks() {
    local rc=$? i
    set +e
    # shellcheck disable=SC2034 # read by the hooks
    VM_EXIT_STATUS=$rc
    for ((i = ${#_VM_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
        eval "${_VM_EXIT_HOOKS[i]}"
    done
    _VM_EXIT_HOOKS=()
    return "$rc"
}

# vm_on_exit CMD: run the shell string CMD when the script exits (any way it exits); CMD can
# read the script's exit status from VM_EXIT_STATUS.
vm_on_exit() {
    if ((${#_VM_EXIT_HOOKS[@]} == 0)); then
        trap _vm_run_exit_hooks EXIT
        # Turn signals into a normal exit so the EXIT hooks run.
        trap 'exit 130' INT
        trap 'exit 143' TERM
        trap 'exit 129' HUP
    fi
    _VM_EXIT_HOOKS+=("$1")
}

# ---- the guest image with this tree in it ---------------------------------------------------

# vm_build_guest_image TOP WORK: build the guest packages of TOP (vmuser-agent, libpam-vmuser:
# scripts/build-debs --guest-only) into WORK/debs and make the test image in WORK/image with
# them installed by apt, as an admin installs them (the debootstrap part is cached).
# Every VM script gets the project into its guest this one way; sets VM_IMAGE_DIR.
vm_build_guest_image() {
    local top=$1 work=$2
    vm_ensure_packages debhelper dpkg-dev
    vm_log "building the guest packages (dpkg-buildpackage, profile pkg.vmuser.guest-only)"
    "$top/scripts/build-debs" "$work/debs" --guest-only >/dev/null || vm_die "building the guest packages failed"
    "$VM_LIB_DIR/build-image" --out "$work/image" \
        --deb "$(echo "$work"/debs/vmuser-agent_*.deb)" --deb "$(echo "$work"/debs/libpam-vmuser_*.deb)" ||
        vm_die "build-image failed"
    VM_IMAGE_DIR=$work/image
}

# ---- VM lifecycle -------------------------------------------------------------------------

_vm_ssh_opts() {
    printf '%s\n' -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes \
        -o IdentitiesOnly=yes -o ConnectTimeout=10 -o ServerAliveInterval=5 \
        -o ServerAliveCountMax=6 -i "${VM_SSH_KEY:-$VM_DIR/id_ed25519}" \
        -p "${VM_SSH_PORT:-$(cat "$VM_DIR/ssh-port")}"
}

# vm_start [launch options...]: boot a VM and wait for ssh.
# --image-dir defaults to $VM_IMAGE_DIR; --vm-dir defaults to $VM_DIR, else a fresh temporary
# directory that is removed at exit (unless VMUSER_KEEP_VM_DIR=1).
vm_start() {
    local args=("$@") have_vm_dir=0 have_image_dir=0 a
    for a in "${args[@]}"; do
        case $a in
        --vm-dir | --vm-dir=*) have_vm_dir=1 ;;
        --image-dir | --image-dir=*) have_image_dir=1 ;;
        esac
    done
    if ((!have_image_dir)); then
        [[ -n ${VM_IMAGE_DIR:-} ]] || vm_die "vm_start: no --image-dir and VM_IMAGE_DIR is not set"
        args+=(--image-dir "$VM_IMAGE_DIR")
    fi
    if ((!have_vm_dir)); then
        if [[ -z ${VM_DIR:-} ]]; then
            VM_DIR=$(mktemp -d "${TMPDIR:-/tmp}/vmuser-vm.XXXXXX")
            if [[ ${VMUSER_KEEP_VM_DIR:-0} != 1 ]]; then
                # shellcheck disable=SC2016 # expanded when the hook runs
                vm_on_exit 'rm -rf --one-file-system -- "$VM_DIR"'
            fi
        fi
        args+=(--vm-dir "$VM_DIR")
    else
        # Find the value for our own use (cleanup, ssh).
        local i
        for ((i = 0; i < ${#args[@]}; i++)); do
            case ${args[i]} in
            --vm-dir) VM_DIR=${args[i + 1]:-} ;;
            --vm-dir=*) VM_DIR=${args[i]#--vm-dir=} ;;
            esac
        done
    fi
    VM_DIR=$(realpath -m -- "$VM_DIR")
    # Armed before launch so that a failed boot is cleaned up too; on failure show the console.
    # shellcheck disable=SC2016 # expanded when the hook runs
    vm_on_exit '_vm_cleanup "$VM_EXIT_STATUS"'
    # In the background so that a signal to this script is handled at once, not after boot.
    "$VM_LIB_DIR/launch" "${args[@]}" &
    _VM_LAUNCH_PID=$!
    local rc=0
    wait "$_VM_LAUNCH_PID" || rc=$?
    _VM_LAUNCH_PID=
    ((rc == 0)) || vm_die "launching the VM in $VM_DIR failed"
    VM_SSH_PORT=$(<"$VM_DIR/ssh-port")
    VM_SSH_KEY=$VM_DIR/id_ed25519
}

# vm_ssh CMD...: run a command in the guest as root (arguments joined as by ssh(1)).
vm_ssh() {
    local opts
    mapfile -t opts < <(_vm_ssh_opts)
    ssh "${opts[@]}" root@127.0.0.1 -- "$@"
}

# vm_ssh_as USER CMD...: a real ssh login (PAM session included) as USER, with VM_SSH_KEY
# unless VM_SSH_AS_KEY names another key. The guest's sshd also asks userdb
# (AuthorizedKeysCommand userdbctl), so a pushed record's sshAuthorizedKeys are honoured.
vm_ssh_as() {
    local user=$1 opts
    shift
    mapfile -t opts < <(VM_SSH_KEY=${VM_SSH_AS_KEY:-$VM_SSH_KEY} _vm_ssh_opts)
    ssh "${opts[@]}" "$user@127.0.0.1" -- "$@"
}

_vm_qemu_pid() {
    local pid
    [[ -n ${VM_DIR:-} && -s $VM_DIR/qemu.pid ]] || return 1
    pid=$(<"$VM_DIR/qemu.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    # Make sure the pid is still our QEMU and not a recycled number.
    [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$VM_DIR/qmp.sock" ||
        return 1
    printf '%s\n' "$pid"
}

# Wait up to $2 seconds for pid $1 to go away.
_vm_wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# Stop every virtiofsd whose command line points into VM_DIR (started by tests or vmuser).
_vm_kill_virtiofsd() {
    local pid_dir pid exe
    [[ -n ${VM_DIR:-} ]] || return 0
    for pid_dir in /proc/[0-9]*; do
        pid=${pid_dir#/proc/}
        exe=$(readlink "$pid_dir/exe" 2>/dev/null) || continue
        [[ ${exe##*/} == virtiofsd* ]] || continue
        tr '\0' '\n' <"$pid_dir/cmdline" 2>/dev/null | grep -qF -- "$VM_DIR/" || continue
        vm_log "stopping virtiofsd $pid"
        kill -TERM "$pid" 2>/dev/null
        _vm_wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null
    done
    # An unprivileged one names no path of VM_DIR (it serves /run/vmuser/server-root/ID): its
    # pid file does.
    for pid_dir in "$VM_DIR"/homes/*/virtiofsd.pid; do
        [[ -f $pid_dir ]] || continue
        read -r pid _ <"$pid_dir" || continue
        [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */virtiofsd* ]] || continue
        vm_log "stopping virtiofsd $pid"
        kill -TERM "$pid" 2>/dev/null
        _vm_wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null
    done
    return 0
}

# The idmapped staging mounts of home exports live in VM_DIR/homes/NAME/mnt/home: a run that
# ends with a user still exported (a failed test, say) must not leave them mounted on the host.
_vm_unmount_staging() {
    local target
    [[ -n ${VM_DIR:-} ]] || return 0
    findmnt -rn -o TARGET | grep -F -- "$VM_DIR/" | sort -r | while read -r target; do
        vm_log "unmounting $target"
        umount -l -- "$target" 2>/dev/null || true
    done
    return 0
}

# vm_stop: power the guest off over ssh, wait, then kill QEMU after a timeout. Returns 1
# when QEMU had to be killed (a unit hanging at shutdown is worth a look), else 0.
vm_stop() {
    local pid timeout=${VMUSER_STOP_TIMEOUT:-60} rc=0
    if pid=$(_vm_qemu_pid); then
        # ssh usually dies with the connection (255): that is the expected outcome.
        local opts
        mapfile -t opts < <(_vm_ssh_opts)
        timeout 20 ssh "${opts[@]}" root@127.0.0.1 -- systemctl poweroff >/dev/null 2>&1 || true
        if ! _vm_wait_gone "$pid" "$timeout"; then
            vm_log "guest did not power off within ${timeout}s; killing QEMU $pid"
            rc=1
            kill -TERM "$pid" 2>/dev/null
            _vm_wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null
            _vm_wait_gone "$pid" 5 || vm_log "QEMU $pid survived SIGKILL"
        fi
    fi
    _vm_kill_virtiofsd
    rm -f -- "${VM_DIR:?}/qemu.pid" "$VM_DIR/root.qcow2"
    return "$rc"
}

# The EXIT hook: after a failure show the end of the console, then stop everything.
_vm_cleanup() {
    local rc=$1 pid
    # Interrupted during boot: launch stops its QEMU itself when it is terminated.
    if [[ -n ${_VM_LAUNCH_PID:-} ]]; then
        kill -TERM "$_VM_LAUNCH_PID" 2>/dev/null
        wait "$_VM_LAUNCH_PID" 2>/dev/null
        _VM_LAUNCH_PID=
    fi
    if ((rc != 0)) && [[ -s ${VM_DIR:-}/console.log ]]; then
        vm_log "last console lines ($VM_DIR/console.log):"
        tail -n 25 "$VM_DIR/console.log" | sed 's/^/    /' >&2
    fi
    if pid=$(_vm_qemu_pid); then
        if ((rc == 0)); then
            vm_stop
        else
            # A failed run does not wait for a clean poweroff.
            kill -TERM "$pid" 2>/dev/null
            _vm_wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null
            _vm_wait_gone "$pid" 5 || true
        fi
    fi
    _vm_kill_virtiofsd
    _vm_unmount_staging
    [[ -z ${VM_DIR:-} ]] || rm -f -- "$VM_DIR/qemu.pid" "$VM_DIR/root.qcow2"
}
