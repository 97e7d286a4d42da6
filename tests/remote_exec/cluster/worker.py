"""A worker ("bot") for BuildGrid on the Remote Workers API v1test2, for taskrun's tests.

BuildGrid 0.9.1 ships no worker, so this one runs the actions of the test cluster: one bot
session per `--bots`, each running one lease at a time in a fresh scratch directory:
fetch the Action, Command and input root from the CAS, run the command with exactly the
Command's environment, upload the outputs, stdout and stderr, and complete the lease with an
ActionResult. Every finished lease is one line in `--log`, which the Rust harness parses:

    ran bot=NAME action=HASH/SIZE exit=N status=CODE start=UNIX end=UNIX

Run it with the Python of BuildGrid's virtualenv (it imports BuildGrid's generated protos).
"""

import argparse
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import grpc
from google.protobuf import any_pb2, timestamp_pb2

from buildgrid._protos.build.bazel.remote.execution.v2 import (
    remote_execution_pb2 as re,
    remote_execution_pb2_grpc as re_grpc,
)
from buildgrid._protos.google.bytestream import bytestream_pb2 as bs, bytestream_pb2_grpc as bs_grpc
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import (
    bots_pb2 as bots,
    bots_pb2_grpc as bots_grpc,
    worker_pb2,
)
from buildgrid._protos.google.rpc import code_pb2, error_details_pb2, status_pb2

# Blobs at most this big travel in batch calls; bigger ones through ByteStream.
BATCH_LIMIT = 2 * 1024 * 1024
CHUNK = 1024 * 1024
# How often a bot with a running lease calls in (to learn of a cancellation, and as keepalive).
HEARTBEAT = 0.5
# How long an idle bot long-polls for work (BuildGrid waits 80% of it).
LONG_POLL = 8.0

_log_lock = threading.Lock()
_log_file = None


def log(line):
    with _log_lock:
        out = _log_file or sys.stderr
        out.write(line + "\n")
        out.flush()


class Failure(Exception):
    """A lease that cannot run: reported as the lease's (and so the ExecuteResponse's) status."""

    def __init__(self, code, message, missing=()):
        super().__init__(message)
        self.code = code
        self.message = message
        self.missing = list(missing)

    def status(self):
        st = status_pb2.Status(code=self.code, message=self.message)
        if self.missing:
            pf = error_details_pb2.PreconditionFailure()
            for d in self.missing:
                pf.violations.add(type="MISSING", subject=f"blobs/{d.hash}/{d.size_bytes}")
            detail = any_pb2.Any()
            detail.Pack(pf)
            st.details.append(detail)
        return st


def digest_of(data):
    return re.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


class Cas:
    """Just enough of a CAS client: batch reads and writes, ByteStream for big blobs."""

    def __init__(self, channel, instance):
        self.instance = instance
        self.cas = re_grpc.ContentAddressableStorageStub(channel)
        self.bs = bs_grpc.ByteStreamStub(channel)

    def _resource(self, d, upload=False):
        prefix = f"{self.instance}/" if self.instance else ""
        if upload:
            return f"{prefix}uploads/{uuid.uuid4()}/blobs/{d.hash}/{d.size_bytes}"
        return f"{prefix}blobs/{d.hash}/{d.size_bytes}"

    def read_many(self, digests):
        """Maps hash -> bytes for every digest; raises Failure(FAILED_PRECONDITION) if any is missing."""
        out, missing, batch, size = {}, [], [], 0
        unique = {d.hash: d for d in digests}.values()

        def flush():
            nonlocal batch, size
            if not batch:
                return
            resp = self.cas.BatchReadBlobs(re.BatchReadBlobsRequest(instance_name=self.instance, digests=batch))
            for r in resp.responses:
                if r.status.code == code_pb2.OK and digest_of(r.data).hash == r.digest.hash:
                    out[r.digest.hash] = r.data
                else:
                    missing.append(r.digest)
            batch, size = [], 0

        for d in unique:
            if d.size_bytes == 0:
                out[d.hash] = b""
            elif d.size_bytes > BATCH_LIMIT:
                try:
                    data = b"".join(r.data for r in self.bs.Read(bs.ReadRequest(resource_name=self._resource(d))))
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    missing.append(d)
                    continue
                if digest_of(data).hash != d.hash:
                    missing.append(d)
                else:
                    out[d.hash] = data
            else:
                if size + d.size_bytes > BATCH_LIMIT:
                    flush()
                batch.append(d)
                size += d.size_bytes
        flush()
        if missing:
            raise Failure(code_pb2.FAILED_PRECONDITION, "missing blobs in the CAS", missing)
        return out

    def read(self, digest):
        return self.read_many([digest])[digest.hash]

    def write_many(self, blobs):
        """Uploads the blobs (a dict hash -> (digest, bytes)) the CAS does not have yet."""
        if not blobs:
            return
        resp = self.cas.FindMissingBlobs(
            re.FindMissingBlobsRequest(instance_name=self.instance, blob_digests=[d for d, _ in blobs.values()])
        )
        batch, size = [], 0

        def flush():
            nonlocal batch, size
            if batch:
                r = self.cas.BatchUpdateBlobs(re.BatchUpdateBlobsRequest(instance_name=self.instance, requests=batch))
                for x in r.responses:
                    if x.status.code != code_pb2.OK:
                        raise Failure(code_pb2.INTERNAL, f"uploading {x.digest.hash}: {x.status.message}")
            batch, size = [], 0

        for d in resp.missing_blob_digests:
            _, data = blobs[d.hash]
            if d.size_bytes > BATCH_LIMIT:
                self._write_stream(d, data)
            else:
                if size + d.size_bytes > BATCH_LIMIT:
                    flush()
                batch.append(re.BatchUpdateBlobsRequest.Request(digest=d, data=data))
                size += d.size_bytes
        flush()

    def _write_stream(self, d, data):
        resource = self._resource(d, upload=True)

        def requests():
            offset = 0
            while True:
                chunk = data[offset : offset + CHUNK]
                last = offset + len(chunk) >= len(data)
                yield bs.WriteRequest(
                    resource_name=resource if offset == 0 else "",
                    write_offset=offset,
                    finish_write=last,
                    data=chunk,
                )
                offset += len(chunk)
                if last:
                    return

        resp = self.bs.Write(requests())
        if resp.committed_size != len(data):
            raise Failure(code_pb2.INTERNAL, f"ByteStream.Write committed {resp.committed_size} of {len(data)}")


def safe_name(name):
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise Failure(code_pb2.INVALID_ARGUMENT, f"invalid name in the input root: {name!r}")
    return name


def safe_relpath(root, rel, what):
    """`root/rel` for a relative path that stays inside root lexically."""
    if rel.startswith("/") or any(p == ".." for p in rel.split("/")):
        raise Failure(code_pb2.INVALID_ARGUMENT, f"{what} must be relative and inside the input root: {rel!r}")
    return os.path.normpath(os.path.join(root, rel)) if rel else root


def materialize(cas, root_digest, root):
    """Writes the input root tree under `root` (which exists)."""
    dirs = {}
    pending = [root_digest]
    while pending:
        got = cas.read_many(pending)
        pending = []
        for h, data in got.items():
            d = re.Directory()
            d.ParseFromString(data)
            dirs[h] = d
            pending.extend(c.digest for c in d.directories if c.digest.hash not in dirs)
    files = {}

    def walk(digest, path):
        d = dirs[digest.hash]
        for f in d.files:
            files.setdefault(f.digest.hash, (f.digest, []))[1].append((os.path.join(path, safe_name(f.name)), f.is_executable))
        for s in d.symlinks:
            os.symlink(s.target, os.path.join(path, safe_name(s.name)))
        for c in d.directories:
            sub = os.path.join(path, safe_name(c.name))
            os.mkdir(sub)
            walk(c.digest, sub)

    walk(root_digest, root)
    contents = cas.read_many([d for d, _ in files.values()])
    for h, (_, places) in files.items():
        for path, executable in places:
            with open(path, "wb") as out:
                out.write(contents[h])
            os.chmod(path, 0o755 if executable else 0o644)


def directory_message(path, blobs, children):
    """The Directory message for `path` (symlinks not followed); file contents go to `blobs`,
    every subdirectory's message to `children` (by hash)."""
    d = re.Directory()
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            d.symlinks.add(name=name, target=os.readlink(full))
        elif stat.S_ISDIR(st.st_mode):
            sub = directory_message(full, blobs, children)
            dg = digest_of(sub.SerializeToString(deterministic=True))
            children.setdefault(dg.hash, sub)
            d.directories.add(name=name, digest=dg)
        elif stat.S_ISREG(st.st_mode):
            with open(full, "rb") as f:
                data = f.read()
            dg = digest_of(data)
            blobs[dg.hash] = (dg, data)
            d.files.add(name=name, digest=dg, is_executable=bool(st.st_mode & stat.S_IXUSR))
    return d


def tree_message(path, blobs):
    """The Tree of the directory at `path`: its root and every distinct descendant Directory."""
    children = {}
    root = directory_message(path, blobs, children)
    return re.Tree(root=root, children=list(children.values()))


def collect_outputs(cas, command, workdir, result):
    """Fills the ActionResult's outputs from what the command left; missing ones are absent."""
    blobs = {}
    if command.output_paths:
        files, dirs, modern = list(command.output_paths), [], True
    else:
        files, dirs, modern = list(command.output_files), list(command.output_directories), False

    def add_file(rel, full):
        with open(full, "rb") as f:
            data = f.read()
        dg = digest_of(data)
        blobs[dg.hash] = (dg, data)
        result.output_files.add(path=rel, digest=dg, is_executable=bool(os.stat(full).st_mode & stat.S_IXUSR))

    def add_dir(rel, full):
        tree = tree_message(full, blobs)
        data = tree.SerializeToString(deterministic=True)
        dg = digest_of(data)
        blobs[dg.hash] = (dg, data)
        result.output_directories.add(path=rel, tree_digest=dg)

    for rel in files:
        full = safe_relpath(workdir, rel, "an output path")
        if not os.path.lexists(full):
            continue
        if os.path.islink(full):
            target = os.readlink(full)
            if modern:
                result.output_symlinks.add(path=rel, target=target)
            if os.path.isdir(full):
                result.output_directory_symlinks.add(path=rel, target=target)
            else:
                result.output_file_symlinks.add(path=rel, target=target)
        elif os.path.isdir(full):
            if not modern:
                raise Failure(code_pb2.FAILED_PRECONDITION, f"output file {rel!r} is a directory")
            add_dir(rel, full)
        elif os.path.isfile(full):
            add_file(rel, full)
    for rel in dirs:
        full = safe_relpath(workdir, rel, "an output directory")
        if not os.path.lexists(full):
            continue
        if os.path.islink(full):
            result.output_directory_symlinks.add(path=rel, target=os.readlink(full))
        elif os.path.isdir(full):
            add_dir(rel, full)
        else:
            raise Failure(code_pb2.FAILED_PRECONDITION, f"output directory {rel!r} is not a directory")
    return blobs


def now_ts():
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


SETPRIV = shutil.which("setpriv")


class Lease:
    """One lease being run on its own thread; `done` is set when `lease` holds the result."""

    def __init__(self, bot, lease):
        self.bot = bot
        self.lease = lease
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        start = time.time()
        status = status_pb2.Status(code=code_pb2.OK)
        result = re.ActionResult()
        self.action_digest = None
        try:
            status, result = self._execute()
        except Failure as f:
            status = f.status()
        except grpc.RpcError as e:
            status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=f"worker lost the CAS: {e.code()}")
        except Exception as e:  # the worker must report, never die on one lease
            status = status_pb2.Status(code=code_pb2.INTERNAL, message=f"worker error: {e!r}")
        self.lease.state = bots.LeaseState.COMPLETED
        self.lease.status.CopyFrom(status)
        self.lease.result.Pack(result)
        ad = self.action_digest
        d = f"{ad.hash}/{ad.size_bytes}" if ad else "-"
        log(
            f"ran bot={self.bot.name} action={d} exit={result.exit_code} status={status.code} "
            f"start={start:.3f} end={time.time():.3f}"
            + (" cancelled" if self.cancel.is_set() else "")
        )
        self.done.set()

    def _execute(self):
        cas = self.bot.cas
        md = re.ExecutedActionMetadata(worker=self.bot.name)
        md.worker_start_timestamp.CopyFrom(now_ts())
        payload = self.lease.payload
        if payload.Is(re.Action.DESCRIPTOR):
            action = re.Action()
            payload.Unpack(action)
            action_digest = digest_of(action.SerializeToString())
        elif payload.Is(re.Digest.DESCRIPTOR):
            action_digest = re.Digest()
            payload.Unpack(action_digest)
            action = re.Action()
            action.ParseFromString(cas.read(action_digest))
        else:
            raise Failure(code_pb2.INVALID_ARGUMENT, f"unknown lease payload {payload.type_url}")
        self.action_digest = action_digest
        md.input_fetch_start_timestamp.CopyFrom(now_ts())
        command = re.Command()
        command.ParseFromString(cas.read(action.command_digest))
        scratch = tempfile.mkdtemp(prefix="lease-", dir=self.bot.scratch)
        try:
            root = os.path.join(scratch, "root")
            os.mkdir(root)
            materialize(cas, action.input_root_digest, root)
            md.input_fetch_completed_timestamp.CopyFrom(now_ts())
            workdir = safe_relpath(root, command.working_directory, "the working directory")
            os.makedirs(workdir, exist_ok=True)
            outputs = list(command.output_paths) or list(command.output_files) + list(command.output_directories)
            for rel in outputs:
                parent = os.path.dirname(safe_relpath(workdir, rel, "an output path"))
                os.makedirs(parent, exist_ok=True)
            timeout = action.timeout.ToTimedelta().total_seconds() if action.HasField("timeout") else 0
            md.execution_start_timestamp.CopyFrom(now_ts())
            exit_code, timed_out, stdout, stderr = self._run_command(command, workdir, scratch, timeout)
            md.execution_completed_timestamp.CopyFrom(now_ts())
            result = re.ActionResult(exit_code=exit_code)
            md.output_upload_start_timestamp.CopyFrom(now_ts())
            blobs = collect_outputs(cas, command, workdir, result)
            for data, field in ((stdout, "stdout"), (stderr, "stderr")):
                if self.bot.stdio in ("raw", "both"):
                    setattr(result, f"{field}_raw", data)
                if self.bot.stdio in ("digest", "both") and data:
                    dg = digest_of(data)
                    blobs[dg.hash] = (dg, data)
                    getattr(result, f"{field}_digest").CopyFrom(dg)
            cas.write_many(blobs)
            md.output_upload_completed_timestamp.CopyFrom(now_ts())
            md.worker_completed_timestamp.CopyFrom(now_ts())
            result.execution_metadata.CopyFrom(md)
            status = status_pb2.Status(code=code_pb2.OK)
            if timed_out:
                status = status_pb2.Status(
                    code=code_pb2.DEADLINE_EXCEEDED, message=f"the action ran past its timeout of {timeout:g} s"
                )
            elif self.cancel.is_set():
                status = status_pb2.Status(code=code_pb2.CANCELLED, message="the lease was cancelled")
            return status, result
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _run_command(self, command, workdir, scratch, timeout):
        """Runs the command; returns (exit code, timed out, stdout, stderr)."""
        env = {v.name: v.value for v in command.environment_variables}
        argv = list(command.arguments)
        if not argv:
            raise Failure(code_pb2.INVALID_ARGUMENT, "the Command has no arguments")
        out_path, err_path = os.path.join(scratch, "stdout"), os.path.join(scratch, "stderr")
        # setpriv: a command whose worker is killed dies too (PR_SET_PDEATHSIG).
        prefix = [SETPRIV, "--pdeathsig", "KILL", "--"] if SETPRIV else []
        timed_out = False
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            try:
                # The executable is looked up in the Command's PATH, relative to the working directory.
                exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH", os.defpath))
                if exe is None:
                    err.write(f"worker: {argv[0]}: command not found\n".encode())
                    code = 127
                else:
                    # argv[0] stays as given: setpriv's execvp finds the same file in the
                    # same PATH (its environment is the Command's).
                    proc = subprocess.Popen(
                        prefix + argv,
                        executable=None if prefix else exe,
                        cwd=workdir,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        start_new_session=True,
                    )
                    self.bot.running.add(proc)
                    deadline = time.monotonic() + timeout if timeout > 0 else None
                    try:
                        while True:
                            try:
                                code = proc.wait(timeout=0.05)
                                break
                            except subprocess.TimeoutExpired:
                                pass
                            if self.cancel.is_set():
                                kill_group(proc)
                            elif deadline is not None and time.monotonic() >= deadline:
                                timed_out = True
                                kill_group(proc)
                    finally:
                        # Whatever the command left running in its group goes too.
                        kill_group(proc)
                        self.bot.running.discard(proc)
                    if code < 0:
                        code = 128 - code
            except OSError as e:
                err.write(f"worker: cannot run {argv[0]}: {e}\n".encode())
                code = 127 if isinstance(e, FileNotFoundError) else 126
        with open(out_path, "rb") as f:
            stdout = f.read()
        with open(err_path, "rb") as f:
            stderr = f.read()
        return code, timed_out, stdout, stderr


class Bot:
    """One bot session: long-polls for a lease, runs it, reports it."""

    def __init__(self, channel, args, index):
        self.name = f"{args.name}-{index}"
        self.instance = args.instance
        self.cas = Cas(channel, args.instance)
        self.stub = bots_grpc.BotsStub(channel)
        self.stdio = args.stdio
        self.scratch = args.scratch
        self.properties = args.property
        self.running = set()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _new_session(self):
        device = worker_pb2.Device(handle=self.name)
        for key, value in self.properties:
            device.properties.add(key=key, value=value)
        session = bots.BotSession(bot_id=self.name, status=bots.BotStatus.OK, worker=worker_pb2.Worker(devices=[device]))
        # A deadline under BuildGrid's 3 s network timeout makes it answer at once, without a
        # long poll: the bot is registered when this returns.
        return self.stub.CreateBotSession(
            bots.CreateBotSessionRequest(parent=self.instance, bot_session=session), timeout=2.0
        )

    def _loop(self):
        session = None
        current = None  # the Lease being run
        backoff = 0.1
        failing = False  # the last call failed: log when the server answers again
        while True:
            try:
                if session is None:
                    session = self._new_session()
                    log(f"session bot={self.name} name={session.name}")
                    backoff, failing = 0.1, False
                if current is not None and current.done.is_set():
                    # Report the completed lease.
                    for lease in session.leases:
                        if lease.id == current.lease.id:
                            lease.CopyFrom(current.lease)
                    current = None
                elif current is not None:
                    current.done.wait(HEARTBEAT)
                    if current.done.is_set():
                        continue
                busy = current is not None
                session = self.stub.UpdateBotSession(
                    bots.UpdateBotSessionRequest(name=session.name, bot_session=session),
                    timeout=HEARTBEAT * 4 if busy else LONG_POLL,
                )
                backoff = 0.1
                if failing:
                    log(f"up bot={self.name}")
                    failing = False
                ids = {lease.id for lease in session.leases}
                if current is not None and current.lease.id not in ids:
                    # The server dropped the lease: cancelled.
                    current.cancel.set()
                    current.done.wait()
                    current = None
                for lease in session.leases:
                    if current is None and lease.state in (bots.LeaseState.PENDING, bots.LeaseState.ACTIVE):
                        lease.state = bots.LeaseState.ACTIVE
                        leased = bots.Lease()
                        leased.CopyFrom(lease)
                        current = Lease(self, leased)
            except grpc.RpcError as e:
                code = e.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    continue
                failing = True
                if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    log(f"error bot={self.name} {code}: {e.details()}; starting a new session")
                    session = None
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def kill_running(self):
        for proc in list(self.running):
            kill_group(proc)


def main():
    global _log_file
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--remote", required=True, help="host:port of BuildGrid's Bots and CAS services")
    p.add_argument("--instance", default="")
    p.add_argument("--bots", type=int, default=1, help="bot sessions in this process, each running one lease at a time")
    p.add_argument("--name", default=f"worker-{os.getpid()}", help="bot names are NAME-0, NAME-1, ...")
    p.add_argument("--scratch", default=None, help="where lease directories are made")
    p.add_argument("--log", default=None, help="append one line per session and finished lease here")
    p.add_argument("--stdio", choices=["digest", "raw", "both"], default="digest", help="how stdout/stderr come back")
    p.add_argument("--property", action="append", default=[], type=lambda s: tuple(s.split("=", 1)),
                   help="KEY=VALUE platform property of the bots (repeatable)")
    args = p.parse_args()
    if args.log:
        _log_file = open(args.log, "a", buffering=1)
    args.scratch = args.scratch or tempfile.mkdtemp(prefix="taskrun-worker-")
    os.makedirs(args.scratch, exist_ok=True)
    channel = grpc.insecure_channel(args.remote)
    workers = [Bot(channel, args, i) for i in range(args.bots)]

    def stop(signum, frame):
        for b in workers:
            b.kill_running()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for b in workers:
        b.thread.start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
