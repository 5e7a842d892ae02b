#!/usr/bin/env python3
"""The Grafana dashboard test: every panel uses the provisioned datasource, every metric it names
exists in a plane's metrics.rs (or is one of the process collector's), the series each Strategy
Plane instance exports for its own partitions only are summed over the instances, and every query,
evaluated by a real Prometheus scraping a running stack, succeeds and returns data. With --rules,
every metric the alert rules name exists too, and with --rule-tests every rule has a unit test.
Without --prometheus only the offline checks run. Exits non-zero with every failure listed."""

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

PLANE_METRIC = re.compile(r"\b((?:data|strategy|order)_plane_[a-z0-9_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROCESS_METRIC = re.compile(r"\b(process_[a-z0-9_]+)")
# What prometheus::process_collector exports on Linux; every plane's registry holds it
# (common::http::registry).
PROCESS_METRICS = {
    "process_cpu_seconds_total", "process_open_fds", "process_max_fds", "process_virtual_memory_bytes",
    "process_resident_memory_bytes", "process_start_time_seconds", "process_threads",
}
# Each Strategy Plane instance exports these for the symbols or partitions it owns only (two
# instances: two halves), so a panel shows the whole only as a sum over the instances. That the
# halves add up to the ledger is the system test
# two_instances_export_each_symbol_once_and_their_sum_is_the_ledger (crates/strategy-plane).
PER_INSTANCE_SHARE = {"strategy_plane_pnl_total", "strategy_plane_pnl", "strategy_plane_position",
                      "strategy_plane_fees", "strategy_plane_consumer_lag_records",
                      "order_plane_consumer_lag_records"}
SUMMED = r"sum\s*(?:by\s*\((?P<by>[^)]*)\)\s*)?\(\s*{name}\b"
# Grafana fills $__rate_interval in; 1m holds 12 scrapes at the 5 s interval.
GRAFANA_VARIABLES = {"$__rate_interval": "1m"}


def provisioned_uid(path):
    uids = re.findall(r"^\s*uid:\s*['\"]?([A-Za-z0-9_-]+)", open(path, encoding="utf-8").read(), re.M)
    if len(uids) != 1:
        sys.exit(f"{path}: expected exactly one datasource uid, found {uids}")
    return uids[0]


# The consumer metrics both consuming planes share are defined once, in common's consumer shell,
# as `name("<what>")` under the prefix a plane's metrics.rs passes to `ConsumerMetrics::new`.
SHELL = "crates/common/src/kafka/shell.rs"


def shared_consumer_metrics(sources):
    """The names `ConsumerMetrics::new("<plane>", ...)` in `sources` define, quoted as a
    metrics.rs would quote them."""
    planes = re.findall(r'ConsumerMetrics::new\(\s*"([a-z_]+)"', sources)
    if not planes:
        return ""
    root = __file__.rsplit("/docker/tests/", 1)[0] if "/docker/tests/" in __file__ else "."
    shell = open(f"{root}/{SHELL}", encoding="utf-8").read().split("#[cfg(test)]")[0]
    whats = re.findall(r'\bname\("([a-z0-9_]+)"\)', shell)
    return "".join(f'"{plane}_{what}"' for plane in planes for what in whats)


def static_checks(dashboard, uid, sources):
    errors = []
    ids = [p.get("id") for p in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        errors.append(f"duplicate panel ids: {ids}")
    queries = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        title = panel.get("title", f"panel {panel.get('id')}")
        if panel.get("datasource", {}).get("uid") != uid:
            errors.append(f"{title}: panel datasource {panel.get('datasource')} is not uid {uid!r}")
        if not panel.get("targets"):
            errors.append(f"{title}: no queries")
        for target in panel.get("targets", []):
            ref = f"{title} [{target.get('refId')}]"
            if target.get("datasource", {}).get("uid") != uid:
                errors.append(f"{ref}: query datasource {target.get('datasource')} is not uid {uid!r}")
            expr = target.get("expr", "")
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            if not expr.strip() or "$" in expr:
                errors.append(f"{ref}: empty query or an unknown Grafana variable: {target.get('expr')!r}")
                continue
            for name in set(PLANE_METRIC.findall(expr)):
                candidates = [name] + [name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)]
                if not any(f'"{c}"' in sources for c in candidates):
                    errors.append(f"{ref}: metric {name} is not defined in any crates/*/src/metrics.rs")
            for name in set(PLANE_METRIC.findall(expr)) & PER_INSTANCE_SHARE:
                sums = list(re.finditer(SUMMED.format(name=name), expr))
                if len(sums) != len(re.findall(rf"\b{name}\b", expr)) or any(
                        "instance" in (m.group("by") or "") for m in sums):
                    errors.append(f"{ref}: {name} is one instance's share: sum it over the instances "
                                  f"(sum(...) or sum by (symbol|topic, partition)): {expr}")
            for name in set(PROCESS_METRIC.findall(expr)) - PROCESS_METRICS:
                errors.append(f"{ref}: metric {name} is not one the process collector exports")
            queries.append((ref, expr))
    return errors, queries


def rule_checks(rules_path, tests_path, sources):
    """Every plane metric an alert rule's expression names is defined; every rule has a test."""
    errors = []
    text = open(rules_path, encoding="utf-8").read()
    # Comments may name metrics that no expression uses (an old name, say).
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    alerts = re.findall(r"^\s*-\s*alert:\s*(\S+)", code, re.M)
    if not alerts:
        errors.append(f"{rules_path}: no alert rules")
    for name in sorted(set(PLANE_METRIC.findall(code))):
        candidates = [name] + [name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)]
        if not any(f'"{c}"' in sources for c in candidates):
            errors.append(f"{rules_path}: metric {name} is not defined in any crates/*/src/metrics.rs")
    if tests_path:
        tested = set(re.findall(r"^\s*alertname:\s*(\S+)", open(tests_path, encoding="utf-8").read(), re.M))
        for alert in alerts:
            if alert not in tested:
                errors.append(f"{tests_path}: alert {alert} has no alert_rule_test")
    return errors, len(alerts)


def query(prometheus, expr):
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    if body.get("status") != "success":
        return None, f"{body.get('errorType')}: {body.get('error')}"
    return body["data"]["result"], None


def wait_for_trading(prometheus, deadline):
    """Polls until the planes have traded, so every panel has something to show."""
    wanted = ["order_plane_fills_total > 0", "strategy_plane_intents_published_total > 0",
              "data_plane_ofi_windows_total > 0"]
    while True:
        missing = [w for w in wanted if not (query(prometheus, w)[0] or [])]
        if not missing:
            return []
        if time.monotonic() > deadline:
            return [f"no data before the deadline: {w}" for w in missing]
        time.sleep(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dashboard", required=True)
    parser.add_argument("--datasources", required=True)
    parser.add_argument("--sources", nargs="+", required=True, help="the planes' metrics.rs files")
    parser.add_argument("--rules", help="the Prometheus alert rules file")
    parser.add_argument("--rule-tests", help="its promtool unit tests")
    parser.add_argument("--prometheus", help="base URL of a Prometheus scraping the stack; without it, "
                        "only the offline checks run")
    parser.add_argument("--jobs", nargs="+", default=["data-plane", "strategy-plane", "order-plane"])
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()

    uid = provisioned_uid(args.datasources)
    dashboard = json.load(open(args.dashboard, encoding="utf-8"))
    # A name in a file's tests (one asserting that an old name is gone, say) defines nothing.
    sources = "".join(open(p, encoding="utf-8").read().split("#[cfg(test)]")[0] for p in args.sources)
    sources += shared_consumer_metrics(sources)
    errors, queries = static_checks(dashboard, uid, sources)
    rules = 0
    if args.rules:
        rule_errors, rules = rule_checks(args.rules, args.rule_tests, sources)
        errors += rule_errors
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    if not args.prometheus:
        print(f"dashboard: {len(queries)} queries name known metrics, all on datasource {uid!r} (not evaluated); "
              f"{rules} alert rules name known metrics{' and have tests' if args.rule_tests else ''}")
        return 0

    deadline = time.monotonic() + args.timeout
    errors = wait_for_trading(args.prometheus, deadline)
    up, err = query(args.prometheus, "up")
    up_jobs = {s["metric"].get("job") for s in (up or []) if s["value"][1] == "1"}
    for job in args.jobs:
        if job not in up_jobs:
            errors.append(f"Prometheus does not see job {job} up: {err or up}")

    # Errors are final; an empty result may only mean a series has not been scraped twice yet.
    pending = dict(queries)
    while pending and not errors:
        for ref, expr in list(pending.items()):
            result, err = query(args.prometheus, expr)
            if err:
                errors.append(f"{ref}: {expr}\n    {err}")
            elif result:
                del pending[ref]
        if pending and time.monotonic() > deadline:
            errors += [f"{ref}: no data: {expr}" for ref, expr in pending.items()]
            break
        if pending:
            time.sleep(1)
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    print(f"dashboard: {len(queries)} queries in {sum(p['type'] != 'row' for p in dashboard['panels'])} panels "
          f"return data, all on datasource {uid!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
