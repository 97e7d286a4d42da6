"""Starts a throwaway BuildGrid cluster on loopback and tears it down when its parent goes.

PostgreSQL (a fresh database cluster in a temporary directory), BuildGrid's server and one
worker process with `--bots` bot sessions. When everything answers it prints one line

    READY {"url": "grpc://127.0.0.1:PORT", ...}

on stdout, then reads commands from stdin, one a line, answering each with `ok` or
`error: WHY`:

    stop-server    kill the BuildGrid server (the port stops answering), PostgreSQL stays
    start-server   start it again on the same port, wait until the bots are back
    kill-workers   kill the worker process and its commands (its bots never report
                   again: lost workers)

End of stdin (the parent exited or died, however) or SIGTERM tears everything down and
removes the directory. Each child also gets PR_SET_PDEATHSIG, so none outlives this process.
On failure it prints `FAILED WHY` and exits non-zero.

Run it with the Python of BuildGrid's virtualenv; see README.md beside it.
"""

import argparse
import ctypes
import glob
import json
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_BIN = os.path.dirname(sys.executable)
BGD = os.path.join(VENV_BIN, "bgd")
# Platform keys an action may carry besides OSFamily and ISA, which BuildGrid always matches
# against the bots' own (so the bots advertise BOT_PROPERTIES).
DEFAULT_KEYS = ["container-image", "pool", "gpu", "size"]
BOT_PROPERTIES = ["OSFamily=linux", "ISA=x86-64"]

_libc = ctypes.CDLL(None, use_errno=True)


class Failed(Exception):
    pass


def die_with_parent():
    # PR_SET_PDEATHSIG = 1: the child gets SIGKILL when the thread that spawned it (always the
    # main thread) dies, so with this process however it ends.
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:]).strip()
    except OSError:
        return ""


def pg_bin():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2].split(".")[0]))
    for d in reversed(dirs):
        if os.access(os.path.join(d, "initdb"), os.X_OK):
            return d
    path = shutil.which("initdb")
    if path:
        return os.path.dirname(path)
    raise Failed("no PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin or on PATH")


class Cluster:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="taskrun-buildgrid-")
        os.chmod(self.dir, 0o755)
        self.pg_user = "postgres" if os.geteuid() == 0 else None
        self.pg = self.server = self.worker = None
        self.port = None
        self.timings = {}

    def path(self, name):
        return os.path.join(self.dir, name)

    def spawn(self, argv, log, user=None):
        out = open(self.path(log), "ab")
        try:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent, user=user, cwd=self.dir,
            )
        finally:
            out.close()

    def run(self, argv, what, user=None):
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, user=user, cwd=self.dir)
        if r.returncode != 0:
            raise Failed(f"{what} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-800:]}")

    # PostgreSQL

    def start_postgres(self):
        """A fresh database from the migrated template (made once per venv), then started."""
        t = time.monotonic()
        bindir = pg_bin()
        data, sock = self.path("pg"), self.path("pg-sock")
        template = self.template(bindir)
        self.timings["template"] = time.monotonic() - t
        t = time.monotonic()
        # cp -a keeps the owner (postgres, under root) and modes.
        self.run(["cp", "-a", template, data], "copying the database template")
        self.make_dir(sock)
        self.timings["copy"] = time.monotonic() - t
        t = time.monotonic()
        self.pg, self.pg_port = self.postgres(bindir, data, sock, "postgres.log")
        self.db_url = f"postgresql://bgd@127.0.0.1:{self.pg_port}/bgd"
        self.timings["postgres"] = time.monotonic() - t

    def make_dir(self, d):
        os.mkdir(d, 0o700)
        if self.pg_user:
            pw = pwd.getpwnam(self.pg_user)
            os.chown(d, pw.pw_uid, pw.pw_gid)

    def postgres(self, bindir, data, sock, log):
        """Starts PostgreSQL on a free loopback port; returns (process, port) once it answers."""
        for _ in range(3):
            port = free_port()
            proc = self.spawn(
                [os.path.join(bindir, "postgres"), "-D", data, "-p", str(port), "-k", sock,
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=100"],
                log, user=self.pg_user)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                r = subprocess.run([os.path.join(bindir, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
                                   stdin=subprocess.DEVNULL)
                if r.returncode == 0:
                    return proc, port
                time.sleep(0.05)
            # Most likely the port was taken in the meantime: try another.
            self.kill(proc)
        raise Failed(f"PostgreSQL did not start: {tail(self.path(log))}")

    def template(self, bindir):
        """The data directory of a cluster with BuildGrid's schema applied, shut down cleanly.

        initdb and `bgd migrate apply` take seconds; a copy of their result takes a fraction of
        one. Kept inside the venv, keyed by PostgreSQL's major version (BuildGrid's is the
        venv's own); made in a scratch directory and renamed into place, so concurrent
        clusters never see half of one.
        """
        major = os.path.basename(os.path.dirname(bindir))
        cache = os.path.join(sys.prefix, "taskrun-pg")
        final = os.path.join(cache, f"template-{major}")
        if os.path.isfile(os.path.join(final, "PG_VERSION")):
            return final
        os.makedirs(cache, exist_ok=True)
        # Built where the postgres user can reach (not under root's home), then copied in.
        build = tempfile.mkdtemp(prefix="taskrun-pg-template-")
        os.chmod(build, 0o755)
        staging = None
        try:
            data, sock = os.path.join(build, "pg"), os.path.join(build, "sock")
            self.make_dir(data)
            self.make_dir(sock)
            self.run([os.path.join(bindir, "initdb"), "-D", data, "-U", "bgd", "--auth=trust", "-N", "-E", "UTF8",
                      "--no-locale", "--wal-segsize=1"], "initdb", user=self.pg_user)
            proc, port = self.postgres(bindir, data, sock, "template-postgres.log")
            try:
                self.run([os.path.join(bindir, "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "bgd", "bgd"],
                         "createdb")
                self.run([BGD, "migrate", "apply", f"postgresql://bgd@127.0.0.1:{port}/bgd"], "bgd migrate apply")
                # Smaller to copy: the default database is never used.
                self.run([os.path.join(bindir, "dropdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "bgd", "postgres"],
                         "dropdb postgres")
            finally:
                # SIGINT: PostgreSQL's fast shutdown, a clean checkpoint to copy from.
                self.kill(proc, signal.SIGINT, 30.0)
            staging = tempfile.mkdtemp(prefix="staging-", dir=cache)
            self.run(["cp", "-a", data, os.path.join(staging, "pg")], "copying the database template")
            try:
                os.rename(os.path.join(staging, "pg"), final)
            except OSError:
                if not os.path.isfile(os.path.join(final, "PG_VERSION")):
                    raise
        finally:
            shutil.rmtree(build, ignore_errors=True)
            if staging:
                shutil.rmtree(staging, ignore_errors=True)
        return final

    # BuildGrid

    def write_config(self):
        with open(os.path.join(HERE, "server.yml.in")) as f:
            text = f.read()
        keys = self.args.platform_key or DEFAULT_KEYS
        for k, v in {
            "PORT": str(self.port),
            "DB_URL": self.db_url,
            "CAS_DIR": self.path("cas"),
            "INSTANCE": self.args.instance,
            "WILDCARD_KEYS": ", ".join(json.dumps(k) for k in keys),
            "THREADS": str(self.args.threads),
        }.items():
            text = text.replace(f"@{k}@", v)
        os.makedirs(self.path("cas"), exist_ok=True)
        with open(self.path("server.yml"), "w") as f:
            f.write(text)

    def start_server(self):
        self.server = self.spawn([BGD, "server", "start", "--pid-file", self.path("server.pid"),
                                  self.path("server.yml")], "server.log")

    def start_worker(self):
        os.makedirs(self.path("work"), exist_ok=True)
        argv = [sys.executable, os.path.join(HERE, "worker.py"), "--remote", f"127.0.0.1:{self.port}",
                "--instance", self.args.instance, "--bots", str(self.args.bots), "--name", "bot",
                "--scratch", self.path("work"), "--log", self.path("worker.log"), "--stdio", self.args.stdio]
        for p in BOT_PROPERTIES + self.args.worker_property:
            argv += ["--property", p]
        self.worker = self.spawn(argv, "worker.stderr")

    def sessions(self):
        """How many times a bot registered or came back after failed calls."""
        try:
            with open(self.path("worker.log")) as f:
                return sum(1 for line in f if line.startswith(("session ", "up ")))
        except OSError:
            return 0

    def wait_bots(self, want, timeout=60):
        """Waits until `sessions()` reaches `want`: then the server answers, bots included."""
        deadline = time.monotonic() + timeout
        while self.sessions() < want:
            if self.server.poll() is not None:
                raise Failed(f"bgd server exited with {self.server.returncode}: {tail(self.path('server.log'))}")
            if self.worker.poll() is not None:
                raise Failed(f"the worker exited with {self.worker.returncode}: {tail(self.path('worker.stderr'))}")
            if time.monotonic() > deadline:
                raise Failed(f"no bot session after {timeout} s; server log: {tail(self.path('server.log'))}")
            time.sleep(0.05)

    def start_buildgrid(self):
        t = time.monotonic()
        for attempt in range(3):
            self.port = self.args.port or free_port()
            self.write_config()
            self.start_server()
            self.start_worker()
            try:
                self.wait_bots(self.args.bots)
                break
            except Failed:
                self.kill(self.worker)
                self.kill(self.server)
                if attempt == 2 or self.args.port:
                    raise
        self.timings["server"] = time.monotonic() - t

    # Control

    @staticmethod
    def kill(proc, sig=signal.SIGKILL, wait=5.0):
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.send_signal(sig)
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except ProcessLookupError:
            pass

    def stop_server(self):
        self.kill(self.server)
        # The port must refuse connections before we answer.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                time.sleep(0.05)
            except OSError:
                return
        raise Failed(f"port {self.port} still answers after the server was killed")

    def restart_server(self):
        if self.server.poll() is None:
            raise Failed("the server is running")
        if self.worker.poll() is not None:
            raise Failed("the workers were killed")
        before = self.sessions()
        self.start_server()
        # Every bot's next call fails while the server is down; it logs `up` (or a new
        # `session`) when one succeeds again.
        self.wait_bots(before + self.args.bots)

    def kill_workers(self):
        # On SIGTERM the worker kills its commands' process groups and exits at once, telling
        # the server nothing: its bots vanish as lost workers do.
        self.kill(self.worker, signal.SIGTERM, 2.0)

    def teardown(self):
        # SIGTERM lets the worker kill its commands' process groups; the server is throwaway.
        self.kill(self.worker, signal.SIGTERM, 2.0)
        self.kill(self.server)
        # SIGQUIT: PostgreSQL's immediate shutdown.
        self.kill(self.pg, signal.SIGQUIT, 5.0)
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def ready_line(self):
        return "READY " + json.dumps({
            "url": f"grpc://127.0.0.1:{self.port}",
            "port": self.port,
            "instance": self.args.instance,
            "bots": self.args.bots,
            "dir": self.dir,
            "worker_log": self.path("worker.log"),
            "server_log": self.path("server.log"),
            "pg_port": self.pg_port,
            "pids": {"server": self.server.pid, "worker": self.worker.pid, "postgres": self.pg.pid},
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        })


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bots", type=int, default=1, help="bot sessions (one worker process runs them all)")
    p.add_argument("--instance", default="", help="the REAPI instance name")
    p.add_argument("--port", type=int, default=0, help="BuildGrid's port (default: a free one)")
    p.add_argument("--platform-key", action="append", default=[],
                   help=f"platform property key actions may carry (repeatable; default {DEFAULT_KEYS})")
    p.add_argument("--worker-property", action="append", default=[], help=f"KEY=VALUE of the bots besides {BOT_PROPERTIES} (repeatable)")
    p.add_argument("--stdio", choices=["digest", "raw", "both"], default="digest")
    p.add_argument("--threads", type=int, default=40,
                   help="the server's thread pool, which is also its limit of concurrent calls")
    p.add_argument("--keep", action="store_true", help="keep the directory (logs) after teardown")
    p.add_argument("--prepare", action="store_true", help="only make the database template, then exit")
    args = p.parse_args()
    if args.prepare:
        cluster = Cluster(args)
        try:
            print(cluster.template(pg_bin()))
        finally:
            shutil.rmtree(cluster.dir, ignore_errors=True)
        return

    start = time.monotonic()
    cluster = Cluster(args)
    tearing_down = threading.Lock()

    def finish(code=0):
        """Tears down once (whichever thread or signal comes first) and exits."""
        if tearing_down.acquire(blocking=False):
            cluster.teardown()
            os._exit(code)
        while True:  # another thread is tearing down and will exit
            time.sleep(1)

    def say(line):
        try:
            print(line, flush=True)
        except OSError:  # the parent is gone
            finish(1)

    signal.signal(signal.SIGTERM, lambda *_: finish())
    signal.signal(signal.SIGINT, lambda *_: finish())
    # stdin is read from the start: its end (the parent exited or died) tears down even a
    # cluster still starting. Every child is spawned from the main thread, whose death their
    # PR_SET_PDEATHSIG watches.
    commands = queue.Queue()

    def read_stdin():
        for line in sys.stdin:
            if line.strip():
                commands.put(line.strip())
        finish()

    threading.Thread(target=read_stdin, daemon=True).start()
    try:
        cluster.start_postgres()
        cluster.start_buildgrid()
    except Exception as e:
        say(f"FAILED {e}")
        finish(1)
    cluster.timings["total"] = time.monotonic() - start
    say(cluster.ready_line())
    actions = {
        "stop-server": cluster.stop_server,
        "start-server": cluster.restart_server,
        "kill-workers": cluster.kill_workers,
    }
    while True:
        cmd = commands.get()
        try:
            if cmd not in actions:
                raise Failed(f"unknown command {cmd!r}")
            actions[cmd]()
            say("ok")
        except Exception as e:
            say(f"error: {e}")

if __name__ == "__main__":
    main()
