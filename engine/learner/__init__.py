"""engine.learner: the GRPO learner.

policy.py (single-process Learner used by the trainer loop), fsdp.py (FSDPLearner: one rank of an FSDP2
group), microbatch.py (token-balanced shards and budgeted micro-batches), logprob.py (fused log-probs from
the last hidden states), checkpoint.py (atomic checkpoints), options.py (LearnerConfig), sft.py (SFT traces).
"""
