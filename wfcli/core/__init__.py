"""Codec and models: journal records and their lines, instance state, IDs, durations,
retry policies, settings, clocks and the authoring API. Nothing here does I/O."""
