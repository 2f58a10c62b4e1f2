"""Prometheus metrics at ``/metrics``: read from the node's counters at scrape time.

frames in per listener, refusals by reason, writer batches/rows/backlog, forwarded
frames per upstream (sent, reissued, acknowledged, re-sent after a drop), link state,
connections.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LINK_STATES = ("offline", "connecting", "logging_in", "online", "logging_out")


class NodeCollector:
    def __init__(self, node) -> None:
        self.node = node

    def collect(self):
        node = self.node
        frames = CounterMetricFamily("relay_frames_received", "Frames accepted from the wire", labels=["listener"])
        refused = CounterMetricFamily("relay_frames_refused", "Refused stretches and frames", labels=["listener",
                                                                                                     "reason"])
        conns = GaugeMetricFamily("relay_connections", "Open connections", labels=["listener"])
        refused_conns = CounterMetricFamily("relay_connections_refused", "Connections refused by limits",
                                            labels=["listener"])
        for name, factory in (("terminals", node.terminals), ("platforms", node.platforms)):
            if factory is None:
                continue
            frames.add_metric([name], factory.frames_in)
            conns.add_metric([name], len(factory.sessions))
            refused_conns.add_metric([name], factory.refused_connections)
            for reason, n in factory.frames_refused.items():
                refused.add_metric([name, reason], n)
        yield frames
        yield refused
        yield conns
        yield refused_conns
        w = node.writer
        yield CounterMetricFamily("relay_writer_batches", "Batches committed", value=w.batches)
        yield CounterMetricFamily("relay_writer_rows_stored", "Frames stored", value=w.stored)
        yield CounterMetricFamily("relay_writer_duplicates", "Frames dropped as duplicates", value=w.duplicates)
        yield CounterMetricFamily("relay_writer_duplicates_in_memory",
                                  "Duplicates recognised before the database (a platform frame's second copy)",
                                  value=w.duplicates_skipped)
        yield CounterMetricFamily("relay_writer_refused", "Items the store refused", value=w.refused)
        yield GaugeMetricFamily("relay_writer_backlog", "Items waiting for the writer", value=w.backlog)
        yield GaugeMetricFamily("relay_writer_last_batch_size", "Items in the last batch", value=w.last_batch_size)
        yield GaugeMetricFamily("relay_writer_last_batch_seconds", "Seconds the last batch took",
                                value=w.last_batch_seconds)
        sent = CounterMetricFamily("relay_forwarded", "Frames written upstream", labels=["upstream", "kind"])
        state = GaugeMetricFamily("relay_upstream_link_state", "1 for the link's current state",
                                  labels=["upstream", "state"])
        unacked = GaugeMetricFamily("relay_upstream_unacknowledged", "Frames sent, not yet acknowledged",
                                    labels=["upstream"])
        for name, fwd in node.forwarders.items():
            sent.add_metric([name, "all"], fwd.sent)
            sent.add_metric([name, "reissue"], fwd.sent_reissue)
            sent.add_metric([name, "acknowledged"], fwd.acked)
            sent.add_metric([name, "resent"], fwd.resent)
            sent.add_metric([name, "from_commits"], fwd.from_commits)
            unacked.add_metric([name], len(fwd._unacked))
            link = node.links[name]
            for s in LINK_STATES:
                state.add_metric([name, s], 1.0 if link.state == s else 0.0)
        yield sent
        yield state
        yield unacked


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, node) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(NodeCollector(node))

    def render(self) -> bytes:
        return generate_latest(self.registry)
