"""The ``floe`` command: runs a broker, a local cluster, admin calls and the operator, using each as a library."""
