#!/usr/bin/env bash
# Check the mode, then install tyksync into its own virtual environment under
# $RUNNER_TEMP. No secret here.
#   MODE            plan or apply
#   PYTHON          the interpreter to build the venv from (actions/setup-python's output)
#   TYKSYNC_SOURCE  empty: the action's own checkout (ACTION_PATH), the version that
#                   `uses: ...@REF` pinned; `0.2.0`: tyksync==0.2.0 from PyPI; anything
#                   else: a pip requirement (`tyksync @ git+https://...@SHA`)
# Outputs: tyksync (the executable), python (the venv's interpreter).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${MODE:-} in
  plan | apply) ;;
  *) fail 1 "mode '${MODE:-}': expected plan or apply" ;;
esac
venv="${RUNNER_TEMP:?}/tyksync-venv"
source=${TYKSYNC_SOURCE:-}
if [[ -z $source ]]; then
  requirement=${ACTION_PATH:?}
elif [[ $source =~ ^[0-9][0-9A-Za-z.+!-]*$ ]]; then
  requirement="tyksync==$source"
else
  requirement=$source
fi
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$requirement"
"$venv/bin/tyksync" --version
output tyksync "$venv/bin/tyksync"
output python "$venv/bin/python"
