"""Starting Ray once per process, and early.

`ray.init` of a local cluster takes about 2 s on 2 cores, most of it waiting on Ray's own daemons to come up.
The CLI begins it in a background thread before it imports the trainer and checks the data; the cluster
(orchestration/cluster.py) waits for it when it first needs Ray, and phases of one command (SFT, then GRPO)
share the one instance.

The starting thread stays alive until Ray is stopped: Ray's daemons die with the thread that spawned them
(they are started with a parent-death signal, which Linux ties to the spawning thread).
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading

_QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1",
              "TOKENIZERS_PARALLELISM": "false"}


class _Notices(logging.Filter):
    """Drops two Ray notices that ask for nothing: that a new local cluster has token authentication on (its
    secure default, which vthink keeps; the warning that auth is *off* still prints), and that ray.init in a
    thread could not set its SIGTERM handler (start_ray sets the same one in the main thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith("Token authentication is enabled") or msg.startswith("SIGTERM handler is not set"))


for _name in ("ray._private.authentication.authentication_token_setup", "ray._private.worker"):
    logging.getLogger(_name).addFilter(_Notices())

_lock = threading.Lock()
_thread: threading.Thread | None = None
_up = threading.Event()
_stop = threading.Event()
_error: BaseException | None = None


def actors_needed(cfg) -> int:
    """Actors a run may create (an "auto" count as its placement maximum: 8 workers, 2 learners)."""
    workers, learners = cfg.ray.rollout_workers, cfg.ray.learners
    return (8 if workers == "auto" else int(workers)) + (2 if learners == "auto" else int(learners))


def cluster_address(cfg) -> str | None:
    """The Ray cluster to join: ray.address, else RAY_ADDRESS (set by `ray job submit`); None starts a local one."""
    return cfg.ray.address or os.environ.get("RAY_ADDRESS") or None


def _init(cfg) -> None:
    global _error
    import ray

    try:
        if not ray.is_initialized():
            if cluster_address(cfg):  # an existing cluster's resources are its own: no num_cpus here
                ray.init(address=cluster_address(cfg), runtime_env={"env_vars": _QUIET_ENV}, log_to_driver=True)
            else:
                # Logical CPUs: every actor asks for one, so the local cluster must hold them all even on 2 cores.
                ray.init(num_cpus=max(os.cpu_count() or 1, actors_needed(cfg)), include_dashboard=False,
                         _system_config={"enable_worker_prestart": False, "prestart_worker_first_driver": False},
                         runtime_env={"env_vars": _QUIET_ENV}, log_to_driver=True)
    except BaseException as e:  # re-raised by wait_for_ray, in the caller's thread
        _error = e
    _up.set()
    _stop.wait()


def start_ray(cfg) -> None:
    """Begin connecting to (ray.address) or starting a local Ray in the background; returns at once."""
    global _thread
    with _lock:
        if _thread is not None:
            return
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))  # what ray.init sets
        # Imported here, in the caller's thread: a module is not imported from two threads at once, or the
        # caller's own `import ray...` (the recipe it imports meanwhile) can meet a half-initialised ray (0.4 s).
        import ray  # noqa: F401

        _up.clear()
        _stop.clear()
        _thread = threading.Thread(target=_init, args=(cfg,), name="ray-start", daemon=True)
        _thread.start()


def wait_for_ray(cfg) -> None:
    """Ray is up when this returns (started now if nobody began it)."""
    global _error
    start_ray(cfg)
    _up.wait()
    if _error is not None:
        error, _error = _error, None
        stop_ray()
        raise error


def stop_ray() -> None:
    global _thread
    import ray

    with _lock:
        ray.shutdown()
        if _thread is not None:
            _stop.set()
            _thread.join()
            _thread = None
