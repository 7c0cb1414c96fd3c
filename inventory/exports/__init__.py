"""Views of the inventory in the formats other tools already read.

hosts.py       the live hosts, each with its best address and tags, in two queries
ansible.py     Ansible's dynamic-inventory script protocol (``inventory ansible``)
prometheus.py  Prometheus file_sd / http_sd target groups (``inventory export prometheus-sd``)
"""
