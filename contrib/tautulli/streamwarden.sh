#!/bin/sh
# Tautulli only runs scripts (.sh, .py, ...), not binaries: put this file in Tautulli's
# script folder, make it executable (chmod +x), and point it at the streamwarden binary.
# Every argument Tautulli passes goes to `streamwarden hook` unchanged, so the arguments
# you used for kill_stream.py work as they are.
exec "${STREAMWARDEN_BIN:-/usr/local/bin/streamwarden}" hook "$@"
