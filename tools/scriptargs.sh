# shellcheck shell=bash
# tools/scriptargs.sh -- the command-line convention of the project's shell scripts, sourced by
# them (not run): the gmflow CLI's, and tools/scriptargs.py's for the Python scripts.
#
#   . "$(dirname "$0")/scriptargs.sh"             (from tools/; from bench/: ../tools/scriptargs.sh)
#
# defines
#   me                the script's name, for messages;
#   usage             the script's header comment (its lines after "#!" up to the first line that
#                     is not a comment) on stdout: the help;
#   usage_error MSG   "me: MSG" and the header's "usage:" paragraph on stderr, exit status 2;
#   positional_args ARGS...
#                     for scripts without options: -h / --help prints the help and exits 0, any
#                     other argument starting with "-" is a usage error, the rest go to the array
#                     pos.
me=${0##*/}
_scriptargs_self=$(cd "$(dirname "$0")" && pwd)/$me
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$_scriptargs_self"; }
usage_error() {
    echo "$me: $*" >&2
    usage | sed -n '/^ *usage:/,/^$/{/^$/!p}' >&2
    exit 2
}
positional_args() {
    pos=()
    local a
    for a in "$@"; do
        case "$a" in
        -h | --help) usage; exit 0 ;;
        -*) usage_error "unknown option '$a'" ;;
        *) pos+=("$a") ;;
        esac
    done
}
