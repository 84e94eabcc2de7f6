"""A rollout worker killed while it runs a tool call (agent mode): Ray restarts it, its share of the step is rolled
out again, and the steps go on with every prompt's G samples once — none lost, none twice."""
import os
from pathlib import Path

from ray_testlib import small_config

from engine.orchestration import cluster as cluster_module
from engine.orchestration.actors import RolloutWorker
from engine.recipes.grpo import Trainer
from engine.rollout.backend import Generation
from engine.telemetry.metrics import MetricsLog

CALL = '<tool_call>\n{"name": "frame_zoom", "arguments": {"start": 0.5, "end": 2.5, "num_frames": 2}}\n</tool_call>'


def test_a_worker_killed_in_a_tool_call_is_restarted_and_its_share_redone(tmp_path, monkeypatch):
    marker = str(tmp_path / "died")

    # Classes local to the test: Ray pickles them by value into the worker, which cannot import this module.
    class ForcedCall:
        """The worker's backend, with a frame_zoom call appended to every first turn (the untrained tiny model never
        writes one itself). Everything else is the backend's own."""

        def __init__(self, backend, tokenizer):
            self.inner, self.tokenizer = backend, tokenizer
            self.call = tokenizer(CALL, add_special_tokens=False)["input_ids"]
            self.response_id = tokenizer.convert_tokens_to_ids("<tool_response>")

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def generate(self, requests):
            out = []
            for r, g in zip(requests, self.inner.generate(requests)):
                first_turn = self.response_id not in r.prompt_ids
                forced = Generation(g.token_ids + self.call, g.logprobs + [0.0] * len(self.call), "stop",
                                    "</tool_call>")
                out.append(forced if first_turn else g)
            return out

    class DiesInToolCall(RolloutWorker):
        def start(self, records, videos=()):
            super().start(records, videos)
            rollout = self.rollout
            rollout.backend = rollout.loop.backend = ForcedCall(rollout.backend, self.parts[1])
            zoom = rollout.registry.get("frame_zoom")
            run = zoom.run

            def dies_once(args, ctx):
                if not os.path.exists(marker):
                    Path(marker).touch()
                    os._exit(1)  # the process dies inside the call, on a tool thread
                return run(args, ctx)

            zoom.run = dies_once

    monkeypatch.setattr(cluster_module, "RolloutWorker", DiesInToolCall)
    cfg = small_config(tmp_path, "rollout.mode=agent", "rollout.tools=[frame_zoom]", "rollout.max_turns=1",
                       "rollout.max_new_tokens=4", "rollout.max_total_tokens=200", "ray.rollout_workers=1",
                       "ray.learners=1", "optim.lr=1e-3")
    logs = []
    cluster = cluster_module.Cluster(cfg, log=logs.append)
    try:
        trainer = Trainer(cfg, cluster, log=lambda _: None)
        trainer.eval_rows = []
        history = trainer.run(2, MetricsLog(tmp_path / "m", 2, tensorboard=False))
    finally:
        cluster.shutdown()
    assert os.path.exists(marker) and cluster.restarts >= 1
    assert any("rollout worker died" in line for line in logs), logs
    per_step = cfg.trainer.prompts_per_step * cfg.rollout.group_size
    assert [m["step"] for m in history] == [1, 2]
    assert [m["sequences"] for m in history] == [per_step, per_step]  # every sample once
    assert all(m["tool_calls"] == 1.0 and m["failed_prompts"] == 0 for m in history), history
