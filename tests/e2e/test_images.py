"""Container images end to end: a busybox image built here from busybox-static (two
layers: the second deletes a file and makes a directory opaque), pushed with skopeo to
Debian's docker-registry on loopback (open, and with htpasswd basic auth), then pulled,
imported (docker-archive tarball, OCI layout) and unpacked with ``meseta image``."""

import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
import urllib.parse
import warnings
from pathlib import Path

import pytest
import requests

from conftest import free_port, wait_for
from helpers import scalar_resource, wait_sandbox

BUSYBOX = Path("/bin/busybox")
APPLETS = ["sh", "cat", "ls", "env", "echo", "test", "sleep", "id", "pwd", "true", "false"]
IMAGE_ENV = ["PATH=/bin", "GREETING=hello from the image"]

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("docker-registry", "skopeo")) or not BUSYBOX.exists(),
    reason="needs docker-registry, skopeo and busybox-static (scripts/test.sh installs them)",
)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_bytes(entries):
    """A tar of ``(path, kind, payload)``: kind ``dir``, ``file`` (payload bytes, mode
    0644 or 0755 for ``exe``) or ``link`` (payload is the target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, kind, payload in entries:
            info = tarfile.TarInfo(path)
            info.mtime = 1_700_000_000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, payload
                tar.addfile(info)
            else:
                info.size, info.mode = len(payload), 0o755 if kind == "exe" else 0o644
                tar.addfile(info, io.BytesIO(payload))
    return out.getvalue()


def build_oci_layout(root):
    """Writes the two-layer busybox image as an OCI layout at ``root`` (tag ``latest``)
    and returns its manifest digest."""
    layer1 = tar_bytes(
        [("bin/", "dir", None), ("bin/busybox", "exe", BUSYBOX.read_bytes())]
        + [(f"bin/{a}", "link", "busybox") for a in APPLETS]
        + [
            ("etc/", "dir", None),
            ("etc/removed", "file", b"deleted by layer 2\n"),
            ("etc/kept", "file", b"kept\n"),
            ("data/", "dir", None),
            ("data/old", "file", b"hidden by the opaque dir\n"),
            ("data/sub/", "dir", None),
            ("data/sub/deep", "file", b"hidden too\n"),
            ("tmp/", "dir", None),
        ]
    )
    layer2 = tar_bytes(
        [
            ("etc/", "dir", None),
            ("etc/.wh.removed", "file", b""),
            ("data/", "dir", None),
            ("data/.wh..wh..opq", "file", b""),
            ("data/new", "file", b"from layer 2\n"),
        ]
    )
    layer1_gz = gzip.compress(layer1, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": IMAGE_ENV, "Cmd": ["/bin/sh"], "WorkingDir": "/data"},
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer1), sha256(layer2)]},
        }
    ).encode()
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data, media_type):
        digest = sha256(data)
        (blobs / digest.split(":")[1]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": put(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [
                put(layer1_gz, "application/vnd.oci.image.layer.v1.tar+gzip"),
                put(layer2, "application/vnd.oci.image.layer.v1.tar"),
            ],
        }
    ).encode()
    top = put(manifest, "application/vnd.oci.image.manifest.v1+json")
    top["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return top["digest"]


def add_platform_index(root):
    """Turns the layout at ``root`` into a multi-platform image: its tag names an index
    of the amd64 manifest and an arm64 one (another config); returns both digests."""
    index = json.loads((root / "index.json").read_text())
    amd64 = index["manifests"][0]
    blobs = root / "blobs" / "sha256"
    manifest = json.loads((blobs / amd64["digest"].split(":")[1]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes())
    config["architecture"] = "arm64"

    def put(data, media_type, **extra):
        (blobs / sha256(data).split(":")[1]).write_bytes(data)
        return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}

    manifest["config"] = put(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
    arm64 = put(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json",
                platform={"architecture": "arm64", "os": "linux"})
    platforms = [arm64, dict(amd64, platform={"architecture": "amd64", "os": "linux"})]
    for entry in platforms:
        entry.pop("annotations", None)
    nested = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": platforms}
    top = put(json.dumps(nested).encode(), "application/vnd.oci.image.index.v1+json",
              annotations={"org.opencontainers.image.ref.name": "latest"})
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return amd64["digest"], arm64["digest"]


def with_runtime_config(layout, dest, runtime):
    """A copy of the busybox layout at ``dest`` whose image config's ``config`` (Entrypoint,
    Cmd, Env, WorkingDir) is ``runtime``: a new config blob and manifest, as a builder
    would write them."""
    shutil.copytree(layout, dest)
    blobs = dest / "blobs" / "sha256"
    index = json.loads((dest / "index.json").read_text())
    top = index["manifests"][0]
    manifest = json.loads((blobs / top["digest"].split(":")[1]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes())
    config["config"] = runtime

    def put(data, media_type):
        (blobs / sha256(data).split(":")[1]).write_bytes(data)
        return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}

    manifest["config"] = put(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
    entry = put(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    entry["annotations"] = top["annotations"]
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return dest


def bcrypt_hash(password):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
    except ImportError:
        pytest.skip("no crypt module to make a bcrypt htpasswd entry")
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    if not hashed or not hashed.startswith("$2"):
        pytest.skip("this libcrypt cannot make bcrypt hashes")
    return hashed


class Registry:
    """Debian's docker-registry on 127.0.0.1 with filesystem storage, optionally behind
    htpasswd basic auth."""

    def __init__(self, base, *, users=None, token=None):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        base.mkdir(parents=True)
        config = [
            "version: 0.1",
            "log:",
            "  level: info",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {base / 'data'}",
            "http:",
            f"  addr: {self.address}",
        ]
        if users:
            htpasswd = base / "htpasswd"
            htpasswd.write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in users.items()))
            config += ["auth:", "  htpasswd:", "    realm: meseta-test", f"    path: {htpasswd}"]
        if token:
            config += [
                "auth:",
                "  token:",
                f"    realm: {token.realm}",
                f"    service: {TokenServer.SERVICE}",
                f"    issuer: {TokenServer.ISSUER}",
                f"    rootcertbundle: {token.cert_path}",
            ]
        (base / "config.yml").write_text("\n".join(config) + "\n")
        self.log_path = base / "registry.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(base / "config.yml")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: requests.get(f"http://{self.address}/v2/", timeout=5).status_code in (200, 401),
            what="docker-registry to answer /v2/",
        )

    def push(self, layout, name, creds=None):
        args = ["skopeo", "copy", "--dest-tls-verify=false"]
        if creds:
            args.append(f"--dest-creds={creds}")
        run([*args, f"oci:{layout}:latest", f"docker://{self.address}/{name}"])

    def manifest_digest(self, name, creds=None):
        args = ["skopeo", "inspect", "--tls-verify=false", "--raw"]
        if creds:
            args.append(f"--creds={creds}")
        raw = run([*args, f"docker://{self.address}/{name}"]).stdout
        return sha256(raw.encode())

    def manifest_requests(self, repository):
        """How many manifest GETs the registry logged for ``repository``."""
        self.log.flush()
        text = self.log_path.read_text()
        return text.count(f'"GET /v2/{repository}/manifests/')

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class TokenServer:
    """A registry token service on 127.0.0.1: checks Basic auth against ``users`` and
    issues RS256 JWTs (certificate in ``x5c``) granting the scope asked for."""

    SERVICE = "meseta-test-registry"
    ISSUER = "meseta-test-issuer"

    def __init__(self, base, users):
        try:
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import padding
        except ImportError:
            pytest.skip("no python cryptography module to sign registry tokens")
        if not shutil.which("openssl"):
            pytest.skip("no openssl to make the token service's certificate")
        base.mkdir(parents=True)
        self.cert_path = base / "cert.pem"
        key_path = base / "key.pem"
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=meseta-test-token", "-keyout", str(key_path), "-out", str(self.cert_path)])
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        der = run(["openssl", "x509", "-in", str(self.cert_path), "-outform", "DER"], text=False).stdout
        self.requests = []

        def b64(data):
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        def token_for(user, scope):
            now = int(time.time())
            access = []
            if scope:
                kind, name, actions = scope.split(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
            header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
            claims = {"iss": self.ISSUER, "sub": user, "aud": self.SERVICE, "exp": now + 300,
                      "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
            signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
            signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
            return f"{signing_input}.{b64(signature)}"

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                auth = self.headers.get("Authorization", "")
                user = None
                if auth.startswith("Basic "):
                    name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    user = name if users.get(name) == password else None
                server.requests.append((user, query.get("scope", [""])[0]))
                if user is None:
                    self.send_response(401)
                    self.end_headers()
                    self.wfile.write(b'{"details": "wrong user or password"}')
                    return
                body = json.dumps({"token": token_for(user, query.get("scope", [""])[0])}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def run(args, text=True, **kwargs):
    result = subprocess.run(args, capture_output=True, text=text, timeout=180, **kwargs)
    assert result.returncode == 0, f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("image") / "busybox"
    digest = build_oci_layout(root)
    return root, digest


@pytest.fixture(scope="module")
def registry(tmp_path_factory, layout):
    registry = Registry(tmp_path_factory.mktemp("registry") / "open")
    try:
        registry.push(layout[0], "busybox:latest")
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory, layout):
    registry = Registry(tmp_path_factory.mktemp("registry") / "auth", users={"alice": "s3cret"})
    try:
        registry.push(layout[0], "private/busybox:latest", creds="alice:s3cret")
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory, layout):
    base = tmp_path_factory.mktemp("registry")
    tokens = TokenServer(base / "tokens", {"alice": "s3cret"})
    registry = Registry(base / "token", token=tokens)
    try:
        registry.push(layout[0], "private/busybox:latest", creds="alice:s3cret")
        yield registry, tokens
    finally:
        registry.stop()
        tokens.stop()


class ImageCli:
    """``meseta image`` on one work directory."""

    def __init__(self, binary, work_dir, *extra):
        self.binary, self.work_dir, self.extra = binary, work_dir, list(extra)

    def run(self, *args, check=True):
        result = subprocess.run(
            [str(self.binary), "image", *args, "--work-dir", str(self.work_dir), *self.extra],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if check:
            assert result.returncode == 0, f"meseta image {args}: {result.stdout}\n{result.stderr}"
        return result

    def images(self):
        return {r["name"]: r for r in json.loads(self.run("list", "--json").stdout)}

    def store(self):
        return self.work_dir / "images"


def check_busybox_rootfs(root):
    """The flattened image: busybox intact, layer 2's whiteout and opaque dir applied."""
    assert (root / "bin/busybox").read_bytes() == BUSYBOX.read_bytes()
    assert os.readlink(root / "bin/sh") == "busybox"
    assert (root / "etc/kept").read_text() == "kept\n"
    assert not (root / "etc/removed").exists()
    assert not (root / "etc/.wh.removed").exists()
    assert sorted(p.name for p in (root / "data").iterdir()) == ["new"]
    assert not (root / "etc/os-release").exists()


def check_blobs_verified(store):
    for blob in (store / "blobs/sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name


def test_pull_from_registry_and_unpack(meseta_bin, tmp_path, registry, layout):
    cli = ImageCli(meseta_bin, tmp_path / "agent", "--docker-insecure-registries", registry.address)
    name = f"{registry.address}/busybox:latest"
    out = cli.run("pull", name).stdout
    assert f"pulled {name}" in out
    record = cli.images()[name]
    assert record["manifest"] == registry.manifest_digest("busybox:latest")
    assert len(record["layers"]) == 2
    check_blobs_verified(cli.store())
    cli.run("unpack", name, str(tmp_path / "rootfs"))
    check_busybox_rootfs(tmp_path / "rootfs")
    # The image config is what the builder wrote.
    config = json.loads((cli.store() / "blobs/sha256" / record["config"].split(":")[1]).read_text())
    assert config["config"]["Env"] == IMAGE_ENV


def test_pull_resolves_an_index_to_linux_amd64(meseta_bin, tmp_path, registry, layout):
    multi = tmp_path / "multi"
    shutil.copytree(layout[0], multi)
    amd64, arm64 = add_platform_index(multi)
    run(["skopeo", "copy", "--all", "--dest-tls-verify=false", f"oci:{multi}:latest",
         f"docker://{registry.address}/multi:latest"])
    cli = ImageCli(meseta_bin, tmp_path / "agent", "--docker-insecure-registries", registry.address)
    cli.run("pull", f"{registry.address}/multi")
    # skopeo may rewrite manifests on the way: the registry's index says what is there.
    raw = run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{registry.address}/multi:latest"])
    pushed = {m["platform"]["architecture"]: m["digest"] for m in json.loads(raw.stdout)["manifests"]}
    record = cli.images()[f"{registry.address}/multi:latest"]
    assert record["manifest"] == pushed["amd64"] != pushed["arm64"]
    cli.run("unpack", f"{registry.address}/multi", str(tmp_path / "rootfs"))
    check_busybox_rootfs(tmp_path / "rootfs")
    # The same index imported as an OCI layout tar resolves the same way.
    archive = tmp_path / "multi.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(multi, arcname=".")
    cli.run("import", str(archive), "--name", "local/multi")
    imported = cli.images()["docker.io/local/multi:latest"]["manifest"]
    assert imported == amd64 != arm64


def test_default_registry_names_and_rm(meseta_bin, tmp_path, registry):
    cli = ImageCli(meseta_bin, tmp_path / "agent", "--docker-registry", f"http://{registry.address}")
    cli.run("pull", "busybox")
    name = f"{registry.address}/busybox:latest"
    assert list(cli.images()) == [name]
    out = cli.run("rm", "busybox").stdout
    assert "removed" in out
    assert cli.images() == {}
    assert list((cli.store() / "blobs/sha256").iterdir()) == []
    again = cli.run("rm", "busybox", check=False)
    assert again.returncode != 0
    assert f"image '{name}' is not in the image store" in again.stderr


def test_pull_failures_say_why(meseta_bin, tmp_path, registry):
    cli = ImageCli(meseta_bin, tmp_path / "agent", "--docker-insecure-registries", registry.address)
    missing = cli.run("pull", f"{registry.address}/nothing:here", check=False)
    assert missing.returncode != 0
    assert "not found" in missing.stderr and "nothing" in missing.stderr, missing.stderr
    dead = free_port()
    unreachable = ImageCli(meseta_bin, tmp_path / "agent", "--docker-insecure-registries", f"127.0.0.1:{dead}")
    result = unreachable.run("pull", f"127.0.0.1:{dead}/busybox", check=False)
    assert result.returncode != 0 and f"registry 127.0.0.1:{dead}" in result.stderr, result.stderr
    # Not listed as insecure: spoken to over https (TLS), which a plain-http registry fails.
    secure = ImageCli(meseta_bin, tmp_path / "agent").run("pull", f"{registry.address}/busybox", check=False)
    assert secure.returncode != 0
    assert f"https://{registry.address}/v2/busybox/manifests/latest" in secure.stderr, secure.stderr
    bad = cli.run("pull", "UPPER/case", check=False)
    assert bad.returncode != 0 and "invalid image reference 'UPPER/case'" in bad.stderr
    assert cli.images() == {}


def test_import_docker_archive_and_oci_layout(meseta_bin, tmp_path, layout):
    archive = tmp_path / "busybox.tar"
    run(["skopeo", "copy", f"oci:{layout[0]}:latest", f"docker-archive:{archive}:busybox:latest"])
    cli = ImageCli(meseta_bin, tmp_path / "agent")
    out = cli.run("import", str(archive)).stdout
    assert "imported docker.io/library/busybox:latest" in out
    cli.run("unpack", "busybox", str(tmp_path / "from-archive"))
    check_busybox_rootfs(tmp_path / "from-archive")

    # The OCI layout names only a tag, so it needs a name; with one it keeps the digest.
    refused = cli.run("import", str(layout[0]), check=False)
    assert refused.returncode != 0 and "give a name" in refused.stderr
    cli.run("import", str(layout[0]), "--name", "local/busybox")
    record = cli.images()["docker.io/local/busybox:latest"]
    assert record["manifest"] == layout[1]
    check_blobs_verified(cli.store())

    not_image = tmp_path / "junk.tar"
    not_image.write_bytes(b"not a tarball at all" * 100)
    result = cli.run("import", str(not_image), check=False)
    assert result.returncode != 0 and "junk.tar" in result.stderr


def login_cli(binary, tmp_path, registry, password):
    """``meseta image`` with a docker config holding alice's login for ``registry``."""
    config = tmp_path / f"config-{password}.json"
    config.write_text(json.dumps({"auths": {registry.address: {"username": "alice", "password": password}}}))
    return ImageCli(
        binary,
        tmp_path / f"agent-{password}",
        "--docker-insecure-registries",
        registry.address,
        "--docker-config",
        str(config),
    )


def test_registry_basic_auth(meseta_bin, tmp_path, auth_registry):
    name = f"{auth_registry.address}/private/busybox:latest"
    wrong = login_cli(meseta_bin, tmp_path, auth_registry, "wrong").run("pull", name, check=False)
    assert wrong.returncode != 0
    assert f"registry {auth_registry.address} refused access to 'private/busybox'" in wrong.stderr, wrong.stderr
    assert "the login of 'alice' was refused" in wrong.stderr

    anonymous = ImageCli(meseta_bin, tmp_path / "anon", "--docker-insecure-registries", auth_registry.address)
    result = anonymous.run("pull", name, check=False)
    assert result.returncode != 0 and "no login is configured" in result.stderr, result.stderr

    good = login_cli(meseta_bin, tmp_path, auth_registry, "s3cret")
    good.run("pull", name)
    assert good.images()[name]["manifest"] == auth_registry.manifest_digest(
        "private/busybox:latest", creds="alice:s3cret"
    )
    good.run("unpack", name, str(tmp_path / "rootfs"))
    check_busybox_rootfs(tmp_path / "rootfs")


def test_registry_token_auth(meseta_bin, tmp_path, token_registry):
    registry, tokens = token_registry
    name = f"{registry.address}/private/busybox:latest"
    tokens.requests.clear()
    wrong = login_cli(meseta_bin, tmp_path, registry, "wrong").run("pull", name, check=False)
    assert wrong.returncode != 0
    assert f"registry {registry.address} refused access to 'private/busybox'" in wrong.stderr, wrong.stderr
    assert f"the token service {tokens.realm} answered HTTP 401" in wrong.stderr
    assert tokens.requests == [(None, "repository:private/busybox:pull")]

    good = login_cli(meseta_bin, tmp_path, registry, "s3cret")
    good.run("pull", name)
    assert ("alice", "repository:private/busybox:pull") in tokens.requests
    assert good.images()[name]["manifest"] == registry.manifest_digest(
        "private/busybox:latest", creds="alice:s3cret"
    )
    good.run("unpack", name, str(tmp_path / "rootfs"))
    check_busybox_rootfs(tmp_path / "rootfs")


# ---------------------------------------------------------------------------
# The agent: tasks in the image, through the scheduler API (root: Linux launcher)


@pytest.fixture
def image_agent(meseta, registry):
    """A master and an agent with the Linux launcher and docker/runtime whose default
    registry is the test registry; a framework on them."""
    if os.geteuid() != 0:
        pytest.skip("images run under the Linux launcher, which needs root")
    from test_containerizer import AGENT_ARGS, ISOLATION, Framework, remove_cgroups_of

    master = meseta.master()
    args = (AGENT_ARGS[0], AGENT_ARGS[1], "--isolation", ISOLATION + ",docker/runtime")
    agent = meseta.agent(master, extra_args=(*args, "--docker-registry", f"http://{registry.address}"))
    agent_id = meseta.wait_registered(agent, master.api)["agent_info"]["id"]["value"]
    framework = Framework(master.api, "images-test")
    yield agent, agent_id, framework
    meseta.shutdown()
    remove_cgroups_of(agent.work_dir / "containers")
    # Hygiene after a failed test: root filesystems the killed agent could not release.
    for rootfs in (agent.work_dir / "images" / "containers").glob("*/rootfs"):
        subprocess.run(["umount", "-l", str(rootfs)], capture_output=True)


def assert_released(agent):
    """Every root filesystem of the agent's ended containers is gone, and unmounted."""
    images = agent.work_dir / "images"
    wait_for(lambda: not any((images / "containers").iterdir()), what="root filesystems released")
    with open("/proc/self/mountinfo") as f:
        assert str(images) not in f.read()


def image_container(image, kind="MESOS"):
    if kind == "MESOS":
        return {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": image}}}}
    if kind == "DOCKER":
        return {"type": "DOCKER", "docker": {"image": image}}
    return {"type": "MESOS", "mesos": {"image": {"type": "APPC", "appc": {"name": image}}}}


def image_task(agent_id, command, image, *, kind="MESOS"):
    """A command task in ``image``."""
    from test_containerizer import task_info

    return task_info(agent_id, command, container=image_container(image, kind))


def executor_task(agent_id, script, image, *, kind="MESOS"):
    """A task whose own executor (``sh -c script``, never subscribing) runs in
    ``image``: what it writes to its sandbox shows what it saw."""
    from test_containerizer import task_info

    task = task_info(agent_id, "unused")
    del task["command"]
    task["executor"] = {
        "executor_id": {"value": task["task_id"]["value"]},
        "command": {"value": script, "shell": True},
        "container": image_container(image, kind),
        "resources": [scalar_resource("cpus", 0.1), scalar_resource("mem", 32)],
    }
    return task


def test_executors_run_in_the_pulled_image(image_agent, registry):
    agent, agent_id, framework = image_agent
    script = (
        'out=$MESOS_SANDBOX/seen; echo "greeting=$GREETING" > $out; ls /data >> $out; '
        "test -e /etc/os-release || echo no-os-release >> $out; "
        "test -e /etc/removed || echo no-removed >> $out; "
        "test -x /bin/busybox && echo busybox >> $out; echo done >> $out; exec sleep 600"
    )
    before = registry.manifest_requests("busybox")
    tasks = [executor_task(agent_id, script, "busybox", kind=k) for k in ("MESOS", "DOCKER")]
    # One ACCEPT: both executors are provisioned at once, and must share one pull.
    offer = framework.wait(lambda: next(iter(framework.offers.values()), None), what="an offer")
    framework.accept([offer], tasks)
    for task in tasks:
        task_id = task["task_id"]["value"]
        seen = Path(wait_sandbox(agent.api, framework.id, task_id)) / "seen"
        wait_for(lambda: seen.exists() and "done" in seen.read_text(), what=f"{task_id} to run")
        assert seen.read_text().split("\n") == [
            "greeting=hello from the image",
            "new",
            "no-os-release",
            "no-removed",
            "busybox",
            "done",
            "",
        ]
    assert registry.manifest_requests("busybox") - before == 1
    images = agent.work_dir / "images"
    record = json.loads((images / "index.json").read_text())["images"][f"{registry.address}/busybox:latest"]
    assert record["manifest"] == registry.manifest_digest("busybox:latest")
    assert len(list((images / "containers").iterdir())) == 2
    for task in tasks:
        framework.kill(task["task_id"]["value"], agent_id)
        framework.wait_state(task["task_id"]["value"], "TASK_KILLED")
    # Destroyed containers keep no root filesystem and no mount.
    assert_released(agent)


def test_command_task_runs_in_the_image(image_agent):
    """A command task (the command executor from the host, the task's shell from the
    image) sees the image's files and Env, and cannot reach the executor's binary (the
    host's meseta) through /proc/1/exe."""
    agent, agent_id, framework = image_agent
    script = (
        'echo "greeting=$GREETING"; ls /data; test -e /etc/os-release || echo no-os-release; '
        "test -e /etc/removed || echo no-removed; "
        "(head -c 1 /proc/1/exe > /dev/null) 2>/dev/null || echo executor-binary-protected"
    )
    task = image_task(agent_id, script, "busybox")
    framework.launch_task(agent_id, task)
    task_id = task["task_id"]["value"]
    framework.wait_state(task_id, "TASK_FINISHED")
    out = (Path(wait_sandbox(agent.api, framework.id, task_id)) / "stdout").read_text()
    expected = ["greeting=hello from the image", "new", "no-os-release", "no-removed"]
    for line in expected + ["executor-binary-protected"]:
        assert line in out.splitlines(), out
    assert "old" not in out.splitlines()
    assert_released(agent)


def test_kernel_paths_are_hidden_in_the_image(image_agent):
    """The host's kernel paths that runc and Mesos hide: files read empty, directories
    are empty and read-only inside the container, while the host keeps them."""
    agent, agent_id, framework = image_agent
    dirs = [d for d in ("/proc/acpi", "/proc/scsi", "/sys/firmware") if os.path.isdir(d) and os.listdir(d)]
    files = [f for f in ("/proc/keys", "/proc/timer_list") if os.path.isfile(f) and Path(f).read_bytes()]
    assert dirs or files, "nothing on this host to hide"
    checks = [f'echo "{d} $(ls -A {d} | wc -l) $(touch {d}/x 2>/dev/null && echo rw || echo ro)"' for d in dirs]
    checks += [f'echo "{f} $(cat {f} | wc -c)"' for f in files]
    task = image_task(agent_id, "; ".join(checks), "busybox")
    framework.launch_task(agent_id, task)
    task_id = task["task_id"]["value"]
    framework.wait_state(task_id, "TASK_FINISHED")
    out = (Path(wait_sandbox(agent.api, framework.id, task_id)) / "stdout").read_text().split("\n")
    expected = [f"{d} 0 ro" for d in dirs] + [f"{f} 0" for f in files]
    assert [line.split() for line in out if line] == [line.split() for line in expected], out
    assert all(os.listdir(d) for d in dirs), "the host's directories are untouched"


RUNTIME_CONFIG = {
    "Entrypoint": ["/bin/echo", "entry"],
    "Cmd": ["cmd"],
    "Env": ["PATH=/bin", "FROM_IMAGE=image", "OVERRIDDEN=image"],
    "WorkingDir": "/work/dir",
    "User": "1000:1000",
}


@pytest.fixture(scope="module")
def runtime_image(tmp_path_factory, layout, registry):
    """``runtime:latest`` in the test registry: busybox with RUNTIME_CONFIG."""
    dest = with_runtime_config(layout[0], tmp_path_factory.mktemp("runtime") / "layout", RUNTIME_CONFIG)
    registry.push(dest, "runtime:latest")
    return "runtime"


def run_in_image(framework, agent, agent_id, image, command):
    """Runs a command task with ``command`` (a CommandInfo) in ``image`` to TASK_FINISHED;
    returns its final status and stdout."""
    task = image_task(agent_id, "unused", image)
    task["command"] = command
    framework.launch_task(agent_id, task)
    status = framework.wait_state(task["task_id"]["value"], "TASK_FINISHED")
    stdout = Path(wait_sandbox(agent.api, framework.id, task["task_id"]["value"])) / "stdout"
    return status, stdout.read_text()


def test_docker_runtime_for_command_tasks(image_agent, runtime_image):
    """docker/runtime for command tasks: without a value the image's Entrypoint runs with
    Cmd, or with the task's arguments instead; a value or a shell command replaces both;
    the image's Env is under the task's and its WorkingDir (made when the image lacks it)
    is the task's working directory, with the sandbox still at MESOS_SANDBOX. The image's
    User is not applied (as in Mesos): the task runs as the framework's user (root here),
    or as its command's."""
    agent, agent_id, framework = image_agent
    _, out = run_in_image(framework, agent, agent_id, runtime_image, {"shell": False})
    assert out.splitlines() == ["entry cmd"], out
    _, out = run_in_image(framework, agent, agent_id, runtime_image, {"shell": False, "arguments": ["x"]})
    assert out.splitlines() == ["entry x"], out
    _, out = run_in_image(
        framework, agent, agent_id, runtime_image,
        {"shell": False, "value": "/bin/echo", "arguments": ["echo", "own", "value"]},
    )
    assert out.splitlines() == ["own value"], out
    script = 'echo "$FROM_IMAGE $OVERRIDDEN"; pwd; echo "$MESOS_SANDBOX"; test -f "$MESOS_SANDBOX/stdout" && echo sandbox'
    command = {
        "shell": True,
        "value": script,
        "environment": {"variables": [{"name": "OVERRIDDEN", "value": "task"}]},
    }
    _, out = run_in_image(framework, agent, agent_id, runtime_image, command)
    assert out.splitlines() == ["image task", "/work/dir", "/mnt/mesos/sandbox", "sandbox"], out
    for user, uid in ((None, "0"), ("nobody", "65534")):
        command = {"shell": True, "value": "id -u; id -g; pwd"}
        if user:
            command["user"] = user
        _, out = run_in_image(framework, agent, agent_id, runtime_image, command)
        assert out.splitlines() == [uid, uid, "/work/dir"], out
    assert_released(agent)


def test_docker_runtime_for_custom_executors(image_agent, runtime_image):
    """docker/runtime for an executor of its own: it starts in the image's WorkingDir
    (made, since the image lacks it) with the image's Env, the sandbox at MESOS_SANDBOX;
    the image's User is not applied: it runs as the framework's user, or as its
    command's."""
    agent, agent_id, framework = image_agent
    script = (
        'out=$MESOS_SANDBOX/seen; pwd > $out; id -u >> $out; echo "$FROM_IMAGE" >> $out; '
        "echo done >> $out; exec sleep 600"
    )
    tasks = {}
    for user, uid in ((None, "0"), ("nobody", "65534")):
        task = executor_task(agent_id, script, runtime_image)
        if user:
            task["executor"]["command"]["user"] = user
        framework.launch_task(agent_id, task)
        tasks[task["task_id"]["value"]] = uid
    for task_id, uid in tasks.items():
        seen = Path(wait_sandbox(agent.api, framework.id, task_id)) / "seen"
        wait_for(lambda: seen.exists() and "done" in seen.read_text(), what=f"{task_id} to run")
        assert seen.read_text().splitlines() == ["/work/dir", uid, "image", "done"]
    for task_id in tasks:
        framework.kill(task_id, agent_id)
        framework.wait_state(task_id, "TASK_KILLED")
    assert_released(agent)


def test_docker_runtime_without_an_executable_fails_the_task(image_agent, tmp_path, layout, registry):
    """An image with neither Entrypoint nor Cmd and a command without a value: TASK_FAILED
    that says so."""
    _, agent_id, framework = image_agent
    bare = with_runtime_config(layout[0], tmp_path / "bare", {"Env": ["PATH=/bin"]})
    registry.push(bare, "bare:latest")
    task = image_task(agent_id, "unused", "bare")
    task["command"] = {"shell": False, "arguments": ["x"]}
    framework.launch_task(agent_id, task)
    status = framework.wait_state(task["task_id"]["value"], "TASK_FAILED")
    assert "neither Entrypoint nor Cmd" in status["message"], status


def test_execute_with_image(image_agent, meseta_bin):
    """`meseta execute --image`: one command, a task in the image, its output printed."""
    agent, _, framework = image_agent
    # The fixture's framework gives the agent's resources back for good.
    offer = framework.wait(lambda: next(iter(framework.offers.values()), None), what="an offer")
    framework.take_offer(offer)
    framework.call("DECLINE", decline={"offer_ids": [offer["id"]], "filters": {"refuse_seconds": 3600}})
    result = subprocess.run(
        [str(meseta_bin), "execute", "--master", framework.endpoint.address, "--image", "busybox",
         "-c", 'echo "greeting=$GREETING"; test -e /etc/os-release || echo no-os-release'],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "greeting=hello from the image" in result.stdout, result.stdout
    assert "no-os-release" in result.stdout
    assert "TASK_FINISHED" in result.stdout
    assert_released(agent)


def test_task_that_cannot_get_its_image_fails_with_the_reason(image_agent, registry):
    _, agent_id, framework = image_agent
    cases = [
        (image_task(agent_id, "true", "nothing/here"), "not found"),
        (image_task(agent_id, "true", "x", kind="APPC"), "APPC images are not supported"),
        (image_task(agent_id, "true", "Bad/Name"), "invalid image reference"),
    ]
    for task, why in cases:
        framework.launch_task(agent_id, task)
        status = framework.wait_state(task["task_id"]["value"], "TASK_FAILED")
        assert status["reason"] == "REASON_CONTAINER_LAUNCH_FAILED", status
        assert why in status["message"], status


def test_prune_images_keeps_excluded_and_used(image_agent, meseta_bin, registry, layout):
    agent, agent_id, framework = image_agent
    images = ImageCli(meseta_bin, agent.work_dir)
    images.run("import", str(layout[0]), "--name", "docker.io/keep/me")
    images.run("import", str(layout[0]), "--name", "docker.io/drop/me")
    task = executor_task(agent_id, "echo up > $MESOS_SANDBOX/up; exec sleep 600", "busybox")
    framework.launch_task(agent_id, task)
    up = Path(wait_sandbox(agent.api, framework.id, task["task_id"]["value"])) / "up"
    wait_for(up.exists, what="the executor in busybox to start")

    def prune(*excluded):
        excluded = [{"type": "DOCKER", "docker": {"name": n}} for n in excluded]
        call = {"type": "PRUNE_IMAGES", "prune_images": {"excluded_images": excluded}}
        return requests.post(f"{agent.api.url}/api/v1", json=call, timeout=60)

    response = prune("docker.io/keep/me")
    assert response.status_code == 200, response.text
    in_use = f"{registry.address}/busybox:latest"
    assert sorted(images.images()) == [in_use, "docker.io/keep/me:latest"]
    check_blobs_verified(images.store())

    response = prune("UP")
    assert response.status_code == 400 and "Invalid excluded image 'UP'" in response.text
    assert len(images.images()) == 2
    framework.kill(task["task_id"]["value"], agent_id)
    framework.wait_state(task["task_id"]["value"], "TASK_KILLED")
    assert_released(agent)


def test_periodic_image_gc(meseta, meseta_bin, layout):
    """--image-gc-interval removes unused images but the excluded ones (posix agent:
    no root needed)."""
    master = meseta.master()
    agent = meseta.agent(
        master,
        extra_args=("--image-gc-interval", "1secs", "--image-gc-excluded-images", "keep/me,other:1"),
    )
    images = ImageCli(meseta_bin, agent.work_dir)
    images.run("import", str(layout[0]), "--name", "keep/me")
    images.run("import", str(layout[0]), "--name", "drop/me")
    wait_for(lambda: list(images.images()) == ["docker.io/keep/me:latest"], what="image GC to run")
    assert len(list((images.store() / "blobs/sha256").iterdir())) == 4, "the kept image's blobs stay"


def test_bad_gc_exclusion_stops_the_agent(meseta):
    master = meseta.master()
    agent = meseta.agent(master, extra_args=("--image-gc-excluded-images", "Not/Valid"), wait=False)
    assert agent.wait_exit() != 0
    assert "invalid image reference 'Not/Valid'" in agent.output()


def test_image_containers_across_an_agent_restart(image_agent):
    """Root filesystems outlive an agent killed with SIGKILL: the restarted agent
    releases the one of a container that ended while it was down, and the one of a
    container it kills later."""
    from test_containerizer import (
        RECOVERY_TIMEOUT,
        container_cgroups,
        container_first_process,
        container_id,
    )

    agent, agent_id, framework = image_agent
    tasks = {}
    for name in ("survivor", "victim"):
        task = image_task(agent_id, "exec sleep 1000", "busybox")
        framework.launch_task(agent_id, task)
        tasks[name] = task["task_id"]["value"]
    for task_id in tasks.values():
        framework.wait_state(task_id, "TASK_RUNNING")
    cids = {n: container_id(wait_sandbox(agent.api, framework.id, t)) for n, t in tasks.items()}
    containers = agent.work_dir / "images" / "containers"
    assert sorted(p.name for p in containers.iterdir()) == sorted(cids.values())
    # Each supervisor mounts its container's root in a namespace of its own: the host's
    # mount table does not grow with the containers.
    assert str(containers) not in Path("/proc/self/mountinfo").read_text()

    agent.kill()
    os.kill(container_first_process(cids["victim"]), 9)
    wait_for(lambda: not container_cgroups(cids["victim"]), what="the victim's container to end")
    assert (containers / cids["victim"] / "rootfs").is_dir(), "nobody released it yet"

    agent.start()
    framework.wait_state(tasks["victim"], "TASK_FAILED", timeout=RECOVERY_TIMEOUT)
    wait_for(lambda: not (containers / cids["victim"]).exists(), what="the victim's rootfs released")
    survivor = next(path / "cgroup.procs" for path in container_cgroups(cids["survivor"]))
    pid = survivor.read_text().split()[0]
    assert Path(f"/proc/{pid}/root/bin/busybox").exists(), "the survivor's root is intact"
    wait_for(
        lambda: agent.api.get("/state").json()["frameworks"][0]["executors"],
        RECOVERY_TIMEOUT,
        what="the agent to list the recovered executors",
    )
    framework.kill(tasks["survivor"], agent_id)
    framework.wait_state(tasks["survivor"], "TASK_KILLED", timeout=RECOVERY_TIMEOUT)
    assert_released(agent)


def test_uncached_image_is_pulled_again(image_agent, registry):
    """`image.cached: false` pulls the image again even though the store has it."""
    _, agent_id, framework = image_agent
    ran = []
    for cached in (True, False):
        before = registry.manifest_requests("busybox")
        task = image_task(agent_id, "true", "busybox")
        task["container"]["mesos"]["image"]["cached"] = cached
        framework.launch_task(agent_id, task)
        framework.wait_state(task["task_id"]["value"], "TASK_FINISHED")
        ran.append(registry.manifest_requests("busybox") - before)
    # The fresh agent pulls for the first task; the uncached one pulls again.
    assert ran == [1, 1], ran
