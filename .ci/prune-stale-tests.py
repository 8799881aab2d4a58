#!/usr/bin/env python3
"""Deletes test executables of earlier builds from a reused cargo target directory.

Every change to a crate's dependencies gives its test binaries new hashed names, and the old
ones (hundreds of MB each, with debug info) stay behind: a cache reused across many runs grew to
68 GB this way and filled the disk. Reads `cargo test --no-run --message-format=json` on stdin
(the executables of the current build) and deletes every other executable in `debug/deps`;
libraries and their metadata are left alone.

    cargo test --workspace --no-run --message-format=json | .ci/prune-stale-tests.py TARGET_DIR
"""
import json
import os
import sys

current = set()
for line in sys.stdin:
    try:
        message = json.loads(line)
    except ValueError:
        continue
    if message.get("executable"):
        # By inode: a binary target's executable is reported at its uplifted path
        # (`debug/fleetmq`), a hard link to its copy in `debug/deps`.
        try:
            stat = os.stat(message["executable"])
        except OSError:
            continue
        current.add((stat.st_dev, stat.st_ino))
deps = os.path.join(sys.argv[1], "debug", "deps")
if not current or not os.path.isdir(deps):
    sys.exit(0)  # nothing known to keep: delete nothing
freed = 0
for name in os.listdir(deps):
    path = os.path.join(deps, name)
    # Test executables have no extension (libraries are .rlib/.rmeta/.so, dep info .d).
    if "." in name or not os.path.isfile(path) or not os.access(path, os.X_OK):
        continue
    stat = os.stat(path)
    if (stat.st_dev, stat.st_ino) not in current:
        freed += stat.st_size
        os.remove(path)
if freed:
    print(f".ci/run: pruned {freed / 1e9:.1f} GB of test executables of earlier builds")
