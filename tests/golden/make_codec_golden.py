"""Writes the golden codec files that tests/test_golden_codec.py decodes on every run.

    python tests/golden/make_codec_golden.py      # from the repository root

Three tiny codecs (light transforms, C = 8), each trained for 40 steps so the weights are
not their initial values: checkerboard context with the Gaussian prior, autoregressive
context, and checkerboard with the bottleneck prior. For each: its checkpoint
(``<name>.pt``, written by ``save_checkpoint``), a container of two coded 32x32 images
(``<name>.gwnc``), and in ``expected.json`` the SHA-256 of the decoded latents and of the
container, the input (uint8, base64) and the versions that wrote them.

Rerun it only to change the coding path on purpose (a new integer derivation, table or
stream format): the test then fails until these files are rewritten, which is the point.
"""

import base64
import hashlib
import json
from pathlib import Path

import torch

from gwn_fast import GrayWynerCodec, GrayWynerLoss, container
from gwn_fast.train import save_checkpoint

HERE = Path(__file__).resolve().parent
CONFIGS = {
    "checkerboard": {"context": "checkerboard"},
    "autoregressive": {"context": "autoregressive"},
    "bottleneck": {"context": "checkerboard", "y0_prior": "bottleneck"},
}


def latents_digest(latents: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(latents):
        h.update(name.encode())
        h.update(latents[name].to(torch.int64).numpy().tobytes())
    return h.hexdigest()


def main():
    torch.manual_seed(0)
    image = (torch.rand(2, 3, 32, 32) * 255).round().to(torch.uint8)
    x = image.float() / 255
    expected = {"torch": torch.__version__, "image_uint8_b64": base64.b64encode(image.numpy().tobytes()).decode(),
                "image_shape": list(image.shape), "codecs": {}}
    for name, options in CONFIGS.items():
        torch.manual_seed(1)
        codec = GrayWynerCodec(3, (3, 3), latent_channels=8, transform="light", depth=2, hidden_channels=8,
                               rate_grad="smooth", **options)
        opt = torch.optim.Adam(codec.parameters(), lr=5e-3)
        loss_fn = GrayWynerLoss(beta=1.5, lmbda=(100.0, 100.0))
        g = torch.Generator().manual_seed(2)
        codec.train()
        for _ in range(40):
            batch = torch.rand(8, 3, 32, 32, generator=g)
            terms = loss_fn(codec(batch), (batch, batch))
            opt.zero_grad()
            terms["loss"].backward()
            opt.step()
        codec.eval()
        codec.update(force=True)
        save_checkpoint(HERE / f"{name}.pt", codec)
        enc = codec.compress(x)
        blob = container.pack(enc)
        (HERE / f"{name}.gwnc").write_bytes(blob)
        dec = codec.decompress(enc["strings"], enc["shape"])
        expected["codecs"][name] = {
            "container_sha256": hashlib.sha256(blob).hexdigest(),
            "latents_sha256": latents_digest(dec["latents"]),
            "bytes": len(blob),
        }
        print(name, len(blob), "bytes")
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")


if __name__ == "__main__":
    main()
