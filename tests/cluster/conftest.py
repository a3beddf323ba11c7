"""Fixtures of the multi-node tests: one swarm for the module, and a recorder of runs."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import docker.errors
import pytest

from tests.cluster.harness import Recorder
from tests.cluster.nodes import Cluster, ClusterError, node_image_tag, running_cluster


@pytest.fixture(scope="module")
def cluster(docker_client: docker.DockerClient) -> Iterator[Cluster]:
    """Three managers (quorum survives one restarting) and two workers."""
    image = node_image_tag()
    try:
        docker_client.images.get(image)
    except docker.errors.ImageNotFound:
        # As with gVisor and Podman: scripts/test says why it could not make it.
        pytest.skip(f"no cluster node image {image}: scripts/build-cluster-node-image.sh")
    try:
        with running_cluster(docker_client, managers=3, workers=2) as made:
            yield made
    except ClusterError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def recorder(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    made = Recorder(cluster.host_address, tmp_path_factory.mktemp("runs"))
    yield made
    made.close()
