"""engine.rollout"""
