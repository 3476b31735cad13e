# Sourced by CI jobs that call AWS. With AWS_ROLE_ARN set (the default), the job's GitLab
# id_token is handed to the AWS SDK, which exchanges it for the role's short-lived
# credentials; otherwise the masked AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY variables are used.
# A deploy job of a stage whose endpoints live in an account of their own (DEPLOY_STAGE, and the
# <STAGE>_AWS_ROLE_ARN the SageMaker project set) assumes that account's deploy role instead,
# with the id_token minted for its stage (AWS_STAGE_ID_TOKEN).
case "${DEPLOY_STAGE:-}" in
  staging) stage_role="${STAGING_AWS_ROLE_ARN:-}" ;;
  production) stage_role="${PRODUCTION_AWS_ROLE_ARN:-}" ;;
  *) stage_role="" ;;
esac
if [ -n "$stage_role" ]; then
  if [ -z "${AWS_STAGE_ID_TOKEN:-}" ]; then
    echo "error: the $DEPLOY_STAGE account's deploy role is set, but the job has no AWS_STAGE_ID_TOKEN: add the id_tokens entry of .gitlab-ci.yml" >&2
    exit 1
  fi
  export AWS_ROLE_ARN="$stage_role" AWS_ID_TOKEN="$AWS_STAGE_ID_TOKEN" AWS_ROLE_STAGE="$DEPLOY_STAGE"
  # The platform team made that role before publishing: a refusal will not pass by waiting.
  export AWS_ROLE_WAIT_SECONDS="${AWS_ROLE_WAIT_SECONDS:-0}"
fi
if [ -n "${AWS_ROLE_ARN:-}" ]; then
  if [ -z "${AWS_ID_TOKEN:-}" ]; then
    echo "error: AWS_ROLE_ARN is set but the job has no AWS_ID_TOKEN: add the id_tokens entry of .gitlab-ci.yml" >&2
    exit 1
  fi
  # The SDKs read web identity tokens from a file only; it lives outside the checkout and
  # goes with the job.
  AWS_WEB_IDENTITY_TOKEN_FILE="$(mktemp)"
  printf '%s' "$AWS_ID_TOKEN" > "$AWS_WEB_IDENTITY_TOKEN_FILE"
  export AWS_WEB_IDENTITY_TOKEN_FILE
  export AWS_ROLE_SESSION_NAME="gitlab-${CI_PROJECT_ID:-local}-${CI_JOB_ID:-local}"
  # The first pipeline may start before IAM lets anyone assume the project's new role.
  AWS_REGION="${AWS_REGION:?AWS_REGION is not set: the SageMaker project sets it as a CI/CD variable}" \
    python ci/wait_for_role.py || exit 1
elif [ -z "${AWS_ACCESS_KEY_ID:-}" ] || [ -z "${AWS_SECRET_ACCESS_KEY:-}" ]; then
  echo "error: no AWS credentials: set AWS_ROLE_ARN, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, as CI/CD variables" >&2
  exit 1
fi
export AWS_DEFAULT_REGION="${AWS_REGION:?AWS_REGION is not set: the SageMaker project sets it as a CI/CD variable}"
