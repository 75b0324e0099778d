"""Fault injection and bad input against the real ``wf``: crashes, damage, races, attacks."""
