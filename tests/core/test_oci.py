"""Image references read by the distribution spec's grammar, before any of it reaches a URL, and
registry credentials read from a docker config.json."""

from __future__ import annotations

import base64

import pytest

from bot.oci import Credentials, ImageRef, credentials_from, parse_image

DIGEST = "sha256:" + "a1" * 32


@pytest.mark.parametrize(("image", "ref"), [
    ("registry.example.com/shop/api:1.5.0",
     ImageRef("registry.example.com", "shop/api", "1.5.0", None)),
    ("127.0.0.1:5000/shop/api", ImageRef("127.0.0.1:5000", "shop/api", "latest", None)),
    ("localhost/a/b/c:v_1.2-rc.3", ImageRef("localhost", "a/b/c", "v_1.2-rc.3", None)),
    (f"registry.example.com/shop/api@{DIGEST}",
     ImageRef("registry.example.com", "shop/api", None, DIGEST)),
    (f"registry.example.com/shop/api:1.5.0@{DIGEST}",
     ImageRef("registry.example.com", "shop/api", "1.5.0", DIGEST)),
    ("nginx:1.27", ImageRef("docker.io", "library/nginx", "1.27", None)),
    ("bitnami/redis:7", ImageRef("docker.io", "bitnami/redis", "7", None)),
    ("index.docker.io/library/nginx", ImageRef("docker.io", "library/nginx", "latest", None)),
    ("reg.example.com/my-team/app__x.y:1", ImageRef("reg.example.com", "my-team/app__x.y", "1",
                                                    None)),
])
def test_references_are_read_as_the_spec_says(image: str, ref: ImageRef) -> None:
    assert parse_image(image) == ref
    assert ref.reference == (ref.digest or ref.tag)


@pytest.mark.parametrize("image", [
    "", "registry.example.com/shop/api:1.5.0 ", "registry.example.com/shop/../api:1",
    "registry.example.com/shop/%2e%2e/api:1", "registry.example.com/Shop/api:1",
    "registry.example.com/shop/api:-1", "registry.example.com/shop/api:a/b",
    "registry.example.com/shop/api:1?x=1", "registry.example.com/shop/api:1#x",
    "registry.example.com/shop//api:1", "registry.example.com/shop/api/:1",
    "registry.example.com/shop/api@sha256:abc", f"registry.example.com/shop/api@{DIGEST.upper()}",
    "registry.example.com/shop/ápi:1", "registry.example.com/shop/api:" + "x" * 129,
    "reg_istry.example.com/shop/api:1", "-registry.example.com/shop/api:1",
    "registry.example.com:port/shop/api:1", "registry.example.com/shop/api:1:2",
])
def test_anything_else_is_refused_before_a_request(image: str) -> None:
    with pytest.raises(ValueError):
        parse_image(image)


def test_credentials_from_a_docker_config() -> None:
    auth = base64.b64encode(b"ci:pa:ss").decode()
    config = {"auths": {"https://registry.example.com": {"auth": auth},
                        "127.0.0.1:5000": {"username": "u", "password": "p"},
                        "https://index.docker.io/v1/": {"auth": auth},
                        "broken.example.com": {"auth": "not base64!"}}}
    assert credentials_from(config, "registry.example.com") == Credentials("ci", "pa:ss")
    assert credentials_from(config, "127.0.0.1:5000") == Credentials("u", "p")
    assert credentials_from(config, "docker.io") == Credentials("ci", "pa:ss")
    assert credentials_from(config, "broken.example.com") is None
    assert credentials_from(config, "other.example.com") is None
    assert credentials_from({"auths": []}, "registry.example.com") is None
