"""A learned chroma prior: for each 8 px cell of a gray photo, a distribution over the colours (Lab a, b)
it likely has, predicted from the backbone's features of the photo and the chroma its references warp onto
it. It plays the part of the trained colorization sub-net of He et al. (2018): it learns where warped
reference colours are right and what colours to expect where they are not. Trained by colorize.training;
the one for EfficientNet-Lite2 ships in colorize/weights."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import ColorizeError
from .correspondence import DenseFeatures, Warp, fuse

WEIGHTS_DIR = Path(__file__).parent / "weights"
BIN_STEP = 10.0
AB_LIMIT = 110.0
REFERENCES_SEEN = 3            # reference warps the network takes as input
REFERENCE_TEMPERATURE = 0.05   # of the fusion of the references the prior sees (correspondence.fuse)
REFERENCE_BIN_SIGMA = 8.0      # spread, in ab units, of a warped colour over the bins
_AB_SCALE = 50.0
EXEMPLAR_CHANNELS = 4 * REFERENCES_SEEN + 3


def bin_centres() -> np.ndarray:
    """(Q, 2) centres of the ab grid of BIN_STEP squares over [-AB_LIMIT, AB_LIMIT]^2."""
    centres = np.arange(-AB_LIMIT, AB_LIMIT, BIN_STEP) + BIN_STEP / 2
    return np.stack(np.meshgrid(centres, centres, indexing="ij"), axis=-1).reshape(-1, 2).astype(np.float32)


def bin_of(ab: np.ndarray) -> np.ndarray:
    """The bin index of each (..., 2) ab value, in bin_centres' order."""
    per_axis = len(np.arange(-AB_LIMIT, AB_LIMIT, BIN_STEP))
    index = np.clip(((ab + AB_LIMIT) // BIN_STEP).astype(np.int64), 0, per_axis - 1)
    return index[..., 0] * per_axis + index[..., 1]


class PriorNetwork(nn.Module):
    """Per cell: the features through a 1x1 convolution, with the global descriptor and the references'
    warped chroma and confidence beside them, two 3x3 convolutions, then logits over the colour bins. A
    gated term adds the log of the references' fused colour spread over the bins, so copying a reference
    colour is easy to learn and the gate says how much to trust it."""

    def __init__(self, feature_dim: int, global_dim: int, bins: int, width: int = 64,
                 global_width: int = 64):
        super().__init__()
        self.cell = nn.Conv2d(feature_dim, width, 1)
        self.glob = nn.Linear(global_dim, global_width)
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(width + global_width + EXEMPLAR_CHANNELS, width, 3, padding=1),
            nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(width, bins, 1)
        self.gate = nn.Conv2d(width, 1, 1)

    def forward(self, levels: torch.Tensor, global_descriptor: torch.Tensor, exemplar: torch.Tensor,
                reference_bins: torch.Tensor) -> torch.Tensor:
        cells = self.cell(levels)
        context = self.glob(global_descriptor)[:, :, None, None].expand(-1, -1, *cells.shape[2:])
        hidden = self.body(torch.cat([cells, context, exemplar], dim=1))
        return self.head(hidden) + F.softplus(self.gate(hidden)) * torch.log(reference_bins + 1e-3)


@dataclass(frozen=True)
class PriorInputs:
    """One photo's input to the prior, on its (gh, gw) grid of cells: backbone levels (C, gh, gw), global
    descriptor (D,), reference channels (EXEMPLAR_CHANNELS, gh, gw) and the references' fused chroma
    (2, gh, gw)."""

    levels: torch.Tensor
    global_descriptor: torch.Tensor
    exemplar: torch.Tensor
    reference_ab: torch.Tensor

    @classmethod
    def of(cls, target: DenseFeatures, warps: list[Warp]) -> PriorInputs:
        """From the target's features and its references' warps, the most confident REFERENCES_SEEN of
        them (repeated when there are fewer)."""
        if not warps:
            raise ColorizeError("the chroma prior needs at least one reference warp")
        if len(warps) > REFERENCES_SEEN:
            ranked = np.argsort([-float(w.confidence.mean()) for w in warps], kind="stable")
            warps = [warps[i] for i in sorted(ranked[:REFERENCES_SEEN])]
        warps = (warps * REFERENCES_SEEN)[:REFERENCES_SEEN] if len(warps) < REFERENCES_SEEN else warps
        ab = np.stack([w.ab for w in warps]).transpose(0, 3, 1, 2)
        confidence = np.stack([w.confidence for w in warps])
        magnitude = np.stack([w.magnitude for w in warps])
        fused = fuse(warps, REFERENCE_TEMPERATURE)
        fused_ab = fused.ab.transpose(2, 0, 1)
        per_reference = np.concatenate([ab / _AB_SCALE, confidence[:, None], magnitude[:, None] / _AB_SCALE],
                                       axis=1).reshape(-1, *confidence.shape[1:])
        exemplar = np.concatenate([per_reference, fused_ab / _AB_SCALE, fused.confidence[None]])
        # The prior is small enough to run on CPU whatever device the backbone uses.
        return cls(target.levels.float().cpu(), target.global_descriptor.float().cpu(),
                   torch.from_numpy(exemplar.astype(np.float32)),
                   torch.from_numpy(fused_ab.astype(np.float32)))


def spread_over_bins(ab: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(B, 2, h, w) chroma -> (B, Q, h, w) Gaussian weights over the bin centres (Q, 2), summing to 1."""
    batch, _, height, width = ab.shape
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    weights = torch.softmax(-torch.cdist(flat, centres) ** 2 / (2 * REFERENCE_BIN_SIGMA ** 2), dim=-1)
    return weights.reshape(batch, height, width, -1).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class CellChroma:
    """Per cell (gh, gw): the expected chroma (gh, gw, 2), the share of the expected chroma energy that
    this expectation explains, in [0, 1] (1: the network is sure of the colour; 0: any hue is as likely),
    and the distribution it is the expectation of (gh, gw, Q), over the prior's bin centres."""

    ab: np.ndarray
    certainty: np.ndarray
    probabilities: np.ndarray | None = None


@dataclass(frozen=True)
class Normalisation:
    """Per channel of the backbone levels and per dimension of the global descriptor: training mean and
    standard deviation."""

    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    global_mean: torch.Tensor
    global_std: torch.Tensor

    def apply(self, levels: torch.Tensor,
              global_descriptor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Levels (..., C, h, w) and descriptors (..., D), standardised."""
        return ((levels - self.feature_mean[:, None, None]) / self.feature_std[:, None, None],
                (global_descriptor - self.global_mean) / self.global_std)


class ChromaPrior:
    """An ensemble of PriorNetworks trained on one backbone's features (its name and weights' fingerprint
    are kept: features of other weights mean nothing to it); predictions average their distributions."""

    def __init__(self, networks: list[PriorNetwork], normalisation: Normalisation, used_bins: np.ndarray,
                 backbone: str, backbone_fingerprint: str, metadata: dict | None = None):
        self.networks = [network.eval() for network in networks]
        self.normalisation = normalisation
        self.used_bins = np.asarray(used_bins, bool)
        self.centres = torch.from_numpy(bin_centres()[self.used_bins])
        self.backbone = backbone
        self.backbone_fingerprint = backbone_fingerprint
        self.metadata = metadata or {}

    def fits(self, backbone_name: str, fingerprint: str) -> bool:
        return backbone_name == self.backbone and fingerprint == self.backbone_fingerprint

    @torch.inference_mode()
    def probabilities(self, inputs: PriorInputs) -> torch.Tensor:
        """(Q, gh, gw): the ensemble's distribution over the used bins, per cell."""
        levels, global_descriptor = self.normalisation.apply(inputs.levels, inputs.global_descriptor)
        reference_bins = spread_over_bins(inputs.reference_ab[None], self.centres)
        total = sum(torch.softmax(network(levels[None], global_descriptor[None], inputs.exemplar[None],
                                          reference_bins), dim=1)
                    for network in self.networks)
        return total[0] / len(self.networks)

    def predict(self, inputs: PriorInputs) -> CellChroma:
        probabilities = self.probabilities(inputs)
        mean = torch.einsum("qhw,qc->hwc", probabilities, self.centres)
        energy = torch.einsum("qhw,q->hw", probabilities, (self.centres ** 2).sum(dim=1))
        certainty = (mean ** 2).sum(dim=-1) / energy.clamp(min=1e-6)
        return CellChroma(mean.numpy(), certainty.clamp(0.0, 1.0).numpy(),
                          probabilities.permute(1, 2, 0).contiguous().numpy())

    def save(self, path: str | Path) -> None:
        """A weights_only-loadable file: tensors (float16 weights) and a JSON header."""
        header = {"backbone": self.backbone, "backbone_fingerprint": self.backbone_fingerprint,
                  "networks": len(self.networks), "width": self.networks[0].cell.out_channels,
                  "global_width": self.networks[0].glob.out_features, "metadata": self.metadata}
        state = {"header": json.dumps(header), "used_bins": torch.from_numpy(self.used_bins)}
        for name, value in vars(self.normalisation).items():
            state[f"normalisation.{name}"] = value.float()
        for number, network in enumerate(self.networks):
            for name, value in network.state_dict().items():
                state[f"network{number}.{name}"] = value.half()
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        torch.save(state, partial)
        partial.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> ChromaPrior:
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            header = json.loads(state["header"])
            normalisation = Normalisation(**{name: state[f"normalisation.{name}"].float()
                                             for name in Normalisation.__dataclass_fields__})
            used_bins = state["used_bins"].numpy()
            networks = []
            for number in range(header["networks"]):
                prefix = f"network{number}."
                weights = {k[len(prefix):]: v.float() for k, v in state.items() if k.startswith(prefix)}
                network = PriorNetwork(len(normalisation.feature_mean), len(normalisation.global_mean),
                                       int(used_bins.sum()), header["width"], header["global_width"])
                network.load_state_dict(weights)
                networks.append(network)
        except FileNotFoundError:
            raise ColorizeError(f"chroma prior {path} not found") from None
        except Exception as exc:
            raise ColorizeError(f"{path} is not a chroma prior ({type(exc).__name__}: {exc})") from None
        return cls(networks, normalisation, used_bins, header["backbone"], header["backbone_fingerprint"],
                   header.get("metadata"))


def bundled_prior_path(backbone_name: str) -> Path:
    return WEIGHTS_DIR / f"chroma-prior-{backbone_name}.pt"
