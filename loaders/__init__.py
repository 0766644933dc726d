"""Data sources turned into typed records (imported as ``lesionkg.loaders``)."""
