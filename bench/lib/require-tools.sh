# Sourced by the bench scripts and .ci/run: installs the Debian packages of the commands that are missing.
# Usage: require_tools COMMAND:PACKAGE ...   (COMMAND may be an absolute path, e.g. /usr/bin/time:time)
require_tools() {
  local missing=() spec cmd
  for spec in "$@"; do
    cmd=${spec%%:*}
    if [[ $cmd == /* ]]; then [ -x "$cmd" ] && continue; else command -v "$cmd" >/dev/null && continue; fi
    missing+=("${spec#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}
