"""The far side of the wire for Proxmox VE: a loopback API server speaking the real protocol, for tests,
benchmarks and the demo. ``model`` holds the cluster (nodes, guests, pools, tasks) and what a test does to
it as the web UI would (start, stop, migrate, create, destroy: each leaves a task in ``/cluster/tasks``);
``server`` serves it over HTTPS; ``mutations`` adds the guest writes the Proxmox tools make.

Nothing is imported here: the product imports none of it, and the demo imports the model alone first.
"""
