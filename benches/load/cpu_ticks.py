#!/usr/bin/env python3
"""utime + stime of every thread of the given processes, in clock ticks (one number).

Reads /proc/PID/task/*/stat after the `)` that ends the thread name: Pingora's thread
names contain spaces ("sessiongate proxy"), which would shift whitespace-split fields and
silently drop system time.
"""
import os
import sys

total = 0
for pid in sys.argv[1:]:
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
        total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14, 15)
print(total)
