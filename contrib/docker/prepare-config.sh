#!/bin/sh
# Turns the example config into the image's default one: started as root inside the
# container only to open the capture, the daemon then switches to the streamwarden user.
# Edits the example's own [capture] table (a second table would make the file invalid).
set -eu
config="$1"
sed -i 's/^# user = "streamwarden".*$/user = "streamwarden"/' "$config"
grep -q '^user = "streamwarden"' "$config" || {
  echo "prepare-config: no '# user = \"streamwarden\"' line to enable in $config" >&2
  exit 1
}
