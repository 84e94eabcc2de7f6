"""Grouped rollout: G sampled responses per prompt, one decoded clip shared by the whole group."""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.errors import VideoDecodeError, VideoRequestError
from engine.model import expand_vision_pads
from engine.rollout.batch import RolloutBatch, Sample, VideoInput
from engine.rollout.hf_backend import HFBackend, Request, SamplingParams
from engine.rollout.prompt import build_messages


@dataclass
class RolloutStats:
    failed_prompts: int = 0
    errors: list[str] = field(default_factory=list)


class GroupedRollout:
    def __init__(self, backend: HFBackend, tokenizer, video_service, frame_policy, merge_size: int):
        self.backend = backend
        self.tokenizer = tokenizer
        self.video = video_service
        self.frame_policy = frame_policy
        self.merge_size = merge_size
        self.video_pad_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")

    def prepare(self, row) -> Request:
        """Decode the row's video once and build its prompt ids with one pad per merged visual token."""
        clip = self.video.sample(row.video, self.frame_policy)
        video = VideoInput(clip.pixel_values.cpu(), tuple(int(x) for x in clip.grid_thw), float(clip.second_per_grid_t))
        text = self.tokenizer.apply_chat_template(build_messages(row), add_generation_prompt=True, tokenize=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = expand_vision_pads(ids, [video.grid_thw], self.merge_size, self.video_pad_id)
        return Request(prompt_ids=ids, video=video)

    def run(self, rows: list, group_size: int, params: SamplingParams) -> tuple[RolloutBatch, RolloutStats]:
        """Sample `group_size` responses for each row. A row whose video cannot be read is dropped and counted."""
        stats = RolloutStats()
        kept, requests = [], []
        for row in rows:
            try:
                req = self.prepare(row)
            except (VideoDecodeError, VideoRequestError) as e:
                stats.failed_prompts += 1
                stats.errors.append(f"{row.id}: {e}")
                continue
            kept.append(row)
            requests.extend([req] * group_size)
        samples = []
        if requests:
            gens = self.backend.generate(requests, params)
            for k, (req, gen) in enumerate(zip(requests, gens)):
                row = kept[k // group_size]
                samples.append(
                    Sample(
                        group=k // group_size,
                        row_id=row.id,
                        prompt_ids=req.prompt_ids,
                        response_ids=gen.token_ids,
                        response_logprobs=gen.logprobs,
                        video=req.video,
                        response_text=self.tokenizer.decode(gen.token_ids[:-1] if gen.finished else gen.token_ids),
                        finished=gen.finished,
                    )
                )
        return RolloutBatch(samples=samples, group_size=group_size), stats
