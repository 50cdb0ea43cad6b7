#!/usr/bin/env bash
# Apply mode: find the pull request merged as the pushed commit (GITHUB_SHA), and download
# the saved plan its plan job uploaded (the newest artifact `tyksync-plan-NAME` made for
# the PR's head commit). Given the GitHub token (GH_TOKEN); never the Dashboard secret.
# Outputs: plan-file, pr, run-id.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_name
repo=${GITHUB_REPOSITORY:?}
sha=${GITHUB_SHA:?}
case ${GITHUB_EVENT_NAME:-} in
  pull_request | pull_request_target)
    fail 1 "mode apply runs on the push to the default branch (or workflow_dispatch), not on a pull request"
    ;;
esac

pulls=$(gh api "repos/$repo/commits/$sha/pulls")
found=$(helper merged-pr "$sha" <<<"$pulls")
if [[ -z $found ]]; then
  fail 1 "no merged pull request has commit $sha: apply mode applies only a plan reviewed in a pull request"
fi
read -r pr head <<<"$found"
artifact="tyksync-plan-$name"
artifacts=$(gh api --paginate "repos/$repo/actions/artifacts?name=$artifact&per_page=100")
run=$(helper artifact-run "$head" <<<"$artifacts")
if [[ -z $run ]]; then
  fail 1 "no saved plan ($artifact) for pull request #$pr at its last commit $head:" \
    "its plan job did not save one, or the artifact expired; nothing was applied"
fi
dir="$RUNNER_TEMP/tyksync-apply-$name"
rm -rf "$dir"
gh run download "$run" --repo "$repo" --name "$artifact" --dir "$dir"
if [[ ! -f $dir/plan.json ]]; then
  fail 1 "the artifact $artifact of run $run holds no plan.json"
fi
printf 'Saved plan of pull request #%s (plan run %s)\n' "$pr" "$run"
output plan-file "$dir/plan.json"
output pr "$pr"
output run-id "$run"
