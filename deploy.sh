#!/bin/sh
# Build, deploy and smoke-test IFlyChat on AWS (the POSIX twin of deploy_lambda.ps1).
#
#   ./deploy.sh [options] STAGE [Parameter=Value ...]
#
#   STAGE              stage to deploy (stack iflychat-STAGE, samconfig.toml section STAGE)
#   Parameter=Value    a template.yaml parameter, e.g. DatabaseUrlSecretArn=arn:aws:secretsmanager:...
#                      (given values replace the set saved in samconfig.toml: give them all)
#                      AI on Amazon Bedrock: AiProvider=bedrock [BedrockModelId=...] (no OpenAI key)
#   --guided           ask for every parameter and save the answers in samconfig.toml
#                      (the default when samconfig.toml has no section for STAGE yet)
#   --yes              no questions, no changeset confirmation (CI)
#   --init-db          run init_db.py against the stage's database secret after deploying
#   --no-build         deploy what .aws-sam/build holds
#   --region REGION    AWS region (default: AWS_REGION, else the aws CLI's configured region)
#
# Needs: sam (AWS SAM CLI), aws (AWS CLI v2), python3 and python3.12 (sam build uses it), and
# AWS credentials allowed to deploy CloudFormation stacks.
set -eu
cd "$(dirname "$0")"

# The template's parameters; tests/test_deploy.py checks this list against template.yaml.
PARAMETERS="Stage FrontendOrigin DatabaseUrlSecretArn JwtSecretArn OpenAIApiKeySecretArn OpenAIModel AiProvider BedrockModelId LogRetentionDays ThrottleRateLimit ThrottleBurstLimit AlarmEmail VpcSubnetIds VpcSecurityGroupIds"
PYTHON="${PYTHON:-python3}"
guided=0 yes=0 init_db=0 build=1 stage="" overrides=""
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"

die() { echo "deploy: $*" >&2; exit 1; }
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --guided) guided=1 ;;
    --yes) yes=1 ;;
    --init-db) init_db=1 ;;
    --no-build) build=0 ;;
    --region) [ $# -ge 2 ] || die "--region needs a value"; region="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *=*)
      name="${1%%=*}"
      case " $PARAMETERS " in *" $name "*) ;; *) die "$name is not a template parameter ($PARAMETERS)" ;; esac
      case "$1" in *" "*) die "values cannot contain spaces: $1" ;; esac
      [ "$name" = Stage ] && die "give the stage as the STAGE argument, not Stage="
      overrides="$overrides $1" ;;
    *) [ -z "$stage" ] || die "one stage only ($stage, $1)"; stage="$1" ;;
  esac
  shift
done
[ -n "$stage" ] || { usage; die "name a STAGE (staging, prod, ...)"; }
case "$stage" in *[!a-z0-9-]*) die "stage must be lower-case letters, digits and -" ;; esac

for tool in sam aws "$PYTHON"; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found on PATH"
done
[ -n "$region" ] || region="$(aws configure get region || true)"
[ -n "$region" ] || die "no AWS region: pass --region or set AWS_REGION"
stack="iflychat-$stage"
export SAM_CLI_TELEMETRY=0

if [ "$build" = 1 ]; then
  python3.12 -V >/dev/null 2>&1 || die "sam build needs python3.12 on PATH (the Lambda runtime)"
  echo "deploy: sam build"
  sam build
fi

has_config=0
if [ -f samconfig.toml ] && grep -q "^\[$stage\.deploy" samconfig.toml; then has_config=1; fi
if [ "$guided" = 0 ] && [ "$has_config" = 0 ] && [ "$yes" = 0 ]; then guided=1; fi

confirm=""
[ "$yes" = 1 ] && confirm="--no-confirm-changeset"
echo "deploy: sam deploy $stack ($region)"
if [ "$guided" = 1 ]; then
  # shellcheck disable=SC2086 # overrides are Name=Value words without spaces
  sam deploy --guided --config-env "$stage" --stack-name "$stack" --region "$region" \
    --capabilities CAPABILITY_IAM --parameter-overrides "Stage=$stage" $overrides
elif [ "$has_config" = 1 ] && [ -z "$overrides" ]; then
  # shellcheck disable=SC2086
  sam deploy --config-env "$stage" --region "$region" $confirm --no-fail-on-empty-changeset
else
  # shellcheck disable=SC2086
  sam deploy --stack-name "$stack" --region "$region" --resolve-s3 --capabilities CAPABILITY_IAM \
    $confirm --no-fail-on-empty-changeset --parameter-overrides "Stage=$stage" $overrides
fi

output() {
  aws cloudformation describe-stacks --region "$region" --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
url="$(output ApiUrl)"
[ -n "$url" ] && [ "$url" != None ] || die "stack $stack has no ApiUrl output"

if [ "$init_db" = 1 ]; then
  echo "deploy: init_db.py against the stage's database"
  AWS_REGION="$region" "$PYTHON" init_db.py --secret-arn "$(output DatabaseUrlSecretArn)"
fi

"$PYTHON" -m local.smoke_test "$url"
echo "deploy: $stack is live at $url"
