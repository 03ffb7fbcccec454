#!/usr/bin/env python3
"""utime + stime of every thread of the given processes, in clock ticks (one number;
with --split first: two, user and system).

Reads /proc/PID/task/*/stat after the `)` that ends the thread name: Pingora's thread
names contain spaces ("sessiongate proxy"), which would shift whitespace-split fields and
silently drop system time.
"""
import os
import sys

split = sys.argv[1:2] == ["--split"]
user = system = 0
for pid in sys.argv[1 + split:]:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        continue
    for tid in tids:
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        except FileNotFoundError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        user += int(fields[11])  # utime (stat field 14)
        system += int(fields[12])  # stime (stat field 15)
print(f"{user} {system}" if split else user + system)
