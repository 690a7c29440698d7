#!/usr/bin/env python3
"""Writes the Grafana dashboards in this directory from the panel lists below.

Run `python3 dashboards/generate.py` after editing; the JSON files are committed. Every panel
has a description, every query uses the `datasource` variable, and the dashboard test runs
every query against a real Prometheus fed by tocsin.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {"type": "prometheus", "uid": "${datasource}"}


def var_datasource():
    return {"name": "datasource", "label": "Data source", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0}


def var_query(name, label, query, multi=False):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": f"var-{name}"}, "definition": query,
            "refresh": 2, "sort": 1, "multi": multi, "includeAll": multi,
            "current": {}, "hide": 0}


def panel(title, description, targets, unit="short", kind="timeseries", w=12, h=8):
    return {"title": title, "description": description, "type": kind, "datasource": DS,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(65 + i), "expr": e, "legendFormat": l, "datasource": DS}
                        for i, (e, l) in enumerate(targets)],
            "_w": w, "_h": h}


def dashboard(uid, title, description, variables, panels):
    x = y = 0
    row_h = 0
    out = []
    for i, p in enumerate(panels):
        w, h = p.pop("_w"), p.pop("_h")
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["id"] = i + 1
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        out.append(p)
        x += w
        row_h = max(row_h, h)
    return {"uid": uid, "title": title, "description": description, "tags": ["tocsin"],
            "timezone": "", "schemaVersion": 39, "version": 1, "editable": True,
            "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
            "templating": {"list": [var_datasource()] + variables},
            "panels": out, "annotations": {"list": []}}


H = 'host="$host"'
HOST = dashboard(
    "tocsin-host", "tocsin / Host overview",
    "One host as its tocsin agent samples it: CPU, load, memory, swap, pressure, disks, network.",
    [var_query("host", "Host", "label_values(node_load1, host)")],
    [
        panel("Host up", "1 while the collector hears from the agent (tocsin_host_up, judged by the collector).",
              [(f"tocsin_host_up{{{H}}}", "up")], kind="stat", w=6, h=4),
        panel("CPU utilisation", "Share of CPU time not idle, all cores.",
              [(f"host_cpu_utilisation_ratio{{{H}}}", "utilisation")], unit="percentunit", kind="stat", w=6, h=4),
        panel("Load", "1, 5 and 15 minute load averages.",
              [(f"node_load1{{{H}}}", "1m"), (f"node_load5{{{H}}}", "5m"), (f"node_load15{{{H}}}", "15m")], w=12, h=4),
        panel("CPU by mode", "Cores busy per mode (user, system, iowait, …), summed over cores.",
              [(f"sum by (mode) (rate(node_cpu_seconds_total{{{H}}}[$__rate_interval]))", "{{mode}}")]),
        panel("Memory", "Used (total − available) and available memory.",
              [(f"node_memory_MemTotal_bytes{{{H}}} - node_memory_MemAvailable_bytes{{{H}}}", "used"),
               (f"node_memory_MemAvailable_bytes{{{H}}}", "available")], unit="bytes"),
        panel("Swap", "Swap in use (0 on hosts without swap).",
              [(f"node_memory_SwapTotal_bytes{{{H}}} - node_memory_SwapFree_bytes{{{H}}}", "used")], unit="bytes"),
        panel("Pressure (PSI)", "Share of time some task waited for CPU, memory or I/O.",
              [(f"rate(node_pressure_cpu_waiting_seconds_total{{{H}}}[$__rate_interval])", "cpu"),
               (f"rate(node_pressure_memory_waiting_seconds_total{{{H}}}[$__rate_interval])", "memory"),
               (f"rate(node_pressure_io_waiting_seconds_total{{{H}}}[$__rate_interval])", "io")], unit="percentunit"),
        panel("Disk space used", "Share of each filesystem in use.",
              [(f"1 - node_filesystem_avail_bytes{{{H}}} / node_filesystem_size_bytes{{{H}}}", "{{mountpoint}}")], unit="percentunit"),
        panel("Disk I/O", "Bytes read and written per second, per device.",
              [(f"rate(node_disk_read_bytes_total{{{H}}}[$__rate_interval])", "read {{device}}"),
               (f"rate(node_disk_written_bytes_total{{{H}}}[$__rate_interval])", "write {{device}}")], unit="Bps"),
        panel("Network", "Bytes received and sent per second, per interface.",
              [(f"rate(node_network_receive_bytes_total{{{H}}}[$__rate_interval])", "rx {{device}}"),
               (f"rate(node_network_transmit_bytes_total{{{H}}}[$__rate_interval])", "tx {{device}}")], unit="Bps"),
        panel("Processes", "Runnable and blocked processes.",
              [(f"node_procs_running{{{H}}}", "running"), (f"node_procs_blocked{{{H}}}", "blocked")]),
        panel("Clock offset", "How far the agent's clock is from the collector's, as it sends (judged by the collector): "
              "ahead above zero, behind below (its samples are stored and graphed that far off).",
              [(f"tocsin_host_clock_ahead_seconds{{{H}}}", "ahead"),
               (f"-tocsin_host_clock_behind_seconds{{{H}}}", "behind")], unit="s"),
        panel("Kernel: OOM kills and dropped connections",
              "Processes the kernel's OOM killer ended (HostOomKill), connections dropped at full accept "
              "queues (NetworkListenOverflows) and TCP segments retransmitted, per second.",
              [(f"rate(node_vmstat_oom_kill{{{H}}}[$__rate_interval])", "OOM kills"),
               (f"rate(node_netstat_TcpExt_ListenOverflows{{{H}}}[$__rate_interval])", "accept queue overflows"),
               (f"rate(node_netstat_Tcp_RetransSegs{{{H}}}[$__rate_interval])", "TCP retransmits")],
              unit="ops"),
    ])

P = 'host=~"$host", probe=~"$probe"'
PROBES = dashboard(
    "tocsin-probes", "tocsin / Probes and dependencies",
    "Service probes run by tocsin agents: success, latency by phase, certificates, packet loss, services.",
    [var_query("host", "Host", "label_values(probe_success, host)", multi=True),
     var_query("probe", "Probe", 'label_values(probe_success{host=~"$host"}, probe)', multi=True)],
    [
        panel("Probe success", "1 when the last run succeeded, per probe and host.",
              [(f"probe_success{{{P}}}", "{{probe}} @ {{host}}")], w=12),
        panel("Probe duration", "Time the last run took.",
              [(f"probe_duration_seconds{{{P}}}", "{{probe}} @ {{host}}")], unit="s"),
        panel("HTTP latency by phase", "resolve, connect, tls, processing, transfer of HTTP(S) probes.",
              [(f"probe_http_duration_seconds{{{P}}}", "{{probe}} {{phase}}")], unit="s"),
        panel("Certificate expiry", "Days until the earliest certificate a TLS probe saw expires.",
              [(f"(probe_ssl_earliest_cert_expiry{{{P}}} - time()) / 86400", "{{probe}} {{target}}")], unit="d"),
        panel("ICMP packet loss", "Share of echo requests without an answer.",
              [(f"probe_icmp_packet_loss_ratio{{{P}}}", "{{probe}} {{target}}")], unit="percentunit"),
        panel("ICMP round trip", "Average round-trip time of the last run.",
              [(f"probe_icmp_rtt_avg_seconds{{{P}}}", "{{probe}} {{target}}")], unit="s"),
        panel("Service success ratio", "Share of a service's probes (over all hosts) that pass: 1 fine, 0 complete outage.",
              [("tocsin_service_probe_success_ratio", "{{service}}")], unit="percentunit"),
    ])

ALERTS = dashboard(
    "tocsin-alerts", "tocsin / Alerts and incidents",
    "What tocsin judged: firing alerts, incidents, MTTA/MTTR, availability, noisy rules, remediation, delivery.",
    [],
    [
        panel("Firing alerts by level", "Alerts firing now, by level (tocsin_alerts, like ALERTS).",
              [('sum by (level) (tocsin_alerts{alertstate="firing"})', "{{level}}")], w=8),
        panel("Open incidents", "Incidents open or acknowledged now.",
              [("tocsin_incidents_open", "open")], kind="stat", w=4),
        panel("MTTA", "Mean time from an incident opening to its acknowledgement, since the collector started (for a window: /api/v1/incidents/stats).",
              [('sum(tocsin_incident_duration_seconds_sum{to="ack"}) / sum(tocsin_incident_duration_seconds_count{to="ack"})', "MTTA")],
              unit="s", kind="stat", w=4),
        panel("MTTR", "Mean time from an incident opening to its resolution, since the collector started (for a window: /api/v1/incidents/stats).",
              [('sum(tocsin_incident_duration_seconds_sum{to="resolve"}) / sum(tocsin_incident_duration_seconds_count{to="resolve"})', "MTTR")],
              unit="s", kind="stat", w=4),
        panel("Mean time to remediate", "Mean time from an incident opening to a verified automatic remediation, since the collector started.",
              [('sum(tocsin_incident_duration_seconds_sum{to="remediate"}) / sum(tocsin_incident_duration_seconds_count{to="remediate"})', "MTTRem")],
              unit="s", kind="stat", w=4),
        panel("Incidents resolved, by whom", "auto (its alerts resolved), remediation (nobody needed), person.",
              [("sum by (resolved_by) (tocsin_incidents_resolved_total)", "{{resolved_by}}")], w=8),
        panel("Remediation outcomes", "Remediation events by kind: requested, succeeded, failed, verified, refused, breaker_open …",
              [("sum by (kind) (tocsin_remediation_events_total)", "{{kind}}")], w=8),
        panel("Host availability", "Share of the range each host was up.",
              [("avg_over_time(tocsin_host_up[$__range])", "{{host}}")], unit="percentunit", kind="stat", w=8),
        panel("Service availability", "Average share of a service's probes passing over the range.",
              [("avg_over_time(tocsin_service_probe_success_ratio[$__range])", "{{service}}")], unit="percentunit", kind="stat", w=8),
        panel("Noisiest rules", "Rules by how long their alerts fired over the range (samples of tocsin_alerts).",
              [('topk(10, sum by (alertname) (count_over_time(tocsin_alerts{alertstate="firing"}[$__range])))', "{{alertname}}")], kind="bargauge", w=8),
        panel("Notifications", "Delivery attempts by receiver and result (delivered, failed, dead).",
              [("sum by (receiver, result) (tocsin_notifications_total)", "{{receiver}} {{result}}")], w=8),
        panel("Collector intake and storage", "Samples received per second by outcome, and failed storage transactions (a full disk: writes answered 503, agents keep their data).",
              [("sum by (result) (rate(tocsin_ingest_samples_total[$__rate_interval]))", "{{result}}"),
               ("sum(rate(tocsin_storage_errors_total[$__rate_interval]))", "storage errors")], w=12),
    ])

B = 'rule="$rule", host=~"$host"'
BASELINES = dashboard(
    "tocsin-baselines", "tocsin / Dynamic baselines",
    "Series judged by dynamic rules, with the band their learned baseline expects and the anomaly score.",
    [var_query("rule", "Rule", "label_values(tocsin_baseline_expected, rule)"),
     var_query("host", "Host", 'label_values(tocsin_baseline_expected{rule="$rule"}, host)', multi=True)],
    [
        panel("Value and expected band", "The series (value) against what the baseline expects, and its lower and upper edges.",
              [(f"tocsin_baseline_value{{{B}}}", "value {{host}}"),
               (f"tocsin_baseline_expected{{{B}}}", "expected {{host}}"),
               (f"tocsin_baseline_lower{{{B}}}", "lower {{host}}"),
               (f"tocsin_baseline_upper{{{B}}}", "upper {{host}}")], w=24, h=10),
        panel("Anomaly score", "0 = as expected, towards 1 = unusual; the rule's sensitivity sets the cut-offs.",
              [(f"tocsin_baseline_anomaly_score{{{B}}}", "{{host}}")], w=24),
    ])

SV = 'service=~"$service"'
SERVICES = dashboard(
    "tocsin-service-levels", "tocsin / Service levels",
    "Services with objectives (services: in the collector's configuration): availability and latency against the objective, "
    "error budget left, burn rates and the SRE workbook's burn conditions, and the changes made to them.",
    [var_query("service", "Service", "label_values(tocsin_slo_objective, service)", multi=True)],
    [
        panel("Error budget left", "Share of each objective's error budget not used over its window (below 0: overspent).",
              [(f"tocsin_slo_error_budget_remaining{{{SV}}}", "{{service}} {{sli}}")], unit="percentunit", kind="stat", w=8, h=5),
        panel("Availability over the range", "Mean share of the service's probes succeeding over the dashboard's range, beside its objective.",
              [(f"avg_over_time(tocsin_service_probe_success_ratio{{{SV}}}[$__range])", "{{service}}"),
               (f'tocsin_slo_objective{{{SV}, sli="availability"}}', "objective {{service}}")],
              unit="percentunit", kind="stat", w=8, h=5),
        panel("Changes in the range", "Changes recorded for the service (POST /api/v1/changes, change add) over the dashboard's range, by kind.",
              [(f"count by (service, kind) (count_over_time(tocsin_change{{{SV}}}[$__range]))", "{{service}} {{kind}}")], kind="stat", w=8, h=5),
        panel("Burn conditions", "For each of the workbook's pairs (fast: 1 h and 5 m at 14.4, slow: 6 h and 30 m at 6, ticket: 3 d and 6 h at 1, for 30 days) the lower of its two windows' burn rates over its threshold: at 1 or more it alerts.",
              [(f"tocsin_slo_burn_condition{{{SV}}}", "{{service}} {{sli}} {{speed}}")], w=12),
        panel("Burn rates", "Error ratio over a window divided by the error budget: 1 uses the budget exactly over the objective's window.",
              [(f'tocsin_slo_burn_rate{{{SV}, window=~"5m|1h|6h"}}', "{{service}} {{sli}} {{window}}")], w=12),
        panel("Indicator", "The share of the service's probes succeeding, every second (the availability indicator).",
              [(f"tocsin_service_probe_success_ratio{{{SV}}}", "{{service}}")], unit="percentunit", w=24),
    ])
SERVICES["annotations"]["list"].append({
    "name": "Changes", "datasource": DS, "enable": True, "iconColor": "orange",
    "expr": f"tocsin_change{{{SV}}}", "step": "10s", "titleFormat": "{{kind}} of {{service}}",
    "tagKeys": "service,kind", "useValueForTime": False})

BOARDS = {"host-overview.json": HOST, "probes.json": PROBES,
          "alerts-incidents.json": ALERTS, "baselines.json": BASELINES,
          "service-levels.json": SERVICES}

if __name__ == "__main__":
    for name, board in BOARDS.items():
        with open(os.path.join(HERE, name), "w") as f:
            json.dump(board, f, indent=2, ensure_ascii=False)
            f.write("\n")
    print("wrote", ", ".join(BOARDS))
