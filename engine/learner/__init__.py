"""engine.learner"""
