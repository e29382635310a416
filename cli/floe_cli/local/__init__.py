"""``floe local``: a cluster of broker processes on this machine over one object store."""
