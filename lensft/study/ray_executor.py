"""Run a study's units as Ray tasks on a cluster (``lensft study --executor ray``).

Every unit that is not cached becomes one Ray task with the unit's resource request
(``cpus_per_unit``, ``gpus_per_unit``). The task rebuilds its model(s) from the replicate's
checkpoint directories (:func:`~lensft.study.execute.execute_anywhere`), runs the probe and returns
the result as JSON text; the driver writes it into the study directory atomically, exactly as a
local run does. A study run on Ray is byte-identical to the same study run locally when each
unit runs torch on as many threads as the local run (``cpus_per_unit``; float32 sums depend on
how work is split across threads) on the same kind of hardware. A driver that is interrupted
(even killed) resumes from the cached units when rerun.

**Shared filesystem.** Workers open the checkpoints (and the organism's mixes) at the same
absolute paths as the driver: every node must see them there (NFS, Lustre, a mounted bucket).
The study directory itself is written by the driver only. Every node must run the same lensft
(a worker on another version refuses the unit, naming both versions).

**Retries.** A unit whose worker dies (out of memory, a lost node) or that raises anything but a
:class:`~lensft.errors.LensftError` (a CUDA out-of-memory error, an I/O error on the shared
filesystem) is retried up to ``max_retries`` times by Ray. A ``LensftError`` describes a problem in
the input that a retry cannot fix, so that unit fails at once. A unit that still fails is
reported with its one-line error (the study record's ``failures``) while the others finish.

Ray is an optional dependency (``pip install "lensft[ray]"``), imported only when a study runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from lensft import __version__
from lensft.errors import LensftError

if TYPE_CHECKING:
    from lensft.prompts import PromptSet
    from lensft.study.execute import Progress, UnitOutcome, UnitTask
    from lensft.study.plan import UnitPlan
    from lensft.study.record import Replicate
    from lensft.study.sources import ReplicateSource, SourcePaths

# This module imports torch and the probes only inside functions: the actor that counts running
# units (StartBoard) and a driver that only connects stay light.

log = logging.getLogger(__name__)

#: What a worker sends back: ``(error or None, result JSON or "", seconds)``.
WorkerReply = tuple[Optional[str], str, float]


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise LensftError('running a study on Ray needs the ray package: pip install "lensft[ray]"',
                          field="executor") from None
    return ray


def run_unit(plan: UnitPlan, key: str, prompts: PromptSet, paths: SourcePaths, driver_version: str, threads: int,
             board: Any = None) -> WorkerReply:
    """Worker side of one unit: announce its start, run it on ``threads`` torch threads, return
    the result as JSON text. (The prompt set comes apart from the task: the driver puts each
    distinct set into Ray's object store once, and units that share it read the one copy.)

    A :class:`LensftError` comes back as the reply's error (no retry: the input is at fault);
    any other exception propagates, so Ray retries the unit.
    """
    import torch

    from lensft.study.execute import UnitTask, execute_anywhere, first_line

    if board is not None:
        board.mark.remote(key)
    torch.set_num_threads(threads)
    if driver_version != __version__:
        return (f"LensftError: this worker runs lensft {__version__} but the driver {driver_version}; "
                "install the same lensft on every node", "", 0.0)
    t0 = time.perf_counter()
    try:
        result = execute_anywhere(UnitTask(plan, key, prompts, paths))
    except LensftError as e:
        return first_line(e), "", time.perf_counter() - t0
    return None, result.model_dump_json(), time.perf_counter() - t0


class StartBoard:
    """A Ray actor the workers tell when a unit starts, so the driver can count units running."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def mark(self, key: str) -> None:
        self.keys.append(key)

    def drain(self) -> list[str]:
        out, self.keys = self.keys, []
        return out


def _line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else ""


def _error_line(ray: Any, e: BaseException) -> str:
    """One line for a failed Ray task: the probe's own exception where Ray wrapped one."""
    from lensft.study.execute import first_line

    cause = getattr(e, "cause", None) if isinstance(e, ray.exceptions.RayTaskError) else None
    return first_line(cause if isinstance(cause, BaseException) else e)


@dataclass
class RayExecutor:
    """Runs a study's tasks as Ray tasks (the :class:`~lensft.study.execute.Executor` protocol).

    Args:
        address: the cluster, as ``ray.init`` reads it: ``None`` (this process's Ray connection
            if it has one, else ``$RAY_ADDRESS``, else the cluster last started on this machine,
            else a new Ray instance here), ``"auto"`` (an existing cluster, found the same way:
            e.g. after ``ray start --head``), ``"HOST:PORT"`` (the head node's GCS address) or
            ``"ray://HOST:PORT"`` (Ray Client).
        gpus_per_unit: GPUs each unit reserves (0: CPU only; fractions share a GPU). Ray makes them
            the unit's only visible CUDA devices, so a study on device ``cuda`` runs each unit on its
            own GPU (``auto`` spreads a unit's model over its GPUs).
        cpus_per_unit: CPUs each unit reserves; the unit runs torch on that many threads (at least
            one). float32 sums depend on how work is split across threads, so results are
            byte-identical to a local run whose torch uses as many threads (and the same hardware).
        max_retries: times Ray reruns a unit whose worker died or that raised (not a LensftError).
        init_options: extra keywords for ``ray.init`` when this executor connects (e.g.
            ``num_cpus`` for a local instance, ``runtime_env``; ``log_to_driver`` is False unless
            given: the workers' output stays in Ray's session logs).
        poll_seconds: how often the driver refreshes the running count while it waits.

    Every node must see the checkpoints at the driver's paths (a shared filesystem). A process
    already connected to Ray (``ray.init``) keeps that connection, whatever ``address`` says.
    """

    address: Optional[str] = None
    gpus_per_unit: float = 0
    cpus_per_unit: float = 1
    max_retries: int = 2
    init_options: dict[str, Any] = field(default_factory=dict)
    poll_seconds: float = 0.5
    _owned: bool = field(default=False, init=False, repr=False)  # this executor made the connection

    def __post_init__(self) -> None:
        if self.gpus_per_unit < 0 or self.cpus_per_unit < 0 or self.gpus_per_unit + self.cpus_per_unit <= 0:
            raise LensftError(f"a unit needs a positive number of CPUs or GPUs (got {self.cpus_per_unit} CPUs, "
                              f"{self.gpus_per_unit} GPUs)", field="gpus_per_unit")
        if self.max_retries < 0:
            raise LensftError(f"max_retries must be 0 or more (got {self.max_retries})", field="max_retries")

    def __enter__(self) -> "RayExecutor":
        """Connect now (a bad address or a request no node can meet fails before the study starts)."""
        ray = import_ray()
        self._owned = self._connect(ray)
        try:
            self._check_fits(ray)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        """Disconnect if :meth:`__enter__` connected (a connection made before it is left open)."""
        if self._owned:
            import_ray().shutdown()
        self._owned = False

    def check_device(self, device: str) -> None:
        """Refuse a study device the units cannot see (Ray hides the GPUs from a unit that reserves
        none); warn about reserved GPUs that a CPU study leaves idle."""
        if device not in ("cpu", "meta") and self.gpus_per_unit <= 0:
            raise LensftError(f"the study runs its models on {device}, but Ray shows a unit only the GPUs it "
                              "reserves and these reserve none: reserve GPUs per unit", field="gpus_per_unit")
        if device == "cpu" and self.gpus_per_unit > 0:
            log.warning("each unit reserves %g GPU(s) but the study runs its models on the CPU; set the study's "
                        "device to cuda to use them", self.gpus_per_unit)

    def run(self, tasks: Sequence[UnitTask], sources: dict[Replicate, ReplicateSource],
            done: Callable[[UnitOutcome], None], progress: Optional[Progress] = None) -> None:
        """Submit every task, then report each outcome through ``done`` as it completes."""
        if not tasks:
            return
        for device in {s.load.device for s in sources.values()}:
            self.check_device(device)
        ray = import_ray()
        if not ray.is_initialized():  # used without ``with``: connect for this run only
            with self:
                return self.run(tasks, sources, done, progress)
        self._check_fits(ray)
        remote = ray.remote(num_cpus=self.cpus_per_unit, num_gpus=self.gpus_per_unit,
                            max_retries=self.max_retries, retry_exceptions=True)(run_unit)
        board = ray.remote(num_cpus=0)(StartBoard).remote()
        refs = self._submit(ray, remote, tasks, board)
        log.info("submitted %d units to Ray (%s CPU, %s GPU each, %d retries)", len(refs),
                 self.cpus_per_unit, self.gpus_per_unit, self.max_retries)
        try:
            _Driver(ray, refs, board, done, progress, self.poll_seconds).loop()
        finally:
            ray.kill(board)

    def _submit(self, ray: Any, remote: Any, tasks: Sequence[UnitTask], board: Any) -> dict[Any, UnitTask]:
        """Submit every task; each distinct prompt set goes into the object store once."""
        from lensft.prompts import content_hash

        shared: dict[str, Any] = {}
        refs = {}
        for t in tasks:
            h = content_hash(t.prompts)
            if h not in shared:
                shared[h] = ray.put(t.prompts)
            named = remote.options(name=f"lensft {t.where}")  # how the Ray dashboard lists it
            refs[named.remote(t.plan, t.key, shared[h], t.paths, __version__, self.threads, board)] = t
        return refs

    @property
    def threads(self) -> int:
        """torch threads per unit: its whole CPUs (at least one)."""
        return max(1, int(self.cpus_per_unit))

    def _connect(self, ray: Any) -> bool:
        """Connect to the cluster unless this process already is; True when this call connected."""
        if ray.is_initialized():
            return False
        try:
            # workers' own output stays in Ray's logs: lensft reports each unit's outcome itself
            ray.init(address=self.address, **{"log_to_driver": False, **self.init_options})
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = self.address or "this machine"
            raise LensftError(f"cannot connect to the Ray cluster at {where} ({type(e).__name__}: {_line(e)}); start one with "
                              "`ray start --head` or give its address", field="address") from None
        return True

    def _check_fits(self, ray: Any) -> None:
        """Refuse a resource request that no node of the cluster can meet (the tasks would wait forever)."""
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if any(r.get("CPU", 0) >= self.cpus_per_unit and r.get("GPU", 0) >= self.gpus_per_unit for r in nodes):
            return
        best = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
        raise LensftError(f"no node of the Ray cluster offers {self.cpus_per_unit} CPUs and {self.gpus_per_unit} GPUs "
                          f"for one unit (the largest has {best.get('CPU', 0):g} CPUs, {best.get('GPU', 0):g} GPUs); "
                          "ask for less per unit or add a node", field="gpus_per_unit")


class _Driver:
    """The driver's loop: wait for finished units, count the running ones, report outcomes."""

    def __init__(self, ray: Any, refs: dict[Any, UnitTask], board: Any, done: Callable[[UnitOutcome], None],
                 progress: Optional[Progress], poll_seconds: float) -> None:
        self.ray, self.refs, self.board, self.done, self.progress = ray, refs, board, done, progress
        self.poll = poll_seconds
        self.by_key = {t.key: t for t in refs.values()}
        self.seen: set[str] = set()  # units whose start was reported (once, retries or not)

    def loop(self) -> None:
        try:
            while self.refs:
                pending = list(self.refs)
                ready, _ = self.ray.wait(pending, num_returns=1, timeout=self.poll)
                if ready:  # everything that is ready by now
                    ready, _ = self.ray.wait(pending, num_returns=len(pending), timeout=0)
                for ref in ready:
                    self._finish(ref)
                self._mark_started()
        except BaseException:  # an interrupted driver cancels what it submitted; a rerun resumes
            for ref in self.refs:
                self.ray.cancel(ref, force=True)
            raise

    def _mark_started(self) -> None:
        try:
            keys = self.ray.get(self.board.drain.remote(), timeout=10)
        except Exception as e:  # the count is a display: never fail the study over it
            log.debug("could not read which units started: %s", e)
            return
        for k in keys:
            if k in self.by_key:
                self._started(self.by_key[k])

    def _started(self, task: UnitTask) -> None:
        if task.key not in self.seen:
            self.seen.add(task.key)
            if self.progress is not None:
                self.progress.started(task)

    def _finish(self, ref: Any) -> None:
        task = self.refs.pop(ref)
        self._started(task)  # a unit may finish before its start is read
        outcome = self._outcome(ref, task)
        if outcome.error is not None:
            log.error("unit %s failed: %s", task.where, outcome.error)
        self.done(outcome)
        if self.progress is not None:
            self.progress.finished(outcome)

    def _outcome(self, ref: Any, task: UnitTask) -> UnitOutcome:
        from lensft.results import ProbeResult
        from lensft.study.execute import UnitOutcome

        try:
            error, text, seconds = self.ray.get(ref)
        except Exception as e:  # retries spent: the probe's own exception, a dead worker, a lost node
            return UnitOutcome(task, None, _error_line(self.ray, e), 0.0)
        if error is not None:
            return UnitOutcome(task, None, error, seconds)
        return UnitOutcome(task, ProbeResult.model_validate_json(text), None, seconds)


__all__ = ["RayExecutor", "import_ray", "run_unit"]
