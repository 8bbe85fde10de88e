"""Datasette plugin: SQL functions FlowGate's dashboards use."""

from __future__ import annotations

from datasette import hookimpl

from flowgate_addon.rollup import bucket_ms


@hookimpl
def prepare_connection(conn):
    # The middle of a latency histogram bucket, in ms (see flowgate_addon.rollup);
    # NULL for an empty histogram.
    conn.create_function(
        "bucket_ms", 1, lambda b: None if b is None else bucket_ms(b), deterministic=True
    )
