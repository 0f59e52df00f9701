"""Smoke-test a deployed API: GET <url>/health until it answers, then report what it says.

    python -m local.smoke_test https://abc123.execute-api.eu-west-1.amazonaws.com

Exit 0 when /health answers 200 (healthy or degraded), 1 otherwise. Used by deploy.sh,
deploy_lambda.ps1 and the CI/CD workflow. Stdlib only.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request


def check(url: str, attempts: int = 6, wait: float = 5.0) -> bool:
    target = url.rstrip("/") + "/health"
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(target, timeout=15) as res:  # noqa: S310 - an https URL we deployed
                body = json.loads(res.read() or b"{}")
                print(f"smoke test: {target} -> {res.status} {json.dumps(body)}")
                return res.status == 200
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", "replace")
            print(f"smoke test: {target} -> {exc.code} {detail} (attempt {attempt}/{attempts})")
        except (urllib.error.URLError, TimeoutError, ValueError) as exc:
            print(f"smoke test: {target} -> {exc} (attempt {attempt}/{attempts})")
        if attempt < attempts:
            time.sleep(wait)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GET <url>/health on a deployed IFlyChat API")
    parser.add_argument("url")
    parser.add_argument("--attempts", type=int, default=6)
    args = parser.parse_args(argv)
    return 0 if check(args.url, args.attempts) else 1


if __name__ == "__main__":
    sys.exit(main())
