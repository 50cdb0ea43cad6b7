#!/usr/bin/env bash
# Plan mode: plan once, keeping the Markdown for the PR comment, the saved plan and the
# full JSON plan for the artifact. Given the Dashboard secret; never the GitHub token.
#   TYKSYNC, TYKSYNC_PYTHON  from install.sh
#   MANIFESTS                manifest paths, separated by spaces or newlines
#   DASHBOARD_URL, TYKSYNC_ACTION_SECRET, SECRET_VARIABLE, ENVIRONMENT, MAX_DELETES
# Outputs: exitcode (tyksync plan --detailed-exitcode: 0 no changes, 2 changes, 3 apply
# would refuse it, 1 error), dir (what to upload), saved (true when plan.json was written),
# markdown (the comment's body).
# Exit: 0 for 0 and 2; non-zero for an error or a plan apply would refuse, after the
# outputs are written, so the comment step still shows the reviewer why.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_name
dir="${RUNNER_TEMP:?}/tyksync-plan-$name"
rm -rf "$dir"
mkdir -p "$dir"
output dir "$dir"
output markdown "$dir/plan.md"
take_secret
common_args
read -r -d '' -a paths <<<"${MANIFESTS:-manifests}" || true
if ((${#paths[@]} == 0)); then
  fail 1 "no manifests given"
fi
artifact="tyksync-plan-$name"
note="full plan: \`plan.json\` in the \`$artifact\` artifact of [this run]($(run_url))"

code=0
"${TYKSYNC:-tyksync}" plan "${TYKSYNC_ARGS[@]}" --format markdown --detailed-exitcode \
  --out "$dir/plan.json" --truncation-note "$note" -- "${paths[@]}" >"$dir/plan.md" || code=$?
output exitcode "$code"

if [[ -f $dir/plan.json ]]; then
  helper strip-saved "$dir/plan.json" "$dir/plan-full.json"
  output saved true
else
  output saved false
fi
if [[ -n ${GITHUB_STEP_SUMMARY:-} && -s $dir/plan.md ]]; then
  cat "$dir/plan.md" >>"$GITHUB_STEP_SUMMARY"
fi

case $code in
  0) notice "$name: no changes" ;;
  2) notice "$name: the plan has changes; review the PR comment" ;;
  3) fail 3 "$name: apply would refuse this plan (see the CAUTION line of the plan);" \
    "merging it applies nothing until someone runs the workflow with force" ;;
  *) fail 1 "$name: tyksync plan failed (exit $code); the errors are above" ;;
esac
