"""engine.orchestration"""
