#!/usr/bin/env python3
"""OpenMetrics gauges for benchmarks: SERIES series, one sample every STEP seconds over
[START, END], random-walk values (so they compress like real gauges do, i.e. not much).
Usage: gen-openmetrics.py SERIES START END STEP SEED > out.om"""
import random
import sys

series, start, end, step, seed = map(int, sys.argv[1:6])
rnd = random.Random(seed)
w = sys.stdout.write
w("# HELP bench_value A benchmark gauge.\n# TYPE bench_value gauge\n")
for s in range(series):
    v = rnd.random() * 1000
    lines = []
    t = start
    while t <= end:
        v += rnd.gauss(0, 1)
        lines.append('bench_value{series="%d",job="bench",instance="host-%d"} %.6f %d\n' % (s, s % 50, v, t))
        t += step
    w("".join(lines))
w("# EOF\n")
