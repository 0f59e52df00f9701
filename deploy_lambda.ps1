<#
.SYNOPSIS
    Build, deploy and smoke-test IFlyChat on AWS (the PowerShell twin of deploy.sh).

.DESCRIPTION
    Checks its tools (sam, aws, python), runs `sam build`, deploys the stack iflychat-<Stage>
    with `sam deploy` (guided on the first run of a stage, which saves the answers in
    samconfig.toml; from samconfig.toml after that), optionally runs init_db.py against the
    stage's database secret, then calls GET /health on the deployed URL and prints the URL.

    Template parameters given on the command line replace the whole set saved in
    samconfig.toml for that stage: give them all, or run with -Guided to change them.

.PARAMETER Stage
    Stage to deploy: stack iflychat-<Stage>, samconfig.toml section <Stage>. Default: staging.
.PARAMETER FrontendOrigin
    The web front end's origin (https://app.example.com), allowed by CORS with credentials.
.PARAMETER DatabaseUrlSecretArn
    ARN of the Secrets Manager secret or SSM SecureString parameter holding the PostgreSQL URL.
.PARAMETER JwtSecretArn
    ARN of the secret holding the session-signing key. Empty: the stack generates one.
.PARAMETER OpenAIApiKeySecretArn
    ARN of the secret holding the OpenAI API key. Empty: AI replies are off. Unused with -AiProvider bedrock.
.PARAMETER OpenAIModel
    The OpenAI chat model (default gpt-4o-mini).
.PARAMETER AiProvider
    Who answers: openai (default; needs -OpenAIApiKeySecretArn) or bedrock (Amazon Bedrock in the
    stack's region, through the functions' IAM role; no key).
.PARAMETER BedrockModelId
    The Bedrock model or inference profile id (default anthropic.claude-3-haiku-20240307-v1:0), with -AiProvider bedrock.
.PARAMETER LogRetentionDays
    Days the logs are kept (1, 3, 5, 7, 14, 30, 60, 90, 180, 365).
.PARAMETER ThrottleRateLimit
    Steady requests per second per route before the API answers 429.
.PARAMETER ThrottleBurstLimit
    Burst of requests per route.
.PARAMETER AlarmEmail
    Email address told when an alarm fires.
.PARAMETER VpcSubnetIds
    Comma-separated private subnet ids, for a database without a public endpoint.
.PARAMETER VpcSecurityGroupIds
    Comma-separated security group ids for the functions in the VPC.
.PARAMETER Region
    AWS region. Default: $env:AWS_REGION, else the aws CLI's configured region.
.PARAMETER Guided
    Ask for every parameter and save the answers in samconfig.toml.
.PARAMETER Yes
    No questions, no changeset confirmation (CI).
.PARAMETER InitDb
    Run init_db.py against the stage's database after deploying.
.PARAMETER NoBuild
    Deploy what .aws-sam/build already holds.

.EXAMPLE
    .\deploy_lambda.ps1 -Stage staging -Guided -FrontendOrigin https://app.example.com -DatabaseUrlSecretArn arn:aws:secretsmanager:eu-west-1:123456789012:secret:iflychat/staging/db-AbCdEf
    First deployment of a stage: asks for the rest, saves samconfig.toml.
.EXAMPLE
    .\deploy_lambda.ps1 -Stage staging -InitDb
    Later deployments: build, deploy with the saved answers, migrate, smoke-test.
.EXAMPLE
    .\deploy_lambda.ps1 -Stage staging -Guided -AiProvider bedrock -BedrockModelId eu.anthropic.claude-3-haiku-20240307-v1:0
    The AI on Amazon Bedrock (a cross-region inference profile) instead of OpenAI.
#>
[CmdletBinding()]
param(
    [string]$Stage = "staging",
    [string]$FrontendOrigin,
    [string]$DatabaseUrlSecretArn,
    [string]$JwtSecretArn,
    [string]$OpenAIApiKeySecretArn,
    [string]$OpenAIModel,
    [string]$AiProvider,
    [string]$BedrockModelId,
    [string]$LogRetentionDays,
    [string]$ThrottleRateLimit,
    [string]$ThrottleBurstLimit,
    [string]$AlarmEmail,
    [string]$VpcSubnetIds,
    [string]$VpcSecurityGroupIds,
    [string]$Region = $env:AWS_REGION,
    [switch]$Guided,
    [switch]$Yes,
    [switch]$InitDb,
    [switch]$NoBuild
)

$ErrorActionPreference = "Stop"
Set-Location -Path $PSScriptRoot
$env:SAM_CLI_TELEMETRY = "0"

# The template's parameters; tests/test_deploy.py checks this list against template.yaml.
$TemplateParameters = @("Stage", "FrontendOrigin", "DatabaseUrlSecretArn", "JwtSecretArn", "OpenAIApiKeySecretArn",
    "OpenAIModel", "AiProvider", "BedrockModelId", "LogRetentionDays", "ThrottleRateLimit", "ThrottleBurstLimit",
    "AlarmEmail", "VpcSubnetIds", "VpcSecurityGroupIds")

function Invoke-Step([string]$Exe, [string[]]$Arguments) {
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { throw "deploy: $Exe $($Arguments -join ' ') failed ($LASTEXITCODE)" }
}

if ($Stage -notmatch '^[a-z][a-z0-9-]{1,20}$') { throw "deploy: stage must be lower-case letters, digits and -" }
$Python = if (Get-Command python -ErrorAction SilentlyContinue) { "python" } else { "py" }
foreach ($tool in @("sam", "aws", $Python)) {
    if (-not (Get-Command $tool -ErrorAction SilentlyContinue)) { throw "deploy: $tool not found on PATH" }
}
if (-not $Region) { $Region = (& aws configure get region) }
if (-not $Region) { throw "deploy: no AWS region: pass -Region or set AWS_REGION" }
$Stack = "iflychat-$Stage"

$Overrides = @()
foreach ($name in $TemplateParameters) {
    if ($name -ne "Stage" -and $PSBoundParameters.ContainsKey($name)) { $Overrides += "$name=$($PSBoundParameters[$name])" }
}

if (-not $NoBuild) {
    Write-Host "deploy: sam build"
    Invoke-Step "sam" @("build")
}

$HasConfig = (Test-Path samconfig.toml) -and (Select-String -Path samconfig.toml -Pattern "^\[$Stage\.deploy" -Quiet)
if (-not $Guided -and -not $HasConfig -and -not $Yes) { $Guided = $true }
$Confirm = if ($Yes) { @("--no-confirm-changeset") } else { @() }

Write-Host "deploy: sam deploy $Stack ($Region)"
if ($Guided) {
    Invoke-Step "sam" (@("deploy", "--guided", "--config-env", $Stage, "--stack-name", $Stack, "--region", $Region,
        "--capabilities", "CAPABILITY_IAM", "--parameter-overrides", "Stage=$Stage") + $Overrides)
} elseif ($HasConfig -and $Overrides.Count -eq 0) {
    Invoke-Step "sam" (@("deploy", "--config-env", $Stage, "--region", $Region, "--no-fail-on-empty-changeset") + $Confirm)
} else {
    Invoke-Step "sam" (@("deploy", "--stack-name", $Stack, "--region", $Region, "--resolve-s3",
        "--capabilities", "CAPABILITY_IAM", "--no-fail-on-empty-changeset") + $Confirm +
        @("--parameter-overrides", "Stage=$Stage") + $Overrides)
}

function Get-StackOutput([string]$Key) {
    & aws cloudformation describe-stacks --region $Region --stack-name $Stack `
        --query "Stacks[0].Outputs[?OutputKey=='$Key'].OutputValue" --output text
}
$Url = Get-StackOutput "ApiUrl"
if (-not $Url -or $Url -eq "None") { throw "deploy: stack $Stack has no ApiUrl output" }

if ($InitDb) {
    Write-Host "deploy: init_db.py against the stage's database"
    $env:AWS_REGION = $Region
    Invoke-Step $Python @("init_db.py", "--secret-arn", (Get-StackOutput "DatabaseUrlSecretArn"))
}

Invoke-Step $Python @("-m", "local.smoke_test", $Url)
Write-Host "deploy: $Stack is live at $Url"
