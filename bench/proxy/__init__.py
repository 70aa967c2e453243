"""The parts of bench/proxy_bench.py, one job each:

- `subscribers`: who the test subscribers are (names, classes, passwords), the import CSV, the
  upstream's `users` file and radclient's request and filter files;
- `procs`: what /proc says about a process tree (CPU, RSS, UDP drops);
- `servers`: the three servers started: the upstream FreeRADIUS, B (FreeRADIUS + rlm_sql from
  deploy/freeradius-sql-proxy) and A (`op25b serve`), and stopping whatever is still running;
- `radclient`: one radclient run and its parsed summary;
- `setup`: the scratch database, the subscribers imported and the run's `Bench` context;
- `throughput`, `latency`, `memory`, `storm`, `pyspy` (profile): the five phases;
- `figures`: what the phases measured; `report`: its markdown and bench/RESULTS.md;
- `cli`: the options (`--quick` among them) and the order of the run.
"""
