"""Secrets read at cold start from Secrets Manager / SSM (moto), cached per container, and the
production guard: a deployment without a real JWT key answers 503 and says why in its log."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest
from moto import mock_aws

from shared import settings as settings_mod
from shared.settings import ConfigurationError, get_settings, reset_settings

REGION = "eu-west-1"
JWT_KEY = "k" * 48


@pytest.fixture
def fresh_settings(monkeypatch):
    """Settings read again from a changed environment; the test run's own afterwards."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    reset_settings()
    yield monkeypatch
    monkeypatch.undo()
    reset_settings()
    assert get_settings().stage == "test"


@mock_aws
def test_secrets_are_read_once_per_container(fresh_settings, database_url):
    sm, ssm = boto3.client("secretsmanager", REGION), boto3.client("ssm", REGION)
    db_arn = sm.create_secret(Name="iflychat/db", SecretString=database_url)["ARN"]
    sm.create_secret(Name="iflychat/openai", SecretString="sk-from-secrets-manager")
    ssm.put_parameter(Name="/iflychat/jwt", Value=JWT_KEY, Type="SecureString")
    jwt_arn = f"arn:aws:ssm:{REGION}:123456789012:parameter/iflychat/jwt"
    fresh_settings.setenv("DATABASE_URL_SECRET_ARN", db_arn)
    fresh_settings.setenv("JWT_SECRET_ARN", jwt_arn)
    fresh_settings.setenv("OPENAI_API_KEY_SECRET_ARN", "iflychat/openai")  # a name works too
    fresh_settings.setenv("JWT_SECRET", "ignored-when-a-reference-is-set-0123456789")

    s = get_settings()
    assert (s.database_url, s.jwt_secret, s.openai_api_key) == (database_url, JWT_KEY, "sk-from-secrets-manager")

    sm.delete_secret(SecretId=db_arn, ForceDeleteWithoutRecovery=True)
    ssm.delete_parameter(Name="/iflychat/jwt")
    assert get_settings() is s  # cached: no second read


@mock_aws
def test_an_rds_json_secret_becomes_a_url(fresh_settings):
    sm = boto3.client("secretsmanager", REGION)
    arn = sm.create_secret(Name="rds!cluster-1", SecretString=json.dumps({
        "username": "app", "password": "p@ss:w/rd", "host": "proxy.example.internal", "port": 5432,
        "dbname": "iflychat", "engine": "postgres"}))["ARN"]
    fresh_settings.setenv("DATABASE_URL_SECRET_ARN", arn)
    assert get_settings().database_url == "postgresql://app:p%40ss%3Aw%2Frd@proxy.example.internal:5432/iflychat"


@mock_aws
def test_an_unreadable_secret_is_a_configuration_error_retried_later(fresh_settings):
    fresh_settings.setenv("JWT_SECRET_ARN", f"arn:aws:secretsmanager:{REGION}:123456789012:secret:nope-AbCdEf")
    with pytest.raises(ConfigurationError, match="nope-AbCdEf: ResourceNotFoundException"):
        get_settings()
    boto3.client("secretsmanager", REGION).create_secret(Name="nope", SecretString=JWT_KEY)
    fresh_settings.setenv("JWT_SECRET_ARN", "nope")
    with pytest.raises(ConfigurationError):
        get_settings()  # within the retry window: the remembered failure
    fresh_settings.setattr(settings_mod, "RETRY_FAILED_CONFIG_SECONDS", 0.0)
    assert get_settings().jwt_secret == JWT_KEY


@pytest.mark.parametrize("jwt", [None, settings_mod.DEFAULT_JWT_SECRET, "too-short"])
def test_production_without_a_real_jwt_key_refuses_to_serve(fresh_settings, api, capsys, jwt):
    fresh_settings.setenv("STAGE", "prod")
    if jwt is None:
        fresh_settings.delenv("JWT_SECRET")
    else:
        fresh_settings.setenv("JWT_SECRET", jwt)
    res = api.request("GET", "/health")
    assert res.status == 503
    assert "not configured" in res.json()["detail"]
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any(e["level"] == "CRITICAL" and "JWT secret" in e["message"] for e in logged), logged
    fresh_settings.setenv("JWT_SECRET", JWT_KEY)
    fresh_settings.setattr(settings_mod, "RETRY_FAILED_CONFIG_SECONDS", 0.0)
    assert api.request("GET", "/health").status == 200  # fixed configuration: serving again


def test_the_explicit_production_switch_wins_over_the_stage(fresh_settings):
    fresh_settings.setenv("STAGE", "dev")
    fresh_settings.setenv("PRODUCTION", "true")
    fresh_settings.delenv("JWT_SECRET")
    with pytest.raises(ConfigurationError, match="JWT_SECRET_ARN"):
        get_settings()
    fresh_settings.setenv("STAGE", "prod")
    fresh_settings.setenv("PRODUCTION", "false")
    reset_settings()
    assert get_settings().production is False


def test_functions_without_secret_references_never_import_boto3():
    code = ("import sys; sys.path[:0] = ['functions/auth', '.']; import app; "
            "print(sorted(m for m in ('boto3', 'botocore', 'openai') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_SECRET_ARN")}
    out = subprocess.run([sys.executable, "-c", code], cwd=settings_mod.__file__.rsplit("/shared/", 1)[0],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@mock_aws
def test_init_db_reads_the_same_secret(fresh_settings, database_url, capsys):
    import init_db

    arn = boto3.client("secretsmanager", REGION).create_secret(Name="iflychat/db2", SecretString=database_url)["ARN"]
    fresh_settings.delenv("DATABASE_URL")
    assert init_db.main(["--secret-arn", arn]) == 0
    assert "schema is up to date" in capsys.readouterr().out
    assert init_db.main(["--secret-arn", arn + "-missing"]) == 2
    assert "ResourceNotFoundException" in capsys.readouterr().err
