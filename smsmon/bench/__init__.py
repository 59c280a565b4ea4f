"""`smsmon bench`: benchmarks that print figures (never pass/fail tests).

    store.py    the writer's throughput and every read query's time, on a fresh and a large database
    ingest.py   callbacks/s and latency of `smsmon serve` beside a bare aiohttp endpoint, under wrk
    ui.py       the app's first paint, memory, and key presses while callbacks pour in
"""
