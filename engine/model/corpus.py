"""Deterministic text corpus the project trains its tiny tokenizer on (no downloads)."""
import json
import random
from collections.abc import Iterator

# The corpus mirrors what the engine feeds the model: synthetic video questions, Video-Thinker
# style reasoning, tool calls as JSON, timestamps and chat scaffolding. A broad English word list
# gives BPE enough distinct words to fill the vocabulary.
COLORS = ["red", "green", "blue", "yellow", "orange", "purple", "pink", "white", "black", "gray",
          "brown", "cyan", "magenta", "teal", "violet", "golden", "silver", "dark", "light"]
SHAPES = ["circle", "square", "triangle", "rectangle", "star", "ball", "cube", "disc", "hexagon",
          "ring", "dot", "box", "cross", "diamond", "ellipse", "line", "arrow", "heart", "moon"]
SIZES = ["small", "large", "tiny", "big", "medium", "huge", "little", "thin", "wide", "tall"]
MOTIONS = ["moves", "slides", "bounces", "rotates", "spins", "jumps", "falls", "rises", "grows",
           "shrinks", "appears", "disappears", "flashes", "blinks", "stops", "turns", "drifts",
           "accelerates", "slows down", "changes color", "splits", "merges", "fades", "shakes"]
PLACES = ["left", "right", "top", "bottom", "center", "top left corner", "bottom right corner",
          "middle", "edge", "background", "foreground", "upper half", "lower half"]
QUESTIONS = [
    "What color is the {shape} when it {motion}?",
    "How many {shape}s appear in the video?",
    "In which direction does the {color} {shape} move?",
    "When does the {color} {shape} first appear?",
    "Which shape {motion} after {ts}?",
    "What happens to the {size} {shape} between {span}?",
    "How many times does the {shape} {motion_base}?",
    "Does the {color} {shape} touch the {place} of the frame?",
    "Which object is closest to the {place} at {ts}?",
    "What is the order of events in the video?",
]
TOOLS = ["frame_zoom", "clip_retrieval", "spatial_zoom", "subtitle_search", "subtitle_summary"]
# A few hundred common English words: BPE needs many distinct words to learn a useful vocabulary.
WORDS = """
the of and to in is that it for on was with as be at by this had not are but from or have an
they which one you were her all she there would their we him been has when who will more no if
out so said what up its about into than them can only other new some could time these two may
then do first any my now such like our over man me even most made after also did many before
must through back years where much your way well down should because each just those people
how too little state good very make world still own see men work long get here between both
life being under never day same another know while last might us great old year off come since
against go came right used take three states himself few house use during without again place
around however home small found thought went say part once general high upon school every
don does got united left number course war until always away something fact though water less
public put think almost hand enough far took head yet government system better set told nothing
night end why called didn eyes find going look asked later knew point next program city business
give group toward young days let room president side social given present several order national
possible rather second face per among form important often things looking early white case john
become large big need four within felt along children saw best church ever least power development
light thing seemed family interest want members mind country area others done turned although
open god service problem certain kind different thus began door help means sense whole matter
perhaps itself york times law human line above name example action company hands local show whose
five history gave today either act feet across taken past quite anything seen having death week
experience body word half really field am car words already themselves information tell college
shall money period held keep sure probably free seems political real behind clear question answer
option options video frame frames second seconds minute minutes segment segments clip clips scene
scenes object objects shape shapes color colors motion event events moment moments interval zoom
caption captions reasoning analysis evidence observe observed observation visible appears appear
timestamp timestamps start end begin beginning middle final finally therefore because correct
incorrect choose chosen select selected letter letters count counting twice three four five six
seven eight nine ten eleven twelve zero hundred thousand position positions moving moved direction
speed fast slow quickly slowly upward downward leftward rightward clockwise counterclockwise
horizontal vertical diagonal overlapping collision collide bounce bounced rotation spinning
appearance disappearance brightness background foreground texture pattern striped dotted solid
""".split()
SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are a video reasoning assistant. Think step by step, ground each step in time, and answer "
    "with a single option letter.",
    "You can call tools to look at parts of the video again. Call a tool by writing a JSON object "
    "inside <tool_call></tool_call> tags.",
]


def _ts(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60:02d}:{s % 60:02d}"


def _tool_call(rng: random.Random) -> str:
    name = rng.choice(TOOLS)
    a = round(rng.uniform(0, 120), 1)
    b = round(a + rng.uniform(0.5, 30), 1)
    if name == "frame_zoom":
        args = {"start": a, "end": b}
    elif name == "clip_retrieval":
        args = {"query": f"{rng.choice(COLORS)} {rng.choice(SHAPES)} {rng.choice(MOTIONS)}",
                "topk": rng.randint(1, 8)}
    elif name == "spatial_zoom":
        x0, y0 = round(rng.random() * 0.5, 2), round(rng.random() * 0.5, 2)
        args = {"time": a, "bbox": [x0, y0, round(x0 + 0.3, 2), round(y0 + 0.4, 2)]}
    else:
        args = {"start": a, "end": b, "query": rng.choice(WORDS)}
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"


def _sample(rng: random.Random) -> str:
    color, shape, size = rng.choice(COLORS), rng.choice(SHAPES), rng.choice(SIZES)
    motion, place = rng.choice(MOTIONS), rng.choice(PLACES)
    t0 = rng.uniform(0, 300)
    t1 = t0 + rng.uniform(1, 60)
    span = f"{_ts(t0)}-{_ts(t1)}"
    question = rng.choice(QUESTIONS).format(
        shape=shape, motion=motion, motion_base=motion.rstrip("s"), color=color, size=size,
        place=place, ts=_ts(t0), span=span)
    letters = "ABCD"
    answers = [f"{rng.choice(COLORS)} {rng.choice(SHAPES)}" for _ in letters]
    options = "\n".join(f"{x}. {o}" for x, o in zip(letters, answers))
    answer = rng.choice(letters)
    prose = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24)))
    scene = (f"A {size} {color} {shape} {motion} from the {place} to the {rng.choice(PLACES)} "
             f"between {_ts(t0)} and {_ts(t1)}, at {t0:.1f} seconds and {t1:.2f} seconds.")
    reasoning = (f"<think>{prose.capitalize()}.</think>\n<time>{span}</time> "
                 f"<caption>{scene}</caption> <think>The {color} {shape} {motion} near the "
                 f"{place}, so the answer is {answer}.</think>\n<answer>{answer}</answer>")
    observation = (f"<tool_response>\nFrames from {t0:.1f}s to {t1:.1f}s: {scene}\n"
                   f"</tool_response>")
    system = rng.choice(SYSTEM_PROMPTS)
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n<|vision_start|>"
            f"<|video_pad|><|vision_end|>{question}\nOptions:\n{options}\nAnswer with the option's "
            f"letter.<|im_end|>\n<|im_start|>assistant\n{_tool_call(rng)}<|im_end|>\n"
            f"<|im_start|>user\n{observation}<|im_end|>\n<|im_start|>assistant\n{reasoning}"
            f"<|im_end|>\n{rng.randint(0, 10**9)} {rng.random():.6f} {prose}")


def corpus(n_samples: int = 1500, seed: int = 0) -> Iterator[str]:
    """Yield the training texts; the same arguments always give the same texts."""
    rng = random.Random(seed)
    vocab = WORDS + COLORS + SHAPES + SIZES + PLACES + [m.split()[0] for m in MOTIONS]
    # Every listed word in plain, capitalised, upper-case and inflected forms, space-joined and
    # newline-joined (the pre-tokenizer keeps a leading space on the word, so " red" and "red"
    # are different symbols); three copies so each form clears min_frequency and merges fully.
    forms = [f(w) for w in vocab for f in (str, str.capitalize, str.upper, lambda w: w + "s",
                                            lambda w: w + "ing", lambda w: w + "ed")]
    for _ in range(3):
        yield " ".join(forms)
        yield "\n".join(forms)
    for _ in range(n_samples):
        yield _sample(rng)
