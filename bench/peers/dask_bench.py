#!/usr/bin/python3
"""dask_bench.py: the workloads of `shoal bench` on Dask distributed, for comparison.

Runs on Debian's python3-distributed (`apt-get install python3-distributed`; bench/run
installs it when missing) in a LocalCluster shaped like shoal's local cluster: 2 worker
processes x 1 thread. Prints the same lines as `shoal bench`, NAME VALUE UNIT, on stdout
(progress on stderr):

  throughput_tasks_per_s  N no-op tasks (client.map of a function that does nothing),
                          timed from the first submission until distributed.wait says
                          every one has finished, i.e. the client knows each completion
  latency_median_us       sequential client.submit(noop).result(): submit -> wait -> get
  latency_p99_us          of one task, --samples times

Usage (Debian's interpreter: a python3 of pyenv or a venv lacks the package):

  /usr/bin/python3 bench/peers/dask_bench.py [throughput|latency|all]
                   [--tasks N] [--samples N]

Defaults are smaller than shoal's (10,000 tasks, 200 samples): Dask manages a few hundred
tasks a second here, so shoal's 100,000 would take minutes and tell nothing more.
"""
import argparse
import logging
import statistics
import sys
import time

WARMUP = 200  # as `shoal bench`: untimed tasks first, so every worker is warm


def noop(*args):
    """The task: nothing at all, like shoal's example plugin function `noop`."""
    return None


def progress(text):
    print(f"dask_bench: {text}", file=sys.stderr, flush=True)


def figure(name, value, unit):
    print(f"{name} {value:.{0 if value >= 1000 else 1}f} {unit}", flush=True)


def percentile(sorted_values, p):
    """Nearest rank, as `shoal bench` computes it."""
    rank = max(1, min(len(sorted_values), int(-(-p * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def throughput(client, n):
    from distributed import wait

    progress(f"throughput: {n} no-op tasks")
    start = time.perf_counter()
    futures = client.map(noop, range(n), pure=False)
    wait(futures)
    elapsed = time.perf_counter() - start
    failed = sum(f.status != "finished" for f in futures)
    if failed:
        raise RuntimeError(f"throughput: {failed} of {n} tasks did not finish")
    progress(f"throughput: all done after {elapsed:.3f} s")
    figure("throughput_tasks_per_s", n / elapsed, "tasks/s")


def latency(client, n):
    progress(f"latency: {n} sequential submit -> result")
    us = []
    for i in range(n):
        t0 = time.perf_counter()
        client.submit(noop, i, pure=False).result()
        us.append((time.perf_counter() - t0) * 1e6)
    us.sort()
    figure("latency_median_us", statistics.median(us), "us")
    figure("latency_p99_us", percentile(us, 99), "us")


def main():
    parser = argparse.ArgumentParser(
        description="The workloads of `shoal bench` on a Dask LocalCluster "
        "(2 processes x 1 thread)."
    )
    parser.add_argument("workload", nargs="?", default="all",
                        choices=["throughput", "latency", "all"])
    parser.add_argument("--tasks", type=int, default=10000,
                        help="throughput: how many tasks (default 10000)")
    parser.add_argument("--samples", type=int, default=200,
                        help="latency: how many round trips (default 200)")
    args = parser.parse_args()
    if args.tasks < 1 or args.samples < 1:
        parser.error("--tasks and --samples must be at least 1")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        sys.exit("dask_bench: no module distributed: run Debian's /usr/bin/python3 with "
                 "python3-distributed installed (apt-get install python3-distributed)")

    progress("starting a LocalCluster: 2 worker processes x 1 thread")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        client.gather(client.map(noop, range(WARMUP), pure=False))
        if args.workload in ("throughput", "all"):
            throughput(client, args.tasks)
        if args.workload in ("latency", "all"):
            latency(client, args.samples)


if __name__ == "__main__":
    main()
