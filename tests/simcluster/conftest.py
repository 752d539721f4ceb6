"""Fixtures: a started SimCluster per test and real `kubernetes` clients reaching it through
a kubeconfig, the way handlers will."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from simcluster import SimCluster


def _client_for(sim: SimCluster, tmp_path: Path) -> client.ApiClient:
    path = sim.write_kubeconfig(tmp_path / f"kubeconfig-{id(sim)}", context="sim")
    return config.new_client_from_config(config_file=path, context="sim")


@pytest.fixture
def sim() -> Iterator[SimCluster]:
    cluster = SimCluster(seed="demo").start(host="127.0.0.1", port=0)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def empty_sim() -> Iterator[SimCluster]:
    cluster = SimCluster(seed="empty").start(host="127.0.0.1", port=0)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def kube_api_client(sim: SimCluster, tmp_path: Path) -> Iterator[client.ApiClient]:
    api = _client_for(sim, tmp_path)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def empty_api_client(empty_sim: SimCluster, tmp_path: Path) -> Iterator[client.ApiClient]:
    api = _client_for(empty_sim, tmp_path)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def core(kube_api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api_client)


@pytest.fixture
def apps(kube_api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(kube_api_client)
