"""engine.algo"""
