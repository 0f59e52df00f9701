"""Shipping: the deploy scripts name the template's parameters, deploy.sh runs the right
commands (against stand-in sam/aws/python), the template passes `sam validate --lint`, the
workflows pass their schema, and openapi.json is what the functions' apps say."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from local import openapi
from local.apigw import CfnLoader
from tests.conftest import ROOT

TEMPLATE = yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)
TEMPLATE_PARAMETERS = set(TEMPLATE["Parameters"])
PS1 = (ROOT / "deploy_lambda.ps1").read_text(encoding="utf-8")
SCRIPT_ONLY = {"Region", "Guided", "Yes", "InitDb", "NoBuild"}


def _tool(name: str, venv_dir: str) -> str | None:
    for candidate in (ROOT / venv_dir / "bin" / name, Path(sys.executable).parent / name):
        if candidate.exists():
            return str(candidate)
    return shutil.which(name)


def _required_tool(name: str, venv_dir: str) -> str:
    found = _tool(name, venv_dir)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (make {'sam' if venv_dir == '.venv-sam' else 'venv'})")
        pytest.skip(f"{name} is not installed")
    return found


def test_deploy_sh_names_the_template_parameters():
    line = re.search(r'^PARAMETERS="([^"]+)"', (ROOT / "deploy.sh").read_text(), re.M)
    assert set(line.group(1).split()) == TEMPLATE_PARAMETERS


def test_deploy_ps1_names_the_template_parameters():
    listed = set(re.findall(r'"(\w+)"', re.search(r"\$TemplateParameters = @\(([^)]*)\)", PS1).group(1)))
    params = set(re.findall(r"\[(?:string|switch)\]\$(\w+)", re.search(r"param\((.*?)\n\)", PS1, re.S).group(1)))
    documented = set(re.findall(r"^\.PARAMETER (\w+)", PS1, re.M))
    assert listed == TEMPLATE_PARAMETERS
    assert params - SCRIPT_ONLY == TEMPLATE_PARAMETERS
    assert documented == params


def _conditions(**parameters) -> dict[str, bool]:
    """The template's conditions for these parameter values (the rest at their defaults)."""
    values = {name: p.get("Default", "") for name, p in TEMPLATE["Parameters"].items()} | parameters
    done: dict[str, bool] = {}

    def value(node):
        if isinstance(node, dict):
            (fn, arg), = node.items()
            if fn == "Ref":
                return values[arg]
            if fn == "Fn::Condition":
                return truth(arg)
            args = [value(a) for a in arg] if isinstance(arg, list) else [value(arg)]
            return {"Fn::Equals": lambda: args[0] == args[1], "Fn::Not": lambda: not args[0],
                    "Fn::And": lambda: all(args), "Fn::Or": lambda: any(args),
                    "Fn::Join": lambda: args[0].join(args[1])}[fn]()
        return node

    def truth(name):
        if name not in done:
            done[name] = value(TEMPLATE["Conditions"][name])
        return done[name]

    return {name: truth(name) for name in TEMPLATE["Conditions"]}


def _attached(function: str) -> list:
    return TEMPLATE["Resources"][function]["Properties"]["Policies"]


def test_bedrock_parameters_match_the_settings():
    from shared.settings import Settings

    provider, model = TEMPLATE["Parameters"]["AiProvider"], TEMPLATE["Parameters"]["BedrockModelId"]
    assert provider["Default"] == Settings.ai_provider and set(provider["AllowedValues"]) == {"openai", "bedrock"}
    assert model["Default"] == Settings.bedrock_model_id
    assert re.fullmatch(model["AllowedPattern"], model["Default"])
    assert re.fullmatch(model["AllowedPattern"], "eu.anthropic.claude-3-haiku-20240307-v1:0")
    for function in ("ChatsFunction", "MessagesFunction", "HealthFunction"):
        env = TEMPLATE["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert env["AI_PROVIDER"] == {"Ref": "AiProvider"}, function
    for function in ("ChatsFunction", "MessagesFunction"):
        env = TEMPLATE["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert env["BEDROCK_MODEL_ID"] == {"Ref": "BedrockModelId"}, function


def test_bedrock_policy_is_conditional_and_invoke_only():
    policy = TEMPLATE["Resources"]["BedrockInvokePolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    assert _conditions(AiProvider="bedrock")[policy["Condition"]] is True
    assert _conditions(AiProvider="openai")[policy["Condition"]] is False
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statements
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert sorted(statement["Action"]) == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in resources:
            arn = resource["Fn::Sub"]
            # the configured model only, or any model but only through the configured profile
            assert arn.endswith("/${BedrockModelId}") or statement["Condition"]["StringEquals"][
                "bedrock:InferenceProfileArn"]["Fn::Sub"].endswith(":inference-profile/${BedrockModelId}"), arn
    # attached, under the same condition, to the functions that ask the AI and to no other
    attached = {name for name, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
                and {"Fn::If": [policy["Condition"], {"Ref": "BedrockInvokePolicy"}, {"Ref": "AWS::NoValue"}]}
                in _attached(name)}
    mentioned = {name for name, r in TEMPLATE["Resources"].items() if "BedrockInvokePolicy" in str(r)}
    assert attached == mentioned == {"ChatsFunction", "MessagesFunction"}


def test_bedrock_needs_no_openai_key():
    assert "Default" in TEMPLATE["Parameters"]["OpenAIApiKeySecretArn"]  # optional
    key = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:openai-AbCdEf"
    read_key = TEMPLATE["Resources"]["AiSecretReadPolicy"]["Condition"]
    assert _conditions(AiProvider="openai", OpenAIApiKeySecretArn=key)[read_key] is True
    assert _conditions(AiProvider="openai")[read_key] is False
    assert _conditions(AiProvider="bedrock", OpenAIApiKeySecretArn=key)[read_key] is False


@pytest.fixture
def fake_tools(tmp_path):
    """sam, aws, python3.12 and python stand-ins that record how they were called."""
    calls = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    outputs = {"ApiUrl": "https://abc123.execute-api.eu-west-1.amazonaws.com",
               "DatabaseUrlSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf"}
    aws_answers = "".join(f'  *{key}*) echo "{value}" ;;\n' for key, value in outputs.items())
    scripts = {
        "sam": 'echo "sam $*" >> "$CALLS"',
        "python3.12": "exit 0",
        "fakepython": 'echo "python $*" >> "$CALLS"',
        "aws": f'echo "aws $*" >> "$CALLS"\ncase "$*" in\n{aws_answers}  *) echo eu-west-1 ;;\nesac',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), "PYTHON": "fakepython", "HOME": str(tmp_path)}
    return env, calls


def _deploy(env, *args):
    return subprocess.run(["sh", str(ROOT / "deploy.sh"), *args], env=env, capture_output=True, text=True)


def test_deploy_sh_builds_deploys_migrates_and_smoke_tests(fake_tools):
    env, calls = fake_tools
    run = _deploy(env, "--yes", "--init-db", "--region", "eu-west-1", "staging",
                  "FrontendOrigin=https://app.example.com",
                  "DatabaseUrlSecretArn=arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf")
    assert run.returncode == 0, run.stderr
    lines = calls.read_text().splitlines()
    assert lines[0] == "sam build"
    assert lines[1].startswith("sam deploy --stack-name iflychat-staging --region eu-west-1 --resolve-s3 "
                               "--capabilities CAPABILITY_IAM --no-confirm-changeset")
    assert lines[1].endswith("--parameter-overrides Stage=staging FrontendOrigin=https://app.example.com "
                             "DatabaseUrlSecretArn=arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf")
    assert "python init_db.py --secret-arn arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf" in lines
    assert lines[-1] == "python -m local.smoke_test https://abc123.execute-api.eu-west-1.amazonaws.com"
    assert "iflychat-staging is live at https://abc123" in run.stdout


def test_deploy_sh_refuses_unknown_parameters_and_missing_tools(fake_tools):
    env, calls = fake_tools
    run = _deploy(env, "--yes", "staging", "DatabaseUrl=postgresql://secret@db/x")
    assert run.returncode != 0 and "DatabaseUrl is not a template parameter" in run.stderr
    os.remove(Path(env["PATH"].split(":")[0]) / "aws")
    run = _deploy(env, "--yes", "staging")
    assert run.returncode != 0 and "aws not found" in run.stderr
    assert not calls.exists()  # nothing ran


def test_sam_validate_lint():
    sam = _required_tool("sam", ".venv-sam")
    run = subprocess.run([sam, "validate", "--lint", "--template-file", str(ROOT / "template.yaml")],
                         cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "eu-west-1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "is a valid SAM Template" in run.stdout


WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_the_github_workflow_schema(workflow):
    checker = _required_tool("check-jsonschema", ".venv")
    run = subprocess.run([checker, "--builtin-schema", "vendor.github-workflows", str(workflow)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_pipeline_shape():
    ci = yaml.safe_load((ROOT / ".github/workflows/ci-cd.yml").read_text())
    deploy = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())
    jobs = ci["jobs"]
    assert "postgres" in jobs["test"]["services"]
    assert jobs["deploy-staging"]["needs"] == "test" and "refs/heads/main" in jobs["deploy-staging"]["if"]
    assert jobs["deploy-production"]["needs"] == "deploy-staging"
    assert jobs["deploy-production"]["with"]["environment"] == "production"  # required reviewers = approval
    for job in ("deploy-staging", "deploy-production"):
        assert jobs[job]["permissions"]["id-token"] == "write"
    steps = deploy["jobs"]["deploy"]["steps"]
    creds = next(s for s in steps if s.get("uses", "").startswith("aws-actions/configure-aws-credentials"))
    assert "role-to-assume" in creds["with"]
    text = "".join(p.read_text() for p in WORKFLOWS)
    assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text  # OIDC only
    assert "--init-db" in text and "sam validate --lint" in text


def test_openapi_json_is_up_to_date(api):
    expected = openapi.render(openapi.merged(api.functions))
    current = (ROOT / "openapi.json").read_text(encoding="utf-8")
    assert current == expected, "openapi.json is stale: run `make openapi`"


def test_openapi_has_every_template_route(api):
    doc = openapi.merged(api.functions)
    for route in api.functions.template.routes:
        assert route.method.lower() in doc["paths"].get(route.path, {}), route.route_key


def test_openapi_command_prints_the_document():
    out = subprocess.run([sys.executable, "-m", "local.openapi"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out == (ROOT / "openapi.json").read_text(encoding="utf-8")
