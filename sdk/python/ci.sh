#!/usr/bin/env bash
# Installs the parley Python package as a user would, offline
# (pip install --no-build-isolation, no package index), into a throwaway
# venv, and runs its unittest suite against that install.
#
#   bash sdk/python/ci.sh            # PYTHON=/path/to/python3 to pick one
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# With --no-build-isolation the build runs on the venv's own setuptools,
# which below 70.1 needs the wheel package for bdist_wheel. A venv sees its
# base's packages only with --system-site-packages, so pick the first
# python3 whose base has what the build needs: pyenv's python3 has
# setuptools but no wheel; Debian's /usr/bin/python3 has both
# (python3-setuptools, python3-wheel) and pip (python3-pip).
can_build='import importlib.util, setuptools, sys
if importlib.util.find_spec("pip") is None:
    sys.exit(1)
try:
    import wheel
except ImportError:
    sys.exit(tuple(int(x) for x in setuptools.__version__.split(".")[:2]) < (70, 1))'
py=""
for cand in ${PYTHON:-} python3 /usr/bin/python3; do
	if command -v "$cand" >/dev/null && "$cand" -c "$can_build" 2>/dev/null; then
		py=$cand
		break
	fi
done
if [ -z "$py" ]; then
	echo "sdk/python/ci.sh: no python3 here has pip, setuptools and wheel to build with (on Debian: apt-get install python3-pip python3-setuptools python3-wheel)" >&2
	exit 1
fi

venv=$tmp/venv
# --without-pip: the base's pip, seen through the system site packages,
# installs into the venv (and ensurepip would cost ten seconds).
"$py" -m venv --system-site-packages --without-pip "$venv"
vpy=$venv/bin/python
echo "sdk/python/ci.sh: $("$vpy" --version) from $py, setuptools $("$vpy" -c 'import setuptools; print(setuptools.__version__)')"
# A copy, so that the build's leftovers (build/, *.egg-info) stay out of the
# source tree; --ignore-installed: into the venv even if the base has a parley.
mkdir "$tmp/src"
cp -R "$here/pyproject.toml" "$here/README.md" "$here/src" "$tmp/src/"
"$vpy" -m pip install --quiet --no-build-isolation --no-index --no-deps --ignore-installed "$tmp/src"
export PYTHONDONTWRITEBYTECODE=1
cd "$tmp" # not the source tree: the tests import the installed package
"$vpy" -c 'import parley, sys; assert parley.__file__.startswith(sys.prefix), parley.__file__; print("sdk/python/ci.sh: parley", parley.__version__, "installed at", parley.__file__)'
"$vpy" -m unittest discover -s "$here/tests" -t "$here/tests"
