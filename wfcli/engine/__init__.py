"""The engine: runs one instance from its journal (executor, steps, signals, callbacks)
and replays histories against current code, writing nothing."""
