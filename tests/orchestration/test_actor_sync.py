"""What a rollout worker does with a sync's buckets: load them as they come (the transformers backend), or, for an
engine whose load reloads everything (vLLM), stage copies and load once per sync; and the vLLM embedding cache's key."""
import torch

from engine.orchestration.actors import RolloutWorker
from engine.rollout.backend import Backend
from engine.rollout.batch import VideoInput
from engine.rollout.vllm_backend import _video_digest


class Buckets:
    """A receiver handing three buckets through one reused buffer, as WeightReceiver does."""

    def receive(self, load):
        buffer = torch.empty(4)
        for k in range(3):
            buffer.fill_(float(k))
            load([(f"w{k}", buffer.view(2, 2))], 5)
        return 5


class Engine(Backend):
    def __init__(self, loads_once):
        self.loads_once, self.calls = loads_once, []

    def load_weights(self, named, version):
        self.calls.append(([(n, t.clone()) for n, t in named], version))


def _worker(backend):
    worker = RolloutWorker.__new__(RolloutWorker)  # no model: only the sync plumbing is under test
    worker.receiver = Buckets()
    worker.rollout = type("Rollout", (), {"backend": backend})()
    return worker


def test_an_engine_that_reloads_everything_gets_one_load_per_sync():
    backend = Engine(loads_once=True)
    assert _worker(backend).receive_weights() == 5
    (named, version), = backend.calls
    assert version == 5 and [n for n, _ in named] == ["w0", "w1", "w2"]
    assert [t.flatten().tolist() for _, t in named] == [[0.0] * 4, [1.0] * 4, [2.0] * 4]  # copies, not the buffer


def test_the_transformers_backend_loads_bucket_by_bucket():
    backend = Engine(loads_once=False)
    _worker(backend).receive_weights()
    assert [len(named) for named, _ in backend.calls] == [1, 1, 1]


def test_embedding_cache_key_is_the_decode_identity_when_there_is_one():
    pixels = torch.randn(8, 1176)
    a = VideoInput(pixels, (2, 2, 2), 1.0, key=("file", (0, 5), None, 56, 56, "qwen2_5_vl"))
    b = VideoInput(pixels.clone(), (2, 2, 2), 1.0, key=("file", (0, 6), None, 56, 56, "qwen2_5_vl"))
    assert _video_digest(a) != _video_digest(b)  # other frames: another entry, without reading a pixel
    bare = VideoInput(pixels, (2, 2, 2), 1.0)
    assert _video_digest(bare) == _video_digest(VideoInput(pixels.clone(), (2, 2, 2), 1.0))  # content hash
