"""engine.telemetry"""
