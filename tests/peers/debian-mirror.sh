#!/usr/bin/env bash
# Prints the Debian archive this machine's apt already installs from, for tests/peers/install.sh
# to fetch Prometheus 3.x from sid there. Read from apt's own configuration only — the files
# `apt-config` names (Dir::Etc::sourcelist and Dir::Etc::sourceparts, so APT_CONFIG is honoured):
# classic one-line `deb` entries (sources.list, *.list) and deb822 stanzas (*.sources).
#
# The mirror is the URI of the first enabled `deb` entry whose suite is this release's own
# (VERSION_CODENAME from /etc/os-release, or stable/testing/unstable/sid), so neither
# <codename>-security/-updates nor a third party's suite (nodistro, cloud-sdk-bookworm, ...) is
# taken for it. No host name is written here: on a machine whose apt knows no Debian archive
# there is none we may assume, and this fails with one line saying so (exit 1).
set -euo pipefail

eval "$(apt-config shell SL Dir::Etc::sourcelist/f SP Dir::Etc::sourceparts/d)"
SL=${SL:-/etc/apt/sources.list}
SP=${SP:-/etc/apt/sources.list.d/}
SP=${SP%/}
codename=$( (. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}") || true)

files=()
[ -f "$SL" ] && files+=("$SL")
# apt reads only these two extensions in the parts directory, in name order.
for f in "$SP"/*.list "$SP"/*.sources; do [ -f "$f" ] && files+=("$f"); done
mapfile -t files < <(printf '%s\n' "${files[@]+"${files[@]}"}" | awk 'NF' | sort -u)

mirror=""
if [ ${#files[@]} -gt 0 ]; then
  mirror=$(awk -v want="$codename" '
    function wanted(suite) {
      return (want != "" && suite == want) || suite ~ /^(stable|testing|unstable|sid)$/
    }
    function found(uri) {
      if (uri ~ /^cdrom:/) return 0
      print uri
      done = 1
      exit
    }
    # One deb822 stanza, collected in f[] (keys lower-cased, continuation lines joined).
    function stanza(   types, uris, suites, nt, nu, ns, i, j, k, isdeb) {
      if (tolower(f["enabled"]) == "no") { delete f; return }
      nt = split(f["types"], types, /[ \t]+/)
      isdeb = 0
      for (i = 1; i <= nt; i++) if (types[i] == "deb") isdeb = 1
      if (isdeb) {
        nu = split(f["uris"], uris, /[ \t]+/)
        ns = split(f["suites"], suites, /[ \t]+/)
        for (j = 1; j <= ns; j++)
          if (wanted(suites[j]))
            for (k = 1; k <= nu; k++) if (uris[k] != "") found(uris[k])
      }
      delete f
    }
    FNR == 1 { if (deb822) stanza(); deb822 = (FILENAME ~ /\.sources$/); key = "" }
    deb822 {
      if ($0 ~ /^#/) next
      if ($0 ~ /^[ \t]*$/) { stanza(); key = ""; next }
      if ($0 ~ /^[ \t]/ && key != "") { f[key] = f[key] " " $0; next }
      if (match($0, /^[^: \t]+:/)) {
        key = tolower(substr($0, 1, RLENGTH - 1))
        f[key] = substr($0, RLENGTH + 1)
        gsub(/^[ \t]+|[ \t]+$/, "", f[key])
      }
      next
    }
    {
      # One-line format: deb [ options ] uri suite [component...]; "#" starts a comment.
      sub(/#.*/, "")
      if ($1 != "deb") next
      sub(/\[[^]]*\]/, "")
      $0 = $0
      if (wanted($3)) found($2)
    }
    END { if (!done && deb822) stanza() }
  ' "${files[@]}")
fi

if [ -z "$mirror" ]; then
  echo "tests/peers/debian-mirror.sh: no Debian mirror in this machine's apt sources (no enabled 'deb' entry for suite ${codename:-stable} in $SL or $SP/*.list, *.sources): add the Debian archive apt should use there, then rerun" >&2
  exit 1
fi
echo "$mirror"
