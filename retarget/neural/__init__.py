"""The learned generator of the three papers: networks, data, training."""
