"""SFT on synthesized trajectories: a replay through the agent loop is token for token the rollout of the same turns."""
import torch
from rollout_testlib import ScriptedBackend

from engine.config import load_config
from engine.learner.batch import BatchIds, learner_batch, weight_key_spans
from engine.orchestration.session import build_rollout
from engine.rollout.backend import SamplingParams
from engine.rollout.hf_backend import HFBackend
from engine.rollout.seeds import SeedTable
from engine.rollout.teacher import replay

CALL = '<tool_call>\n{"name": "frame_zoom", "arguments": {"start": "00:01.0", "end": "00:03.0"}}\n</tool_call>'
FINAL = "<time>00:01-00:03</time> <caption>a red circle</caption> <think>It is red.</think> <answer>B</answer>"


def test_replayed_trajectory_equals_a_rollout_of_the_same_turns(session, rollout_cfg):
    s = session
    cfg = load_config(None, [f"data.dir={rollout_cfg.data.dir}", "rollout.mode=agent", "rollout.max_turns=2",
                             "rollout.max_new_tokens=64", "rollout.tool_workers=0"])
    rollout = build_rollout(cfg, HFBackend(s.model, s.tokenizer), s.tokenizer, s.model.config, s.records)
    rows = s.train_rows[:2]
    turns = [{"role": "assistant", "text": CALL}, {"role": "tool", "name": "frame_zoom", "text": None},
             {"role": "assistant", "text": FINAL}]
    kept, diverged = replay(rows, [turns, turns], rollout, s.tokenizer, s.end_id)
    ids = BatchIds.of(s.tokenizer, s.model.config)
    T = learner_batch(kept, ids)
    T["loss_mask"] = weight_key_spans(T["input_ids"], T["loss_mask"], s.tokenizer, 3.0)
    assert diverged == 0

    # The same turns "sampled" by a scripted policy through the ordinary grouped rollout.
    seeds = SeedTable(0, 2, 1, 2)
    script = {seeds(p, 0, 0): CALL for p in range(2)} | {seeds(p, 0, 1): FINAL + "<|im_end|>" for p in range(2)}
    scripted = build_rollout(cfg, ScriptedBackend(s.tokenizer, script), s.tokenizer, s.model.config, s.records)
    batch, _ = scripted.run(rows, 1, SamplingParams(max_new_tokens=64, seed=0))
    R = learner_batch(batch.samples, ids)
    for key in ("input_ids", "attention_mask", "position_ids", "video_grid_thw", "pixel_values_videos"):
        assert torch.equal(T[key], R[key]), key
    assert torch.equal(T["loss_mask"] > 0, R["loss_mask"] > 0)  # loss on the model's turns only

    # Key spans weigh key_weight: the whole tool call and the <caption>/<answer> blocks, nothing else.
    ids = T["input_ids"][0]
    heavy = T["loss_mask"][0] == 3.0
    text = s.tokenizer.decode(ids[heavy])
    assert text.startswith("<tool_call>") and "</tool_call>" in text and "<answer>B</answer>" in text
    assert "<caption>a red circle</caption>" in text and "<think>" not in text and "<time>" not in text
    assert set(T["loss_mask"][0].unique().tolist()) == {0.0, 1.0, 3.0}


def test_weight_key_spans_is_identity_at_weight_one(session):
    ids = torch.tensor([[1, 2, 3]])
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    assert weight_key_spans(ids, mask, session.tokenizer, 1.0) is mask


def test_question_reminder_closes_every_tool_response_of_rollouts_and_replays(session, rollout_cfg):
    from engine.rollout.prompt import question_reminder

    s = session
    rows = s.train_rows[:1]
    turns = [{"role": "assistant", "text": CALL}, {"role": "tool", "name": "frame_zoom", "text": None},
             {"role": "assistant", "text": CALL.replace("00:01.0", "00:00.5")},
             {"role": "tool", "name": "frame_zoom", "text": None}, {"role": "assistant", "text": FINAL}]
    seeds = SeedTable(0, 1, 1, 3)
    script = {seeds(0, 0, 0): turns[0]["text"], seeds(0, 0, 1): turns[2]["text"], seeds(0, 0, 2): FINAL + "<|im_end|>"}
    reminder = question_reminder(rows[0])
    assert reminder.startswith("Question: ") and rows[0].question in reminder
    for on in (False, True):
        cfg = load_config(None, [f"data.dir={rollout_cfg.data.dir}", "rollout.mode=agent", "rollout.max_turns=3",
                                 "rollout.max_new_tokens=64", "rollout.tool_workers=0",
                                 f"rollout.question_reminder={str(on).lower()}"])
        scripted = build_rollout(cfg, ScriptedBackend(s.tokenizer, script), s.tokenizer, s.model.config, s.records)
        (sample,), _ = scripted.run(rows, 1, SamplingParams(max_new_tokens=64, seed=0))[0].samples, None
        text = s.tokenizer.decode(sample.response_ids)
        responses = text.split("</tool_response>")[:-1]
        assert len(responses) == 2
        # after the frames, last in each tool response; never in what the model writes (mask 0)
        assert all(r.endswith("<|vision_end|>\n" + reminder + "\n") == on for r in responses), text
        assert text.count(reminder) == (2 if on else 0)
        replayed, _ = replay(rows, [turns], build_rollout(cfg, HFBackend(s.model, s.tokenizer), s.tokenizer,
                                                         s.model.config, s.records), s.tokenizer, s.end_id)
        assert replayed[0].response_ids == sample.response_ids  # SFT sees what a rollout sees


def test_a_row_with_its_options_reordered_gets_its_own_prompt_text_and_the_same_frames(session, rollout_cfg):
    """sft.shuffle_options hands the rollout the same row id with its options in another order: the prompt must
    list them in that order (a cached text would teach the model to ignore the options), the frames are reused."""
    import random

    from engine.rollout.teacher import shuffle_options

    s = session
    cfg = load_config(None, [f"data.dir={rollout_cfg.data.dir}", "rollout.mode=agent", "rollout.tool_workers=0",
                             "rollout.question_reminder=true"])
    rollout = build_rollout(cfg, HFBackend(s.model, s.tokenizer), s.tokenizer, s.model.config, s.records)
    row = next(r for r in s.train_rows if r.kind == "mcq")
    first = rollout.prepare(row)
    shuffled = next(r for k in range(50) if (r := shuffle_options(row, None, random.Random(k))[0]).options != row.options)
    second = rollout.prepare(shuffled)
    listed = "\n".join(f"{'ABCDEFGH'[i]}. {o}" for i, o in enumerate(shuffled.options))
    assert listed in s.tokenizer.decode(second.prompt_ids) and listed in second.reminder
    assert listed not in s.tokenizer.decode(first.prompt_ids)
    assert second.videos[0] is first.videos[0]  # decoded once
    assert rollout.prepare(row).prompt_ids == first.prompt_ids
