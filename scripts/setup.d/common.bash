# Sourced by the optional steps: the venv they install into ($VENV, default .venv, as scripts/setup.sh
# sets it) and the numpy they keep. Installing a package beside mxnet must not move numpy (pip would
# take the newest one), so every step installs together with the installed version pinned.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
VENV=${VENV:-.venv}
PY=$VENV/bin/python
NUMPY_PIN="numpy==$("$PY" -c 'import numpy; print(numpy.__version__)')"
