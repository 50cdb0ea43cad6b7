#!/usr/bin/env bash
# Plan mode: post the plan as ONE comment on the pull request, edited in place on every
# push: the comment is found by its hidden marker `<!-- tyksync-plan:NAME -->` (one per
# environment). Given the GitHub token (GH_TOKEN); never the Dashboard secret.
#   PR_NUMBER, PLAN_EXITCODE, MARKDOWN (plan.sh's outputs), ENVIRONMENT,
#   COMMENT_AUTHOR  only a comment of this login is edited (empty: any)
# Outputs: comment-id, comment-url.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_name
if [[ -z ${PR_NUMBER:-} ]]; then
  notice "$name: not a pull request; the plan is in the job summary, not in a comment"
  exit 0
fi
if [[ ! $PR_NUMBER =~ ^[0-9]+$ ]]; then
  fail 1 "pr number '$PR_NUMBER' is not a number"
fi
repo=${GITHUB_REPOSITORY:?}
marker="<!-- tyksync-plan:$name -->"
body="${RUNNER_TEMP:?}/tyksync-comment-$name.md"
{
  printf '%s\n' "$marker"
  if [[ -n ${ENVIRONMENT:-} ]]; then
    # shellcheck disable=SC2016 # the backticks are Markdown
    printf '**Environment `%s`**\n\n' "$name"
  fi
  case ${PLAN_EXITCODE:-1} in
    0 | 2 | 3) cat "${MARKDOWN:?}" ;;
    *)
      printf '### tyksync plan\n\n> [!WARNING]\n'
      printf '> **tyksync plan failed** (exit %s): there is no plan to review.' "${PLAN_EXITCODE:-}"
      printf ' The [job log](%s) says why.\n' "$(run_url)"
      ;;
  esac
} >"$body"

comments=$(gh api --paginate "repos/$repo/issues/$PR_NUMBER/comments?per_page=100")
id=$(helper comment-id "$marker" "${COMMENT_AUTHOR-github-actions[bot]}" <<<"$comments")
if [[ -n $id ]]; then
  answer=$(helper body <"$body" | gh api --method PATCH "repos/$repo/issues/comments/$id" --input -)
else
  answer=$(helper body <"$body" | gh api --method POST "repos/$repo/issues/$PR_NUMBER/comments" --input -)
fi
output comment-id "$(helper field id <<<"$answer")"
output comment-url "$(helper field html_url <<<"$answer")"
