# Shared by the action's step scripts (sourced, not run). Bash, `set -euo pipefail`.
#
# The steps talk through files and step outputs only. The Dashboard secret reaches the
# steps that call tyksync against the Dashboard (plan.sh, apply.sh) as TYKSYNC_ACTION_SECRET
# and nothing else; the GitHub token reaches the steps that call `gh` (comment.sh,
# find-plan.sh) and nothing else. Neither is ever printed.

# `output NAME VALUE`: a step output (values here are single-line: paths, numbers, words).
output() {
  printf '%s=%s\n' "$1" "$2" >>"${GITHUB_OUTPUT:-/dev/null}"
}

# `fail CODE MESSAGE`: an error annotation on the run, then exit CODE.
fail() {
  local code=$1
  shift
  printf '::error title=tyksync::%s\n' "$*"
  exit "$code"
}

notice() {
  printf '::notice title=tyksync::%s\n' "$*"
}

# Sets `name`, the name of this Dashboard in markers and artifact names: the `environment`
# input, or `default`. It lands in artifact names, paths and a hidden HTML comment: keep
# it plain.
env_name() {
  name=${ENVIRONMENT:-}
  name=${name:-default}
  if [[ ! $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]]; then
    fail 1 "environment '$name': use letters, digits, '.', '_' and '-' only"
  fi
}

# The Dashboard secret, from the action's input, in the variable tyksync reads it from
# (TYK_DASHBOARD_SECRET, or the `secret_env` of a tyksync.toml environment).
take_secret() {
  local variable=${SECRET_VARIABLE:-}
  variable=${variable:-TYK_DASHBOARD_SECRET}
  if [[ ! $variable =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    fail 1 "secret-variable '$variable' is not a variable name"
  fi
  if [[ -n ${TYKSYNC_ACTION_SECRET:-} ]]; then
    export "$variable=$TYKSYNC_ACTION_SECRET"
  fi
  unset TYKSYNC_ACTION_SECRET
  if [[ -n ${DASHBOARD_URL:-} ]]; then
    export TYK_DASHBOARD_URL=$DASHBOARD_URL
  fi
}

# The options every tyksync call of the action shares.
common_args() {
  TYKSYNC_ARGS=(--no-color)
  if [[ -n ${ENVIRONMENT:-} ]]; then
    TYKSYNC_ARGS+=(--env "$ENVIRONMENT")
  fi
  if [[ -n ${MAX_DELETES:-} ]]; then
    if [[ ! $MAX_DELETES =~ ^[0-9]+$ ]]; then
      fail 1 "max-deletes '$MAX_DELETES' is not a number"
    fi
    TYKSYNC_ARGS+=(--max-deletes "$MAX_DELETES")
  fi
}

# The link to this workflow run, where its artifacts are.
run_url() {
  printf '%s/%s/actions/runs/%s' "${GITHUB_SERVER_URL:-https://github.com}" \
    "${GITHUB_REPOSITORY:-}" "${GITHUB_RUN_ID:-}"
}

helper() {
  "${TYKSYNC_PYTHON:-python3}" "$(dirname "${BASH_SOURCE[0]}")/gh_json.py" "$@"
}
