#!/bin/sh
# zoobuild image entrypoint: run "$@" as LOCAL_USER_ID:LOCAL_GROUP_ID when given (and we
# are root), so files written to mounted volumes belong to the caller; else as is.
set -e
if [ -n "${LOCAL_USER_ID:-}" ] && [ "$(id -u)" = "0" ]; then
    uid="$LOCAL_USER_ID"
    gid="${LOCAL_GROUP_ID:-$LOCAL_USER_ID}"
    case "$uid$gid" in *[!0-9]*) echo "zoo-entrypoint: LOCAL_USER_ID/LOCAL_GROUP_ID must be numbers" >&2; exit 2;; esac
    if ! grep -q "^[^:]*:[^:]*:$uid:" /etc/passwd; then
        echo "zoo:x:$uid:$gid:zoo:/home/zoo:/bin/sh" >> /etc/passwd
    fi
    if ! grep -q "^[^:]*:[^:]*:$gid:" /etc/group; then
        echo "zoo:x:$gid:" >> /etc/group
    fi
    export HOME=/home/zoo USER=zoo
    mkdir -p "$HOME" && chown "$uid:$gid" "$HOME"
    exec gosu "$uid:$gid" "$@"
fi
exec "$@"
