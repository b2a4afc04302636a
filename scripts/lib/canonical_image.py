#!/usr/bin/env python3
"""Rewrites an image as `docker save` wrote it into its canonical form, for `docker load`.

scripts/build-images runs each Dockerfile's runtime stage with Docker's classic builder, then
this: the image's ID (the digest of its config) and its layer's digest then depend only on
what is in it, not on when, where or by which Docker it was built, so that two builds of one
commit give the same image and anyone can rebuild a published one and compare.

- The layer: the same entries (names, types, modes, owners by number, contents), sorted by
  name, with the modification time EPOCH and no owner names, as a POSIX ustar archive. Docker's
  own layer depends on its version (whether it writes owner names, which tar format).
- The config: the image's settings as the Dockerfile made them (user, entrypoint, ports,
  health check, labels, environment), without the fields that record the build (the build
  container and its settings, the parent image, the Docker version), every time EPOCH, the
  layer digests of the canonical layers, keys sorted, no spaces.

Usage: docker save IMAGE | canonical_image.py --epoch SECONDS | docker load
"""

import argparse
import datetime
import hashlib
import io
import json
import sys
import tarfile

# The config's fields that describe the image; the others record how it was built.
IMAGE_FIELDS = ("architecture", "os", "variant", "config", "history", "rootfs")
HISTORY_FIELDS = ("created_by", "empty_layer", "comment")


def canonical_layer(data: bytes, mtime: int) -> bytes:
    """The layer's entries again, sorted, with one time and numeric owners only."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as source, tarfile.open(
        fileobj=out, mode="w", format=tarfile.USTAR_FORMAT
    ) as layer:
        for entry in sorted(source.getmembers(), key=lambda entry: entry.name):
            if entry.pax_headers:
                raise ValueError(
                    f"the layer's entry {entry.name} has extended attributes "
                    f"({', '.join(sorted(entry.pax_headers))}), which a ustar layer cannot hold"
                )
            canonical = tarfile.TarInfo(entry.name)
            canonical.type = entry.type
            canonical.mode = entry.mode
            canonical.uid, canonical.gid = entry.uid, entry.gid
            canonical.uname = canonical.gname = ""
            canonical.mtime = mtime
            canonical.linkname = entry.linkname
            canonical.devmajor, canonical.devminor = entry.devmajor, entry.devminor
            canonical.size = entry.size if entry.isreg() else 0
            layer.addfile(canonical, source.extractfile(entry) if entry.isreg() else None)
    return out.getvalue()


def canonical_config(config: dict, created: str, diff_ids: list) -> bytes:
    image = {field: config[field] for field in IMAGE_FIELDS if field in config}
    # The settings a container starts with; false, empty and null are the defaults anyway, and
    # which of them a Docker writes depends on its version. "Image" names the build's parent.
    image["config"] = {
        key: value
        for key, value in config.get("config", {}).items()
        if key != "Image" and value is not None and value is not False and value != "" and value != [] and value != {}
    }
    image["created"] = created
    image["history"] = [
        {**{key: step[key] for key in HISTORY_FIELDS if key in step}, "created": created}
        for step in config.get("history", [])
    ]
    image["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    return json.dumps(image, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def add(archive: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    entry = tarfile.TarInfo(name)
    entry.size, entry.mtime, entry.mode = len(data), mtime, 0o644
    archive.addfile(entry, io.BytesIO(data))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epoch", type=int, required=True, help="the time to give every entry and the image (seconds since 1970)")
    epoch = parser.parse_args().epoch
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    with tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read())) as saved:
        manifest = json.load(saved.extractfile("manifest.json"))
        if len(manifest) != 1:
            print(f"expected one image from docker save, got {len(manifest)}", file=sys.stderr)
            return 1
        (image,) = manifest
        config = json.load(saved.extractfile(image["Config"]))
        layers = [canonical_layer(saved.extractfile(path).read(), epoch) for path in image["Layers"]]

    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config_bytes = canonical_config(config, created, diff_ids)
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_names = [diff_id.removeprefix("sha256:") + "/layer.tar" for diff_id in diff_ids]
    loaded = [{"Config": config_name, "RepoTags": image.get("RepoTags") or [], "Layers": layer_names}]

    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.USTAR_FORMAT) as out:
        add(out, config_name, config_bytes, epoch)
        for name, layer in zip(layer_names, layers):
            add(out, name, layer, epoch)
        add(out, "manifest.json", json.dumps(loaded, separators=(",", ":")).encode(), epoch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
