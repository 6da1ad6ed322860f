"""Prometheus metrics of the job lifecycle and of the bot's event loop. One registry per bot, so
tests can run several."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
# Event-loop lag: fine below 50 ms, where a healthy loop lives, then up to a long stall.
_LOOP_LAG_BUCKETS = (
    *(0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05),
    *(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.transitions = Counter(
            "flux_job_transitions",
            "Jobs that entered each state",
            ["state"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "flux_jobs_in_flight", "Jobs admitted and not yet finished", registry=self.registry
        )
        self.loop_lag = Histogram(
            "flux_event_loop_lag_seconds",
            "How much later than due the event loop ran the lag monitor's wake-ups",
            buckets=_LOOP_LAG_BUCKETS,
            registry=self.registry,
        )
        self.fal_queue_seconds = Histogram(
            "flux_fal_queue_seconds",
            "Time from submit until a fal runner started the job",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.fal_run_seconds = Histogram(
            "flux_fal_run_seconds",
            "Time a fal runner worked on the job",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "flux_delivery_seconds",
            "Time from fal's completion to the result message posted",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.refusals = Counter(
            "flux_admission_refusals",
            "Requests refused at admission, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.fal_errors = Counter(
            "flux_fal_errors",
            "fal failures seen by jobs, by type",
            ["type"],
            registry=self.registry,
        )
        self.fal_ambiguous_submits = Counter(
            "flux_fal_ambiguous_submits",
            "Submits whose outcome fal left unclear (retried, adopted by request id, or given up)",
            ["reason"],
            registry=self.registry,
        )
        self.leases_adopted = Counter(
            "flux_jobs_adopted",
            "Jobs this process took over: at start from its earlier life, or from a process "
            "whose leases ran out or were released",
            ["how"],
            registry=self.registry,
        )
        self.leases_lost = Counter(
            "flux_job_leases_lost",
            "Jobs this process stopped driving because another process adopted them",
            registry=self.registry,
        )
        self.gateway_connected = Gauge(
            "flux_gateway_connected",
            "1 while the shard's gateway connection is open, 0 otherwise",
            ["shard"],
            registry=self.registry,
        )
        self.gateway_latency = Gauge(
            "flux_gateway_latency_seconds",
            "The shard's last gateway heartbeat round trip (absent before the first one)",
            ["shard"],
            registry=self.registry,
        )
        self.discord_errors = Counter(
            "flux_discord_api_errors",
            "Discord API calls that failed, by HTTP status",
            ["status"],
            registry=self.registry,
        )
