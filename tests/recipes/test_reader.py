"""The tiny model's reading warm-up (model.path: tiny-reader): its examples, its cache, its dispatch."""
import json
import random

import pytest
import torch

from engine.model.loading import READER, ensure_tiny, model_dir
from engine.recipes import reader


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VTHINK_CACHE", str(tmp_path))
    return tmp_path


def test_examples_give_the_colour_and_teach_only_the_lookup():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ensure_tiny(0))
    rng = random.Random(0)
    letters = []
    for _ in range(40):
        prompt, target, letter = reader.example(rng, tok)
        options = [line[3:] for line in prompt.splitlines() if line[:3] in ("A. ", "B. ", "C. ", "D. ")]
        colour = prompt.rsplit("<caption>a ", 1)[1].split(" box")[0]
        assert sorted(options) == sorted(reader.COLOURS) and options["ABCD".index(letter)] == colour
        assert target.endswith(f"<answer>{letter}</answer><|im_end|>") and "<caption>" not in target
        assert target.count(" yes.") == 1 and target.count(" no.") == "ABCD".index(letter)
        letters.append(letter)
    assert set(letters) == set("ABCD")  # shuffled: every letter answers some question


def test_agent_examples_copy_the_first_retrieved_span_and_answer_past_the_tool_turns():
    from transformers import AutoTokenizer

    from engine.synth.planner import _HIT
    from engine.tools import parse_tool_call
    from engine.tools.render import TURN_CLOSE, TURN_OPEN

    tok = AutoTokenizer.from_pretrained(ensure_tiny(0))
    rng, registry = random.Random(1), reader.demo_tools()
    counts, starts, kinds = set(), set(), set()
    for _ in range(60):
        segments, span, answer = reader.agent_example(rng, tok, registry)
        (prompt, p), (retrieve, r), (found, f), (zoom, z), (looked, l), (target, t) = segments
        assert (p, r, f, z, l, t) == (False, True, False, True, False, True)  # calls and the answer's end are learned
        assert "<|im_start|>assistant\n" in prompt and "<|video_pad|>" not in "".join(x for x, _ in segments)
        assert parse_tool_call(retrieve).name == "clip_retrieval"
        assert found.startswith(TURN_OPEN + "clip_retrieval: ") and found.endswith(TURN_CLOSE)
        hits = _HIT.findall(found)  # the lines the synthesis planner reads, so the same format as a rollout's
        assert 1 <= len(hits) <= 3 and hits[0] == span
        call = parse_tool_call(zoom)
        assert call.name == "frame_zoom" and call.arguments == {**json.loads(span), "num_frames": reader.ZOOM_FRAMES}
        assert looked.startswith(TURN_OPEN + "frame_zoom: frames " + json.loads(span)["start"])  # the tool's own text
        colour = looked.rsplit("<caption>a ", 1)[1].split(" box")[0]
        assert target.endswith(f"<answer>{answer}</answer><|im_end|>") and "<caption>" not in target
        options = [line[3:] for line in prompt.splitlines() if line[:3] in ("A. ", "B. ", "C. ", "D. ")]
        if options:  # colour question: the letter of the colour the look showed
            assert sorted(options) == sorted(reader.COLOURS) and options["ABCD".index(answer)] == colour
            kinds.add("mcq")
        else:  # when: the span the look showed
            assert f"<time>{answer}</time>" in looked
            kinds.add("grounding")
        counts.add(len(hits))
        starts.add(json.loads(span)["start"])
    assert counts == {1, 2, 3} and len(starts) > 20 and kinds == {"mcq", "grounding"}  # varied, so not memorised


def test_reader_is_built_once_and_changes_the_weights(cache):
    logs = []
    path = reader.ensure_reader(0, steps=20, log=logs.append)
    stamp = json.loads((path / reader.STAMP).read_text())
    assert stamp["steps"] == 20 and set(stamp["heldout_accuracy"]) == {"reading", "calling", "answering"}
    assert all(0.0 <= v <= 1.0 for v in stamp["heldout_accuracy"].values())
    assert any("reader warm-up 20/20" in line for line in logs)
    from safetensors.torch import load_file

    warm, base = load_file(path / "model.safetensors"), load_file(ensure_tiny(0) / "model.safetensors")
    assert any(not torch.equal(warm[k], base[k]) for k in base)
    assert (path / "tokenizer.json").is_file() and (path / "video_preprocessor_config.json").is_file()
    again = []
    assert reader.ensure_reader(0, steps=20, log=again.append) == path and again == []  # cached


def test_model_path_tiny_reader_is_the_built_reader_and_commands_build_it_first(cache, monkeypatch):
    """The model layer only finds the reader's build (it does not import the recipe that makes it); the commands
    that load weights build it first when model.path names it."""
    import shutil
    from types import SimpleNamespace

    from engine.errors import ConfigError
    from engine.model.loading import READER_STEPS, reader_dir

    with pytest.raises(ConfigError) as err:
        model_dir(READER, 0, "qwen2_5_vl")
    assert err.value.key == "model.path" and "ensure_reader" in str(err.value)
    build, calls = reader.ensure_reader, []
    monkeypatch.setattr(reader, "ensure_reader", lambda seed, arch, log=print: calls.append((seed, arch)))
    reader.build_if_named(SimpleNamespace(path=READER, seed=3, arch="qwen3_vl"))
    reader.build_if_named(SimpleNamespace(path="tiny", seed=0, arch="qwen2_5_vl"))
    assert calls == [(3, "qwen3_vl")]
    # A build under the name and stamp of the full warm-up (made short here) is what model_dir resolves to.
    short = build(0, "qwen2_5_vl", steps=5, log=lambda _: None)
    full = reader_dir(0, "qwen2_5_vl")
    shutil.copytree(short, full)
    stamp = json.loads((full / reader.STAMP).read_text())
    (full / reader.STAMP).write_text(json.dumps({**stamp, "steps": READER_STEPS}))
    assert model_dir(READER, 0, "qwen2_5_vl") == full


def test_rehearsal_adds_text_only_samples_that_learn_exactly_the_warm_ups_targets():
    from transformers import AutoConfig, AutoTokenizer

    from engine.learner.batch import BatchIds, learner_batch

    path = ensure_tiny(0)
    tok = AutoTokenizer.from_pretrained(path)
    samples = reader.Rehearsal(tok, 4, seed=0)()
    assert [s.row_id for s in samples] == ["reader-0", "reader-1", "reader-2", "reader-3"]
    assert all(not s.videos for s in samples)
    reading, agent = samples[0], samples[1]
    assert tok.decode(reading.response_ids).startswith("<think>") and set(reading.response_mask) == {1}
    learned = tok.decode([t for t, m in zip(agent.response_ids, agent.response_mask) if m])
    assert learned.count("<tool_call>") == 2 and learned.endswith("</answer><|im_end|>")
    assert "clip_retrieval: " in tok.decode(agent.response_ids) and "clip_retrieval: " not in learned  # given
    batch = learner_batch(samples, BatchIds.of(tok, AutoConfig.from_pretrained(path)))
    for i, s in enumerate(samples):
        assert batch["loss_mask"][i].sum() == sum(s.response_mask)
    assert reader.Rehearsal(tok, 4, seed=0)()[1].response_ids == agent.response_ids  # seeded
