#!/bin/sh
# Prints the Debian version of the packages `make package` builds from this
# checkout: 1.2.3 when HEAD is tagged v1.2.3 (v1.2.3-rc1 gives 1.2.3~rc1, which
# sorts before 1.2.3), else 0.0.0~git<commit time, UTC>.<commit>, the commit that
# the binaries' --version names, with +dirty when the work tree has changes (as
# Go's vcs.modified, untracked files count); 0.0.0~dev outside a git checkout.
set -eu
cd "$(dirname "$0")/.."
if ! git rev-parse --verify -q HEAD >/dev/null 2>&1; then
	echo 0.0.0~dev
	exit 0
fi
if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
	v=$(echo "${tag#v}" | tr - '~')
else
	v=0.0.0~git$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S).$(git rev-parse --short=12 HEAD)
fi
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
	v=$v+dirty
fi
echo "$v"
