"""Helpers of the reliability tests: tree hashes, and a fork server that runs many short lensft
command lines (killed, faulted, concurrent) without paying for Python and torch imports each time.

The server is a fresh interpreter that imports lensft and its heavy dependencies once and then
forks one child per command line. It never runs a tensor operation itself: a process that has
entered an OpenMP parallel region cannot fork children that use OpenMP again (they hang), which
is why the pytest process cannot fork them itself. Each child runs ``lensft.cli.app.main(argv)``
with its own environment (``LENSFT_FAULT`` ...), working directory and captured stdout/stderr,
exactly as the console script would; the server can ``SIGKILL`` it after a delay.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

TESTS = Path(__file__).resolve().parent


def tree_hash(root: Path, *, skip_hidden: bool = False) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root``, ``"<dir>"`` for every directory and
    ``"-> target"`` for every symlink (not followed), so any change to the tree shows."""
    out: dict[str, str] = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if skip_hidden and any(part.startswith(".") for part in Path(rel).parts):
                continue
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "<dir>"
            else:
                with open(p, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


@dataclass
class Run:
    """How a forked command line ended: exit ``code`` (None if killed), the ``signal`` that killed it."""

    code: Optional[int]
    signal: Optional[int]
    stdout: str
    stderr: str
    seconds: float

    @property
    def killed(self) -> bool:
        return self.signal == signal.SIGKILL

    def error_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]


class ForkServer:
    """The pytest side: start the server, then :meth:`run` / :meth:`start` + :meth:`wait` command lines."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
               "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}  # see conftest.py
        self.proc = subprocess.Popen([sys.executable, "-u", "-c", "import fault_support; fault_support.serve()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=str(scratch))
        self._n = 0
        self._logs: dict[int, Path] = {}
        assert self._ask({"op": "ping"}) == {"ok": True}

    def _ask(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server died (exit {self.proc.wait()})")
        return json.loads(line)

    def start(self, argv: list[str], *, env: Optional[dict[str, Optional[str]]] = None,
              cwd: Optional[Path] = None, kill_after: Optional[float] = None, as_user: Optional[int] = None,
              hits_file: Optional[Path] = None) -> int:
        """Fork a child running ``lensft ARGV``; return its pid. ``env`` entries set to None are removed.
        With ``kill_after``, the child SIGKILLs itself that many seconds after it starts; with
        ``as_user`` (the server runs as root), it runs as that user id; with ``hits_file``, a child
        that finishes writes there how often it reached each fault-injection site."""
        self._n += 1
        log = self.scratch / f"run-{self._n}"
        pid = self._ask({"op": "start", "argv": argv, "env": env or {}, "cwd": str(cwd or self.scratch),
                         "log": str(log), "kill_after": kill_after,
                         "as_user": as_user, "hits_file": str(hits_file) if hits_file else None})["pid"]
        self._logs[pid] = log
        return pid

    def stderr_so_far(self, pid: int) -> str:
        """What a running child has written to stderr yet."""
        p = Path(str(self._logs[pid]) + ".err")
        return p.read_text(errors="replace") if p.exists() else ""

    def wait(self, pid: int, *, timeout: float = 120.0) -> Run:
        """Wait for a child (SIGKILL it after ``timeout`` seconds and fail)."""
        r = self._ask({"op": "wait", "pid": pid, "timeout": timeout})
        if r.get("timed_out"):
            raise TimeoutError(f"lensft child {pid} ran past {timeout} s; stderr: {r['stderr'][-2000:]}")
        return Run(r["code"], r["signal"], r["stdout"], r["stderr"], r["seconds"])

    def run(self, argv: list[str], **kw: Any) -> Run:
        timeout = kw.pop("timeout", 120.0)
        return self.wait(self.start(argv, **kw), timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._ask({"op": "quit"})
            except (RuntimeError, BrokenPipeError, ValueError):
                pass
            self.proc.wait(timeout=30)


# ---------------------------------------------------------------------------------------------
# the server side

def _warm_imports() -> None:
    """Import what the commands import lazily, so children start warm (no tensor is computed)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch  # noqa: F401
    import transformers

    transformers.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    for mod in ("lensft.cli.app", "lensft.checkpoints.load", "lensft.checkpoints.compat", "lensft.graft.export",
                "lensft.graft", "lensft.handle", "lensft.probes.registry", "lensft.study.runner",
                "lensft.report.pipeline", "lensft.organism"):
        __import__(mod)
    from lensft.probes.registry import list_probes

    list_probes()


#: Environment variable of a child: a file path; the child refuses every socket connection and
#: name lookup, appending each attempt to that file (the no-network promise, in a forked run).
AUDIT_NETWORK = "LENSFT_TEST_AUDIT_NETWORK"


def _audit_network(record: str) -> None:
    def audit(event: str, args: tuple) -> None:
        if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
            with open(record, "a") as f:
                f.write(f"{event} {args!r}"[:200] + "\n")
            raise RuntimeError("lensft tried to use the network")
    sys.addaudithook(audit)


def _child(req: dict[str, Any]) -> None:
    """In the forked child: set up, run the command line, exit with its code (never returns)."""
    code = 3
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for k, v in req["env"].items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.chdir(req["cwd"])
        for fd, suffix in ((1, ".out"), (2, ".err")):
            f = os.open(req["log"] + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd)
            os.close(f)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        if req.get("as_user") is not None:  # drop root's privileges (permission checks bite again)
            os.setgroups([])
            os.setgid(req["as_user"])
            os.setuid(req["as_user"])
        import warnings

        import torch

        warnings.simplefilter("ignore")  # third-party deprecation notices are not lensft's output
        torch.set_num_threads(1)  # tiny models: one thread is fastest, and never oversubscribes the cores
        if os.environ.get(AUDIT_NETWORK):  # record (in that file) and refuse every network use
            _audit_network(os.environ[AUDIT_NETWORK])
        if req.get("kill_after") is not None:
            import threading

            threading.Timer(req["kill_after"], lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
        from lensft.cli.app import main

        code = main(req["argv"])
        if req.get("hits_file"):
            from lensft.faults import hits

            Path(req["hits_file"]).write_text(json.dumps(hits()))
    except BaseException:  # a crash of the harness itself, not of lensft (main catches its own)
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait(req: dict[str, Any], started: dict[int, tuple[float, str]]) -> dict[str, Any]:
    pid = req["pid"]
    t0, log = started.pop(pid)
    deadline = time.monotonic() + req["timeout"]
    timed_out = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            timed_out, status = True, 0
            break
        time.sleep(0.005)
    read = lambda suffix: Path(log + suffix).read_text(errors="replace") if Path(log + suffix).exists() else ""  # noqa: E731
    return {"code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "stdout": read(".out"), "stderr": read(".err"), "seconds": time.monotonic() - t0, "timed_out": timed_out}


def serve() -> None:
    """Answer JSON requests on stdin, one per line, until ``quit`` or end of input."""
    _warm_imports()
    started: dict[int, tuple[float, str]] = {}
    out = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "ping":
            reply: dict[str, Any] = {"ok": True}
        elif op == "start":
            out.flush()
            pid = os.fork()
            if pid == 0:
                _child(req)
            started[pid] = (time.monotonic(), req["log"])
            reply = {"pid": pid}
        elif op == "wait":
            reply = _wait(req, started)
        elif op == "quit":
            for pid in list(started):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            out.write(json.dumps({"ok": True}) + "\n")
            out.flush()
            return
        else:
            reply = {"error": f"unknown op {op}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


_SERVER: list[ForkServer] = []


@pytest.fixture(scope="session")
def forkserver(tmp_path_factory: pytest.TempPathFactory) -> ForkServer:
    """The session's fork server (import this fixture into a test module to use it). Started on
    first use and shared by every module that imports the fixture; it exits with the session."""
    if not _SERVER or _SERVER[0].proc.poll() is not None:
        scratch = tmp_path_factory.mktemp("forkserver")
        os.chmod(scratch, 0o777)  # children that drop root's privileges write their logs here
        _SERVER[:] = [ForkServer(scratch)]
        atexit.register(_SERVER[0].close)
    return _SERVER[0]
