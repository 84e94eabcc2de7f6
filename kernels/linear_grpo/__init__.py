"""Loss-in-forward fusion of linear_logprob and grpo_loss."""
