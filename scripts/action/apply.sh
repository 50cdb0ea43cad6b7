#!/usr/bin/env bash
# Apply mode: `tyksync apply --plan` with the reviewed plan; tyksync plans again and
# applies only an identical plan (a stale one is exit 3, with no change made). Given the
# Dashboard secret; never the GitHub token.
#   TYKSYNC, PLAN_FILE, FORCE (true/false), KEY_SINK (empty: $RUNNER_TEMP), and as plan.sh
# Issued keys go to the key sink only (a 0600 file outside the workspace); the action
# never uploads or prints it. Outputs: key-sink, keys-issued, result (apply's JSON
# outcome, never a key), journal.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_name
take_secret
common_args
sink=${KEY_SINK:-}
sink=${sink:-$RUNNER_TEMP/tyksync-keys-$name.jsonl}
result="$RUNNER_TEMP/tyksync-result-$name.json"
journal="$RUNNER_TEMP/tyksync-journal-$name.jsonl"
output key-sink "$sink" # before applying: a key issued by a run that fails later is there too
output result "$result"
output journal "$journal"
args=(apply --plan "${PLAN_FILE:?}" --format json --key-sink "$sink" --journal "$journal")
case ${FORCE:-false} in
  true) args+=(--force) ;;
  false | "") ;;
  *) fail 1 "force '$FORCE': true or false" ;;
esac

code=0
"${TYKSYNC:-tyksync}" "${args[@]}" "${TYKSYNC_ARGS[@]}" >"$result" || code=$?
if [[ -s $result ]]; then
  cat "$result" # the outcome of each action; never a key
  output keys-issued "$(helper field keys.issued <"$result")"
else
  output keys-issued 0
fi
case $code in
  0) notice "$name: applied the reviewed plan" ;;
  3) fail 3 "$name: the reviewed plan was NOT applied, and nothing was changed: it is" \
    "stale (the Dashboard or the manifests changed since it was reviewed) or apply refuses" \
    "it (see above). Plan again in a pull request; a plan refused for its deletes can be" \
    "applied by running this workflow by hand with force" ;;
  *) fail 1 "$name: tyksync apply failed (exit $code); see above. Running it again converges" ;;
esac
