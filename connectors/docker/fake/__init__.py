"""A loopback fake of the Docker Engine API (the far side of the wire for tests, the demo and scale runs).

python -m connectors.docker.fake --containers 5000 --socket /tmp/fake-docker.sock
"""

from connectors.docker.fake.engine import (
    FakeContainer,
    FakeDocker,
    FakeEngineInfo,
    generate_containers,
    version_document,
)

__all__ = ["FakeContainer", "FakeDocker", "FakeEngineInfo", "generate_containers", "version_document"]
