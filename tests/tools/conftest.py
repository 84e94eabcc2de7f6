"""Shared fixtures for the tool tests: one small synthetic dataset (real H.264 files), a video service, a tokenizer."""
import pytest

from engine.data.dataset import load_videos
from engine.data.synthetic import make_dataset
from engine.tools import CaptionClipIndex, ToolContext
from engine.video import FramePolicy, VideoService


@pytest.fixture(scope="session")
def tools_dataset(tmp_path_factory):
    """(dataset paths, {video_id: VideoRecord}): 4 videos, 8 s at 8 fps, 160x120."""
    paths = make_dataset(tmp_path_factory.mktemp("tools-data"), num_videos=4, seed=3, duration_s=8.0, fps=8.0)
    return paths, load_videos(paths.dir)


@pytest.fixture(scope="session")
def video_service():
    return VideoService(device="cpu", backend="pyav", cache_bytes=64 << 20)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from engine.model.tokenizer import build_tokenizer

    return build_tokenizer()


@pytest.fixture
def make_ctx(tools_dataset, video_service):
    """ToolContext for a video of the dataset (the first one by default)."""
    _, videos = tools_dataset
    index = CaptionClipIndex(videos)

    def make(video_id: str | None = None, policy: FramePolicy | None = None, with_index: bool = True) -> ToolContext:
        rec = videos[video_id] if video_id else next(iter(videos.values()))
        return ToolContext(str(rec.path), video_service, policy or FramePolicy(), rec.duration_s,
                           index if with_index else None)

    return make
