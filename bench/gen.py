#!/usr/bin/env python3
"""Generate the benchmark workloads: a taskrun manifest plus the equivalent peer input.

usage:
  bench/gen.py dag   DIR [--tasks 10000] [--width 100]   group tasks in a layered DAG:
                                                        DIR/dag.toml, DIR/Makefile
  bench/gen.py true  DIR [--tasks 1000]                  independent `true` command tasks:
                                                        DIR/true.toml, DIR/Makefile
  bench/gen.py cache DIR [--tasks 10000]                 one input -> one output (`cp`) each:
                                                        DIR/cache.toml, DIR/build.ninja, DIR/in/N.txt
  bench/gen.py fixtures WWW                              random download fixtures:
                                                        WWW/small/fNNNN.bin 1,000 x 64 KiB,
                                                        WWW/large/lNN.bin 20 x 50 MiB,
                                                        WWW/huge/g.bin 1 GiB
  bench/gen.py downloads DIR --base URL --files F... --name NAME [--jobs 16]
                                                        one pinned download per file:
                                                        DIR/NAME.toml, NAME.urls, NAME.curl,
                                                        NAME.sha256 (sha256sum -c format)
  bench/gen.py fanout-plan DIR [--tasks 100000] [--base URL]
                                                        the same downloads two ways, for
                                                        check/plan: DIR/urls.txt (one URL a
                                                        line), DIR/fanout.toml (one task,
                                                        for_each lines) and DIR/hand.toml (one
                                                        hand-written task per URL, get-f000001)
  bench/gen.py fanout-downloads DIR --base URL --root WWW --files F... --name NAME [--jobs 16]
                                                        `downloads` plus the list form:
                                                        DIR/NAME-list.toml (for_each lines of
                                                        NAME.urls, no pins) and
                                                        DIR/NAME-locked.toml with every pin in
                                                        DIR/NAME-locked.lock (SPEC section 10)
  bench/gen.py fanout-cache DIR [--tasks 10000]          `cache`'s files as one fan-out task:
                                                        DIR/files.txt (in/N.txt a line),
                                                        DIR/fanout.toml, DIR/build.ninja, DIR/in/N.txt

The layered DAG is the same shape as benches/plan.rs: WIDTH tasks per layer, each task of a
layer after the first depending on two tasks of the layer before. Files are rewritten only when
their content changes, so re-running is cheap and leaves make/ninja state alone.
"""
import argparse
import hashlib
import re
import os
import sys


def write(path, text):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        with open(path) as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def layered_deps(i, width):
    if i < width:
        return []
    start = (i // width - 1) * width
    a = start + (i * 7) % width
    b = start + (i * 13 + 5) % width
    return sorted({a, b})


def gen_dag(d, tasks, width):
    toml = ['version = 1\n[pipeline]\nname = "bench-dag"\n']
    mk = [".PHONY: all " + " ".join(f"t{i}" for i in range(tasks)) + "\n",
          "all: " + " ".join(f"t{i}" for i in range(tasks)) + "\n"]
    for i in range(tasks):
        deps = layered_deps(i, width)
        toml.append(f"\n[tasks.t{i}]\n")
        if deps:
            toml.append("deps = [" + ", ".join(f'"t{j}"' for j in deps) + "]\n")
        else:
            toml.append("deps = []\n")
        mk.append(f"t{i}:" + "".join(f" t{j}" for j in deps) + "\n")
    write(os.path.join(d, "dag.toml"), "".join(toml))
    write(os.path.join(d, "Makefile"), "".join(mk))


def gen_true(d, tasks):
    toml = ['version = 1\n[pipeline]\nname = "bench-true"\nconcurrency = 2\n']
    names = " ".join(f"t{i}" for i in range(tasks))
    mk = [f".PHONY: all {names}\nall: {names}\n"]
    for i in range(tasks):
        toml.append(f'\n[tasks.t{i}]\nrun = "true"\n')
        mk.append(f"t{i}:\n\ttrue\n")
    write(os.path.join(d, "true.toml"), "".join(toml))
    write(os.path.join(d, "Makefile"), "".join(mk))


def gen_cache(d, tasks):
    toml = ['version = 1\n[pipeline]\nname = "bench-cache"\n']
    ninja = ["rule cp\n  command = cp $in $out\n\n"]
    for i in range(tasks):
        toml.append(f'\n[tasks.t{i}]\nrun = "cp in/{i}.txt out/{i}.txt"\n'
                    f'inputs = ["in/{i}.txt"]\noutputs = ["out/{i}.txt"]\n')
        ninja.append(f"build out/{i}.txt: cp in/{i}.txt\n")
        write(os.path.join(d, "in", f"{i}.txt"), f"input {i}\n")
    os.makedirs(os.path.join(d, "out"), exist_ok=True)
    write(os.path.join(d, "cache.toml"), "".join(toml))
    write(os.path.join(d, "build.ninja"), "".join(ninja))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def gen_downloads(d, base, root, files, name, jobs):
    """FILES are paths relative to ROOT (the directory the server serves)."""
    toml = [f'version = 1\n[pipeline]\nname = "bench-{name}"\nconcurrency = {jobs}\n\n'
            f'[vars]\nmirror = "{base}"\n\n[http]\nmax_per_host = {jobs}\n']
    urls, curl, sums = [], [], []
    for rel in files:
        digest = sha256_file(os.path.join(root, rel))
        task = rel.replace("/", "-").rsplit(".", 1)[0]
        toml.append(f'\n[tasks.{task}]\ndownload = {{ url = "${{vars.mirror}}/{rel}", '
                    f'dest = "out/{rel}", sha256 = "{digest}" }}\n')
        urls.append(f"{base}/{rel}\n")
        curl.append(f'url = "{base}/{rel}"\noutput = "out/{rel}"\n')
        sums.append(f"{digest}  out/{rel}\n")
    write(os.path.join(d, f"{name}.toml"), "".join(toml))
    # The same downloads without pins: the work the peers do (they verify nothing).
    unpinned = [re.sub(r', sha256 = "[0-9a-f]{64}"', "", t) for t in toml]
    write(os.path.join(d, f"{name}-unpinned.toml"), "".join(unpinned))
    write(os.path.join(d, f"{name}.urls"), "".join(urls))
    write(os.path.join(d, f"{name}.curl"), "".join(curl))
    write(os.path.join(d, f"{name}.sha256"), "".join(sums))


# The header every lockfile starts with (src/lockfile/mod.rs HEADER, SPEC section 10).
LOCK_HEADER = "# Written by taskrun: the sha256 of every download without an inline pin. Commit this file.\n"


def toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def gen_fanout_plan(d, tasks, base):
    """100,000 downloads as one `for_each = { lines }` task and as hand-written tasks."""
    head = 'version = 1\n[pipeline]\nname = "bench-fanout-plan"\n'
    urls = [f"{base}/p/f{i:06d}.bin" for i in range(1, tasks + 1)]
    write(os.path.join(d, "urls.txt"), "".join(u + "\n" for u in urls))
    write(os.path.join(d, "fanout.toml"),
          head + '\n[tasks.get]\nfor_each = { lines = "urls.txt" }\n'
          'download = { url = "${item.line}", dest = "raw/${item.name}" }\n')
    hand = [head]
    for i, u in enumerate(urls, 1):
        hand.append(f'\n[tasks.get-f{i:06d}]\ndownload = {{ url = "{u}", dest = "raw/f{i:06d}.bin" }}\n')
    write(os.path.join(d, "hand.toml"), "".join(hand))


def gen_fanout_downloads(d, base, root, files, name, jobs):
    """The list form of `downloads`: NAME-list.toml (no pins) and NAME-locked.toml whose
    lockfile NAME-locked.lock pins every file, in the format taskrun writes."""
    gen_downloads(d, base, root, files, name, jobs)
    head = (f'version = 1\n[pipeline]\nname = "bench-{name}-list"\nconcurrency = {jobs}\n\n'
            f'[http]\nmax_per_host = {jobs}\n\n[tasks.get]\nfor_each = {{ lines = "{name}.urls" }}\n'
            f'download = {{ url = "${{item.line}}", dest = "out/{name}/${{item.name}}" }}\n')
    write(os.path.join(d, f"{name}-list.toml"), head)
    write(os.path.join(d, f"{name}-locked.toml"), head)
    entries = {}
    for rel in files:
        path = os.path.join(root, rel)
        entries[f"get[{os.path.basename(rel)}]"] = (f"{base}/{rel}", sha256_file(path), os.path.getsize(path))
    lock = [LOCK_HEADER, "version = 1\n"]
    for task in sorted(entries):
        url, digest, size = entries[task]
        lock.append(f"[[download]]\ntask = {toml_str(task)}\nurl = {toml_str(url)}\n"
                    f'sha256 = "{digest}"\nsize = {size}\n')
    write(os.path.join(d, f"{name}-locked.lock"), "".join(lock))


def gen_fanout_cache(d, tasks):
    """`gen_cache`'s workload (cp in/N.txt out/N.txt, one input and one output each) as one
    fan-out task over the lines of files.txt; build.ninja is the same as `gen_cache`'s."""
    toml = ('version = 1\n[pipeline]\nname = "bench-fanout-cache"\n\n[tasks.cp]\n'
            'for_each = { lines = "files.txt" }\ninputs = ["${item.line}"]\n'
            'outputs = ["out/${item.name}"]\nrun = "cp ${item.line} out/${item.name}"\n')
    ninja = ["rule cp\n  command = cp $in $out\n\n"]
    lines = []
    for i in range(tasks):
        lines.append(f"in/{i}.txt\n")
        ninja.append(f"build out/{i}.txt: cp in/{i}.txt\n")
        write(os.path.join(d, "in", f"{i}.txt"), f"input {i}\n")
    os.makedirs(os.path.join(d, "out"), exist_ok=True)
    write(os.path.join(d, "files.txt"), "".join(lines))
    write(os.path.join(d, "fanout.toml"), toml)
    write(os.path.join(d, "build.ninja"), "".join(ninja))


def gen_fixtures(www):
    """Random (incompressible) files; a file that already has the right size is kept."""
    sets = [("small", [f"f{i:04d}.bin" for i in range(1000)], 64 << 10),
            ("large", [f"l{i:02d}.bin" for i in range(20)], 50 << 20),
            ("huge", ["g.bin"], 1 << 30)]
    for sub, names, size in sets:
        os.makedirs(os.path.join(www, sub), exist_ok=True)
        for n in names:
            path = os.path.join(www, sub, n)
            if os.path.exists(path) and os.path.getsize(path) == size:
                continue
            with open(path + ".tmp", "wb") as f:
                left = size
                while left:
                    k = min(left, 8 << 20)
                    f.write(os.urandom(k))
                    left -= k
            os.replace(path + ".tmp", path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["dag", "true", "cache", "fixtures", "downloads",
                                      "fanout-plan", "fanout-downloads", "fanout-cache"])
    p.add_argument("dir")
    p.add_argument("--tasks", type=int)
    p.add_argument("--width", type=int, default=100)
    p.add_argument("--base")
    p.add_argument("--root")
    p.add_argument("--name")
    p.add_argument("--jobs", type=int, default=16)
    p.add_argument("--files", nargs="*")
    a = p.parse_args()
    if a.kind == "dag":
        gen_dag(a.dir, a.tasks or 10000, a.width)
    elif a.kind == "true":
        gen_true(a.dir, a.tasks or 1000)
    elif a.kind == "cache":
        gen_cache(a.dir, a.tasks or 10000)
    elif a.kind == "fixtures":
        gen_fixtures(a.dir)
    elif a.kind == "fanout-plan":
        gen_fanout_plan(a.dir, a.tasks or 100000, a.base or "http://127.0.0.1:18088")
    elif a.kind == "fanout-cache":
        gen_fanout_cache(a.dir, a.tasks or 10000)
    else:
        if not (a.base and a.root and a.name and a.files):
            sys.exit(f"{a.kind} needs --base, --root, --name and --files")
        gen = gen_downloads if a.kind == "downloads" else gen_fanout_downloads
        gen(a.dir, a.base, a.root, a.files, a.name, a.jobs)


if __name__ == "__main__":
    main()
