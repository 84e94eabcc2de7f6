"""engine.learner: the GRPO learner.

fsdp.py (FSDPLearner: one rank of an FSDP2 group; the trainer drives one per Ray learner actor), policy.py
(token log-probs and the single-process SFT step), microbatch.py (token-balanced shards and budgeted micro-batches), logprob.py (fused log-probs from
the last hidden states), checkpoint.py (atomic checkpoints), batch.py (learner tensors from samples).
"""
