"""The triplet network, sampling, training and SSBR (imported as ``lesionkg.model``)."""
